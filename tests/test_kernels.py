"""The fused coding kernels (``models/spiking/kernels.py``): the compiled chains compute the eager ones' bits,
the eager chains compute the reference coding's bits, and a model runs the same whichever backend it gets.

The rest of the suite runs eager kernels (conftest: compiling every shape of every test would take minutes);
this file compiles on purpose (inductor caches on disk, so only a machine's first run pays for it)."""

from __future__ import annotations

import pytest
import torch

from models.spiking import counters, kernels
from models.spiking.counters import OpCounter
from models.spiking.encode import fused_code
from models.spiking.neuron import EIIFNeuron
from models.spiking.quant import QuantSpec, Quantizer, quantize_counts
from tests.test_architectures_contract import ids_of
from tests.tiny_models import same_weights, tiny_model


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.setattr(kernels, "SMALL", 0)  # the tests' tensors are small: compiled all the same
    monkeypatch.setenv(kernels.ENV, "compiled")
    kernels.reset()
    if kernels.backend().name != "compiled":
        pytest.skip(kernels.backend_report())
    yield kernels.backend().chains
    kernels.reset()


@pytest.fixture
def eager(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "eager")
    kernels.reset()
    yield kernels.backend().chains
    kernels.reset()


def bits(t: torch.Tensor) -> torch.Tensor:
    return kernels._bits(t)


