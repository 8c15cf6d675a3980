"""The contract every architecture of ``models.arch.registry`` keeps, tested on a tiny model of each:
shapes in every mode, padding never changes what real tokens see (nor a recurrent state), the cache
continues exactly what recomputing gives, qat == snn == snn-fused bit for bit (and their counters),
lossless conversion through the one stage-2 path, checkpoints round-trip, greedy generation, gradients,
configs, spiking coverage and one-line errors. The architectures' own math lives in their test files."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from models.arch.base import spiking_coverage
from models.arch.registry import ARCHITECTURES, architecture
from models.arch.spiking_config import OPERATOR_KINDS, SpikingConfig
from models.audit import audit_conversion
from models.convert import convert
from models.load import load_checkpoint, save_checkpoint
from models.spiking import OpCounter
from models.spiking.quant import make_quantizers_learnable, quantizer_parameters
from tests.tiny_models import TINY, same_weights, tiny_model

ARCHS = list(ARCHITECTURES)
SPIKING_BITS = {"llama": 8}  # bits of the time-stepped runs (default 5: T = 15 keeps them quick)
CLOSE = {"llama": 0.5, "gpt2": 0.1, "mamba2": 0.5, "ttt": 0.1, "braingpt": 0.1}  # max |logit| change of 8-bit QAT against the float model
LOSS_DROP = {"braingpt": 0.3}  # 8 steps from the initial cross-entropy (default 0.5)
FLOAT_RECURRENCE = {"mamba2": "backbone.layers.0.mixer", "ttt": "model.layers.0.seq_modeling_block"}  # float in every mode


def test_every_architecture_has_a_tiny_model():
    assert set(TINY) == set(ARCHITECTURES)


def ids_of(model, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, model.config.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def padded(rows: list[torch.Tensor], left: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 1-D token rows padded to one length with zeros, on the left (row in ``left``) or right; (ids, mask)."""
    width = max(len(r) for r in rows)
    ids, mask = torch.zeros(len(rows), width, dtype=torch.long), torch.zeros(len(rows), width, dtype=torch.long)
    for j, row in enumerate(rows):
        at = slice(width - len(row), width) if j in left else slice(0, len(row))
        ids[j, at], mask[j, at] = row, 1
    return ids, mask


def cache_tensors(cache) -> list[torch.Tensor]:
    """Every tensor of a recurrent cache, in a fixed order (dataclasses and lists walked)."""
    if torch.is_tensor(cache):
        return [cache]
    if dataclasses.is_dataclass(cache):
        return [t for f in dataclasses.fields(cache) for t in cache_tensors(getattr(cache, f.name))]
    if isinstance(cache, (list, tuple)):
        return [t for item in cache for t in cache_tensors(item)]
    return []


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["ann", "qat", "snn-fused", "snn"])
def test_forward_gives_float32_logits_and_a_cache_in_every_mode(arch, mode):
    model = same_weights(tiny_model(arch), mode, bits=4 if mode == "snn" else 8)
    ids, mask = padded([ids_of(model, 7), ids_of(model, 4, seed=1)], left=[1])
    with torch.no_grad():
        logits, cache = model(ids, mask, use_cache=True)
        without, none = model(ids, mask)
    assert logits.shape == (2, 7, model.config.vocab_size) and logits.dtype == torch.float32 and model.mode == mode
    assert cache is not None and none is None and torch.equal(logits, without)
    assert model.num_parameters() > 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["ann", "qat", "snn-fused", "snn"])
def test_a_sequence_scores_the_same_alone_and_in_a_padded_batch(arch, mode):
    model = same_weights(tiny_model(arch), mode, bits=4 if mode == "snn" else 8)
    seq, other = ids_of(model, 6), ids_of(model, 9, seed=1)
    with torch.no_grad():
        alone, _ = model(seq[None])
        for left in ([], [0]):
            ids, mask = padded([seq, other], left)
            logits, _ = model(ids, mask)
            real = logits[0][mask[0].bool()]
            assert (real - alone[0]).abs().max() < 1e-5, f"padding on the {'left' if left else 'right'}"


