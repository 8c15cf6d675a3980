"""Op counters: off by default with no work done, names, windows, streaming."""

import torch

from models.spiking import OpCounter, OpStats, Synapsis, counting
from models.spiking import counters as counters_module


def test_counting_off_does_no_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a statistic was computed while counting was off")

    monkeypatch.setattr(counters_module, "record", fail)
    monkeypatch.setattr(counters_module, "nonzero", fail)
    monkeypatch.setattr(counters_module, "abs_sum", fail)
    assert not counting()
    for path in ("snn", "snn-fused"):
        Synapsis(4, 3, mode=path)(torch.randn(2, 4))


def test_names_windows_and_streaming():
    model = torch.nn.Sequential(Synapsis(4, 4), Synapsis(4, 2, mode="snn"))
    calls = []
    x = torch.randn(3, 4)
    with OpCounter(model, on_call=lambda name, stats: calls.append(name)) as counter:
        model(x)
        first = counter.snapshot()
        model(x)
        window = counter.since(first)
    assert set(counter.totals) == {"0", "1"}
    assert calls == ["0", "1", "0", "1"]
    assert window["0"] == first["0"]  # same input, same figures
    assert counter.totals["0"].calls == 2
    assert counter.total() == counter.totals["0"] + counter.totals["1"]
    assert not counting()


def test_nested_counters_both_see_calls():
    layer = Synapsis(4, 2)
    with OpCounter() as outer:
        with OpCounter() as inner:
            layer(torch.randn(1, 4))
        layer(torch.randn(1, 4))
    assert inner.total().calls == 1 and outer.total().calls == 2


def test_stats_arithmetic_and_sparsity():
    a = OpStats(calls=1, spikes=3, neuron_steps=12, Effective_ACs=6)
    b = OpStats(calls=1, spikes=1, neuron_steps=4, Effective_MACs=2)
    total = a + b
    assert total.synops == 8
    assert total.activation_sparsity == 1 - 4 / 16
    assert (total - b) == a
    assert OpStats().as_dict()["activation_sparsity"] != OpStats().as_dict()["activation_sparsity"]  # nan