def hard_values(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """Ties k + 1/2, their float neighbours, zeros and wide random values, in random rows."""
    g = torch.Generator().manual_seed(seed)
    halves = torch.arange(-20, 21, dtype=torch.float32) + 0.5
    special = torch.cat([halves, torch.nextafter(halves, halves + 1), torch.nextafter(halves, halves - 1), torch.zeros(4)])
    x = torch.randn(rows * cols, generator=g) * torch.logspace(-3, 3, rows * cols)[torch.randperm(rows * cols, generator=g)]
    x[: special.numel()] = special
    return x[torch.randperm(rows * cols, generator=g)].reshape(rows, cols)


def test_counts_of_is_the_quantizer_bit_for_bit():
    v = hard_values(8, 64) * 3
    for T in (1, 7, 127):
        assert torch.equal(bits(kernels.counts_of(v, T)), bits(quantize_counts(v.clone(), T)))


@pytest.mark.parametrize("granularity", ["token", "smoothed"])
def test_the_eager_chain_is_the_quantizer_coding(eager, granularity):
    """fused_code's counts and scales are Quantizer.counts' (the reference's op by op coding)."""
    x = hard_values(6, 32)
    quant = Quantizer(QuantSpec(bits=8, granularity=granularity, clip=0.8), num_features=32)
    if granularity == "smoothed":
        quant.observe(x * 2)
        quant.finish_calibration()
    coded = fused_code(EIIFNeuron(), quant, x, quant.T)
    n, s = quant.counts(x)
    assert torch.equal(bits(coded.n), bits(n))
    token, static = quant.scales(x)
    assert torch.equal(bits(coded.token), bits(token))
    assert (coded.static is None) == (static is None)


def test_every_compiled_chain_computes_the_eager_bits(compiled):
    eager_chains = kernels.CHAINS
    x = hard_values(16, 48, seed=1)
    factor = torch.rand(48) + 0.5
    mult = torch.rand(1, 48) * 2
    clip, steps = torch.tensor(0.7), torch.tensor(127.0)
    cases = [
        ("token_counts", (x, None, None, clip, steps, 127, -1, True)),
        ("token_counts", (x.reshape(2, 2, 4, 48), None, factor, clip, steps, 100, -1, False)),
        ("token_counts", (x, None, factor, clip, steps, 127, -1, True, True)),  # dequantized: n (s f)
        ("token_counts", (x, mult, None, clip, steps, 127, -1, True)),
        ("token_counts", (x.t(), None, None, clip, steps, 127, -2, False)),  # a transposed view, per column
        ("scaled_scores", (x.round(), torch.rand(16, 1), torch.rand(1, 48), torch.rand(16, 48) > 0.5)),
        ("scaled_scores", (x.round(), torch.rand(16, 1), torch.rand(1, 48), None)),
    ]
    with torch.no_grad():
        for name, args in cases:
            for got, want in zip(compiled[name](*args), eager_chains[name](*args), strict=True):
                assert (got is None) == (want is None)
                if got is not None:
                    assert got.shape == want.shape and torch.equal(bits(got), bits(want)), name


def run_tiny_llama(counted: bool) -> tuple[list[torch.Tensor], dict]:
    """A tiny snn-fused Llama: a prefill, then two decode steps on the cache; the logits and the op counts."""
    model = same_weights(tiny_model("llama"), "snn-fused")
    ids = ids_of(model, 2, 10)
    outputs = []
    with torch.no_grad(), OpCounter(model) as counter:
        if not counted:
            counters._ACTIVE.remove(counter)
        logits, cache = model(ids[:, :8], use_cache=True)
        outputs.append(logits)
        for t in (8, 9):
            logits, cache = model(ids[:, t : t + 1], cache=cache, use_cache=True)
            outputs.append(logits)
        if not counted:
            counters._ACTIVE.append(counter)
    return outputs, dict(counter.totals)


def test_a_model_runs_the_same_bits_and_counts_with_either_backend(monkeypatch):
    monkeypatch.setattr(kernels, "SMALL", 0)  # a tiny model's tensors are small: compiled all the same
    results = {}
    for backend in ("eager", "compiled"):
        monkeypatch.setenv(kernels.ENV, backend)
        kernels.reset()
        if kernels.backend().name != backend:
            pytest.skip(kernels.backend_report())
        results[backend] = run_tiny_llama(counted=True)
    kernels.reset()
    (eager_logits, eager_counts), (compiled_logits, compiled_counts) = results["eager"], results["compiled"]
    for a, b in zip(eager_logits, compiled_logits, strict=True):
        assert torch.equal(bits(a), bits(b))
    assert eager_counts == compiled_counts and eager_counts


def test_a_non_finite_input_gets_the_reference_error(eager):
    from models.spiking import Synapsis

    layer = Synapsis(8, 4, pre=QuantSpec(bits=8), mode="snn-fused")
    x = torch.randn(3, 8)
    x[1, 2] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN values; spiking operators need finite inputs"):
        layer(x)


def test_an_unknown_backend_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(kernels.ENV, "fast")
    kernels.reset()
    with pytest.raises(ValueError, match="SNNBENCH_KERNELS='fast' is not a kernel backend; use one of auto, compiled, eager"):
        kernels.backend()
    monkeypatch.setenv(kernels.ENV, "eager")
    kernels.reset()
    assert kernels.backend_report().startswith("eager coding kernels (SNNBENCH_KERNELS=eager")
    kernels.reset()


def test_counting_does_not_depend_on_the_backend_for_one_operator(eager):
    """Spike totals from the chain's per-token sums equal the reference tally (rate coding)."""
    from models.spiking import Synapsis

    layer = Synapsis(32, 16, pre=QuantSpec(bits=8), mode="snn-fused")
    x = hard_values(5, 32, seed=3)
    with OpCounter() as fused_counter:
        fused = layer(x)
    reference = Synapsis(32, 16, pre=QuantSpec(bits=8), mode="snn")
    reference.load_state_dict(layer.state_dict())
    with OpCounter() as stepped_counter:
        stepped = reference(x)
    assert torch.equal(bits(fused), bits(stepped))
    assert fused_counter.total() == stepped_counter.total()


def test_attention_in_row_blocks_gives_the_bits_and_counts_of_one_block(eager, monkeypatch):
    """snn-fused attention runs in blocks of query rows on long inputs (``blocks.BLOCK_ELEMENTS``): each row is
    computed as in one block, and every operator records one call with the counts of the whole."""
    from models.arch import blocks

    whole_logits, whole_counts = run_tiny_llama(counted=True)
    monkeypatch.setattr(blocks, "BLOCK_ELEMENTS", 16)  # 16 entries per block: a row or two of scores at a time
    block_logits, block_counts = run_tiny_llama(counted=True)
    for a, b in zip(whole_logits, block_logits, strict=True):
        assert torch.equal(bits(a), bits(b))
    assert whole_counts == block_counts


def run_long_prompt(mode: str = "snn-fused", **spiking) -> tuple[list[torch.Tensor], dict]:
    """A tiny Llama on 200- and 150-token prompts (the second left-padded), then 70 more tokens on the cache (a
    continuation whose rows see the cache and part of themselves): the logits and the op counts."""
    from tests.test_architectures_contract import padded

    model = same_weights(tiny_model("llama"), mode, **spiking)
    first, second = ids_of(model, 270, seed=1), ids_of(model, 220, seed=2)
    ids, mask = padded([first[:200], second[:150]], left=[1])
    more = torch.stack([first[200:], second[150:]])
    with torch.no_grad(), OpCounter(model) as counter:
        logits, cache = model(ids, attention_mask=mask, use_cache=True)
        later, _ = model(more, attention_mask=torch.ones_like(more), cache=cache, use_cache=True)
    return [logits, later], dict(counter.totals)


@pytest.mark.parametrize("kernel_backend", ["eager", "compiled"])
def test_causal_rows_skip_the_keys_they_cannot_see_with_the_same_bits_and_counts(kernel_backend, request, monkeypatch):
    """Blocks of early query rows keep only the keys they may see (``blocks.row_blocks``, about half the work of a
    prompt's L x L attention): the logits and every counter equal those of attention over every key, and the logits
    those of the time-stepped mode."""
    from models.arch import blocks

    request.getfixturevalue(kernel_backend)
    monkeypatch.setattr(blocks, "CAUSAL_BLOCK_ROWS", 16)  # many blocks: keys cut at 64, 128, 192 and whole
    assert kernels.softmax_ignores_masked_tail("cpu")
    seen = []
    original = blocks.row_blocks
    monkeypatch.setattr(blocks, "row_blocks", lambda *args: seen.append(original(*args)) or seen[-1])
    skipping, skipping_counts = run_long_prompt()
    assert any(keys < 200 for plan in seen for _, keys in plan)  # the cut was taken
    monkeypatch.setitem(kernels._TAIL_FREE, "cpu", False)
    every_key, every_key_counts = run_long_prompt()
    for a, b in zip(skipping, every_key, strict=True):
        assert torch.equal(bits(a), bits(b))
    assert skipping_counts == every_key_counts
    stepped, _ = run_long_prompt("snn")  # its counts differ by design (a differential softmax evaluated every step)
    for a, b in zip(skipping, stepped, strict=True):
        assert torch.equal(bits(a), bits(b))


@pytest.mark.parametrize("coding", ["rate", "bitwise"])
def test_key_skip_counts_by_the_closed_form_too(eager, monkeypatch, coding):
    """Where the counts come from the codes themselves (another coding, or the eager kernels on a block too big to
    gather from the cache's tallies), a block's cut probabilities are padded with zero counts: the same counts."""
    from models.arch import blocks
    from models.spiking import products

    monkeypatch.setattr(blocks, "CAUSAL_BLOCK_ROWS", 16)
    monkeypatch.setattr(products, "EAGER_GATHER", 0)
    skipping = run_long_prompt(coding=coding)
    monkeypatch.setitem(kernels._TAIL_FREE, "cpu", False)
    every_key = run_long_prompt(coding=coding)
    for a, b in zip(skipping[0], every_key[0], strict=True):
        assert torch.equal(bits(a), bits(b))
    assert skipping[1] == every_key[1]


def test_the_softmax_probe_refuses_a_cut_off_the_vector_lanes(monkeypatch):
    """The probe behind the key skip is not vacuous: cut after 8 entries, the CPU softmax sums in another order."""
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("no vector unit: every cut sums in order")
    monkeypatch.setattr(kernels, "KEY_ALIGN", 8)
    assert not kernels._probe_masked_tail("cpu")