@pytest.mark.parametrize("arch", [a for a in ARCHS if a in ("mamba2", "ttt", "braingpt")])
def test_padding_never_changes_the_recurrent_state(arch):
    model = tiny_model(arch)
    seq, other = ids_of(model, 6), ids_of(model, 9, seed=1)
    with torch.no_grad():
        _, alone = model(seq[None], use_cache=True)
        for left in ([], [0]):
            _, cache = model(*padded([seq, other], left), use_cache=True)
            for mine, ref in zip(cache_tensors(cache), cache_tensors(alone), strict=True):
                # float rounding only (batched reductions round differently on some CPUs): a few ulps of the state
                torch.testing.assert_close(mine[:1], ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["ann", "snn-fused"])
def test_cache_continuation_equals_recomputing(arch, mode):
    """Calls start and end anywhere (inside TTT's mini-batches, Mamba's chunks), one token at a time or several."""
    model = same_weights(tiny_model(arch), mode)
    if mode != "ann":  # a float32 GEMM may round 3 rows and 14 differently (seen on AMD EPYC), and a spike count then flips
        model = model.double()
    ids = ids_of(model, 2, 14)
    with torch.no_grad():
        full, _ = model(ids)
        cache, parts = None, []
        for a, b in [(0, 3), (3, 4), (4, 9), (9, 10), (10, 11), (11, 14)]:
            logits, cache = model(ids[:, a:b], cache=cache, use_cache=True)
            parts.append(logits)
        assert (torch.cat(parts, 1) - full).abs().max() < 1e-5
        fresh, _ = model(ids[:, 11:14])
        assert (fresh - full[:, 11:14]).abs().max() > 1e-3  # the cache matters


@pytest.mark.parametrize("arch", ARCHS)
def test_a_shared_context_cache_expands_to_a_padded_batch(arch):
    model = tiny_model(arch)
    context, tails = ids_of(model, 1, 5), [ids_of(model, n, seed=n) for n in (1, 3)]
    with torch.no_grad():
        _, cache = model(context, use_cache=True)
        for left in ([], [0]):  # padding inside a continuation, after the cached context
            ids, mask = padded(tails, left)
            batched, _ = model(ids, mask, cache=cache.expand(2))
            for j, tail in enumerate(tails):
                alone, _ = model(tail[None], cache=cache)
                assert (batched[j][mask[j].bool()] - alone[0]).abs().max() < 1e-5


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["ann", "snn-fused"])
def test_greedy_generation_equals_recomputing_and_stops_at_stop_ids(arch, mode):
    model = same_weights(tiny_model(arch), mode)
    prompt = ids_of(model, 2, 4)
    generated = model.greedy_generate(prompt, max_new_tokens=5)
    seq = prompt
    with torch.no_grad():
        for _ in range(5):
            seq = torch.cat([seq, model(seq)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generated, seq[:, 4:])
    first = int(generated[0, 0])
    assert model.greedy_generate(prompt[:1], 6, stop_ids=(first,)).tolist() == [[first]]
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.greedy_generate(prompt, 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_qat_snn_and_snn_fused_agree_bit_for_bit(arch):
    """Lossless conversion: qat == snn-fused at 8 bits; snn == snn-fused (and so do their operation counts)."""
    ann = tiny_model(arch)
    ids, mask = padded([ids_of(ann, 6), ids_of(ann, 4, seed=1)], left=[1])
    bits = SPIKING_BITS.get(arch, 5)
    logits, stats = {}, {}
    for mode, b in (("ann", 8), ("qat", 8), ("snn-fused", 8), ("snn", bits), ("fused", bits)):
        model = same_weights(ann, "snn-fused" if mode == "fused" else mode, bits=b)
        with OpCounter(model) as counter, torch.no_grad():
            logits[mode], _ = model(ids, mask)
        stats[mode] = counter.total()
    assert torch.equal(logits["qat"], logits["snn-fused"])
    assert torch.equal(logits["snn"], logits["fused"])
    for figure in ("spikes", "neuron_steps", "Effective_ACs", "Effective_MACs", "Dense"):  # float work: the stepped softmax evaluates every step
        assert getattr(stats["snn"], figure) == getattr(stats["fused"], figure), figure
    assert stats["snn"].Effective_ACs > 0 and stats["snn"].Effective_MACs == 0 and stats["snn-fused"].Effective_ACs > 0
    change = (logits["qat"] - logits["ann"])[mask.bool()].abs().max()
    assert 0 < change < CLOSE[arch]  # close to the float model, not equal


@pytest.mark.parametrize("arch", ARCHS)
def test_conversion_is_one_stage_2_path_and_lossless(arch):
    """convert() calibrates, swaps and audits every architecture the same way."""
    ann = tiny_model(arch)
    batches = [ids_of(ann, 2, 12, seed=s) for s in (1, 2)]
    conversion = convert(ann, batches, SpikingConfig(linear_granularity="smoothed", norm_granularity="smoothed"))
    ids = ids_of(ann, 2, 9, seed=3)
    with torch.no_grad():
        qat, snn, float_logits = conversion.qat(ids)[0], conversion.snn(ids)[0], ann(ids)[0]
    assert conversion.qat.mode == "qat" and conversion.snn.mode == "snn-fused"
    assert torch.equal(qat, snn) and (snn - float_logits).abs().max() < 0.5
    rows = audit_conversion(ann, conversion.snn, batches[:1])
    modules = dict(conversion.snn.named_modules())
    assert {r.kind for r in rows} >= {"Synapsis", "SNNRMSNorm" if "SNNRMSNorm" in {type(m).__name__ for m in modules.values()} else "SNNLayerNorm"}
    assert all(r.name in modules and r.time_steps == modules[r.name].coding_steps for r in rows)
    synapses = [r for r in rows if r.kind == "Synapsis"]
    assert all(r.time_steps == 127 for r in synapses) and sum(r.spikes > 0 for r in synapses) > len(synapses) / 2  # unrouted experts stay silent


@pytest.mark.parametrize("arch", ARCHS)
def test_spiking_coverage_counts_what_stays_float(arch):
    ann = tiny_model(arch)
    ids = ids_of(ann, 1, 6)
    coverage = {}
    for name, keep in (("all", ()), ("none", OPERATOR_KINDS)):
        model = same_weights(ann, "snn-fused", keep_float=keep)
        with OpCounter(model) as counter, torch.no_grad():
            model(ids)
        coverage[name] = spiking_coverage(counter.total())
        if name == "all" and arch in FLOAT_RECURRENCE:
            assert counter.totals[FLOAT_RECURRENCE[arch]].float_ops > 0  # the recurrence stays float work
    assert coverage["none"] == 0.0
    assert 0.5 < coverage["all"] <= 1.0 and (coverage["all"] < 1.0 or arch not in FLOAT_RECURRENCE)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["ann", "snn-fused"])
def test_checkpoint_round_trip(arch, mode, tmp_path):
    model = same_weights(tiny_model(arch), mode)
    save_checkpoint(model, tmp_path)
    loaded = load_checkpoint(tmp_path).model
    ids = ids_of(model, 1, 5)
    with torch.no_grad():
        assert torch.equal(loaded(ids)[0], model(ids)[0])
    assert loaded.config == model.config and loaded.spiking == model.spiking
    tied = [name for name, p in loaded.named_parameters(remove_duplicate=False) if p is loaded.lm_head.weight and name != "lm_head.weight"]
    assert len(tied) == int(model.config.tie_word_embeddings)  # the head is the input embedding itself


@pytest.mark.parametrize("arch", ARCHS)
def test_training_steps_lower_the_loss_and_reach_every_parameter(arch):
    model = tiny_model(arch).train()
    ids = ids_of(model, 4, 24, seed=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert [name for name, p in model.named_parameters() if p.grad is None] == []
    assert losses[-1] < losses[0] - LOSS_DROP.get(arch, 0.5)


@pytest.mark.parametrize("arch", ARCHS)
def test_qat_trains_with_straight_through_gradients(arch):
    model = same_weights(tiny_model(arch), "qat").train()
    ids, mask = padded([ids_of(model, 9), ids_of(model, 7, seed=1)], left=[1])
    logits, _ = model(ids, mask)
    assert type(model.lm_head).__name__ == "QSynapsis"
    logits.logsumexp(-1).mean().backward()
    assert [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    # the quantizers' clips and smoothing factors stay fixed unless a fine-tuning lets them learn
    assert all(not p.requires_grad for p in quantizer_parameters(model))
    make_quantizers_learnable(model)
    model.zero_grad()
    model(ids, mask)[0].logsumexp(-1).mean().backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("arch", ARCHS)
def test_config_round_trip_and_registry(arch):
    config_cls, model_cls = architecture(arch)
    config = config_cls(**TINY[arch])
    assert config.to_dict()["architecture"] == arch and config_cls.from_dict(config.to_dict()) == config
    assert type(tiny_model(arch)) is model_cls
    with pytest.raises(ValueError, match="unknown keys"):
        config_cls.from_dict({"architecture": arch, "d_model": 64})
    with pytest.raises(ValueError, match="unknown architecture"):
        architecture("gpt5")


BAD_VALUES = [
    ("mamba2", dict(hidden_size=0), "hidden_size"),
    ("mamba2", dict(head_dim=48), "head_dim"),
    ("mamba2", dict(chunk_size=-1), "chunk_size"),
    ("mamba2", dict(conv_kernel=1), "conv_kernel"),
    ("mamba2", dict(rms_norm_eps=0.0), "rms_norm_eps"),
    ("mamba2", dict(dt_min=0.5, dt_max=0.1), "dt_min"),
    ("mamba2", dict(state_size=2.5), "state_size"),
    ("ttt", dict(hidden_size=30), "hidden_size"),
    ("ttt", dict(num_attention_heads=0), "num_attention_heads"),
    ("ttt", dict(mini_batch_size=0), "mini_batch_size"),
    ("ttt", dict(ttt_base_lr=0.0), "ttt_base_lr"),
    ("ttt", dict(hidden_size=24, num_attention_heads=8), "head_dim"),
    ("ttt", dict(vocab_size=True), "vocab_size"),
    ("braingpt", dict(top_k=4), "top_k"),
    ("braingpt", dict(moe_gating="x"), "moe_gating"),
    ("braingpt", dict(dual=1), "dual"),
    ("braingpt", dict(num_pos_layers=0), "num_pos_layers"),
    ("braingpt", dict(active_fraction=1.5), "active_fraction"),
    ("braingpt", dict(hidden_size=15), "hidden_size"),
    ("llama", dict(num_key_value_heads=3), "num_key_value_heads"),
    ("llama", dict(rope_theta=0.0), "rope_theta"),
    ("gpt2", dict(num_attention_heads=5), "num_attention_heads"),
    ("gpt2", dict(ssa_alpha=-1.0), "ssa_alpha"),
]


@pytest.mark.parametrize("arch, bad, field", BAD_VALUES)
def test_bad_config_values_give_one_line_errors(arch, bad, field):
    config_cls, _ = architecture(arch)
    with pytest.raises(ValueError) as info:
        config_cls(**{**TINY[arch], **bad})
    assert field in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("arch", [a for a in ARCHS if architecture(a)[0].presets])
def test_the_tiny_preset_has_the_size_of_the_tiny_llama(arch):
    """The tiny configs of BrainGPT's Table 1 compare architectures at about the same parameter count."""
    llama_cls, llama_model = architecture("llama")
    llama = llama_model(llama_cls(vocab_size=10000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                                  num_key_value_heads=4, max_position_embeddings=256), init_weights=False).num_parameters()
    config_cls, model_cls = architecture(arch)
    assert abs(model_cls(config_cls.preset("tiny"), init_weights=False).num_parameters() / llama - 1) < 0.1


@pytest.mark.parametrize("arch", ARCHS)
def test_bad_input_is_a_one_line_error(arch):
    model = tiny_model(arch)
    V = model.config.vocab_size
    for bad, match in [
        (dict(input_ids=torch.tensor([[5, V]])), "outside the vocabulary"),
        (dict(input_ids=torch.tensor([[-1]])), "outside the vocabulary"),
        (dict(input_ids=torch.tensor([1, 2])), "2-D integer tensor"),
        (dict(input_ids=torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3)), "attention_mask must have shape"),
    ]:
        with pytest.raises(ValueError, match=match) as err:
            model(**bad)
        assert "\n" not in str(err.value)
    _, cache = model(torch.ones(1, 3, dtype=torch.long), use_cache=True)
    if hasattr(cache, "batch_size"):  # a recurrent state belongs to its rows
        with pytest.raises(ValueError, match="batch size"):
            model(torch.ones(2, 1, dtype=torch.long), cache=cache)
