"""snn-fused decoding keeps each cached token's spike code instead of re-coding the whole KV cache at every
step: prefill, cached continuations and greedy decoding give the same logits bit for bit and the same
counts as re-coding everything, with and without padding, with grouped-query heads."""

import dataclasses

import pytest
import torch

from models.arch.blocks import SoftmaxAttention
from models.spiking.counters import OpCounter
from tests.tiny_models import same_weights, tiny_model


def recoding(model):
    """The same model with the coded cache switched off: every step codes all keys and values again."""
    other = type(model)(model.config, model.spiking, init_weights=False)
    other.load_state_dict(model.state_dict())
    other.eval()
    for module in other.modules():
        if isinstance(module, SoftmaxAttention):
            module.coded_cache = False
    return other


def decode(model, ids, mask, steps: int):
    """Prefill, then ``steps`` greedy steps with the cache; the logits of every forward and the op counts."""
    with OpCounter(model) as counter, torch.no_grad():
        logits, cache = model(ids, mask, use_cache=True)
        outputs = [logits]
        nxt = logits[:, -1].argmax(-1)[:, None]
        for _ in range(steps):
            logits, cache = model(nxt, torch.ones_like(nxt), cache=cache, use_cache=True)
            outputs.append(logits)
            nxt = logits[:, -1].argmax(-1)[:, None]
    return outputs, counter.total(), cache


@pytest.mark.parametrize("bits", [8, 4])
def test_decoding_with_coded_keys_and_values_is_bit_exact(bits):
    model = same_weights(tiny_model("llama"), "snn-fused", bits=bits)
    g = torch.Generator().manual_seed(bits)
    ids = torch.randint(0, 97, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding, as the adapter's batched generation has
    coded, coded_counts, cache = decode(model, ids, mask, steps=6)
    again, again_counts, plain = decode(recoding(model), ids, mask, steps=6)
    assert cache.codes is not None and plain.codes is None  # the first kept codes, the second did not
    assert cache.codes[0].keys.shape[-1] == 11 + 6  # every token coded once: the prefill and each step's input
    for a, b in zip(coded, again):
        assert torch.equal(a, b)
    # the same spikes and operations; the memory traffic differs in one figure: re-coding reads every cached value again
    assert dataclasses.replace(coded_counts, act_reads=0) == dataclasses.replace(again_counts, act_reads=0)
    assert coded_counts.act_reads < again_counts.act_reads


def test_a_shared_context_cache_keeps_its_codes_when_expanded():
    model = same_weights(tiny_model("llama"), "snn-fused")
    context = torch.randint(0, 97, (1, 9), generator=torch.Generator().manual_seed(0))
    tails = torch.randint(0, 97, (4, 3), generator=torch.Generator().manual_seed(1))
    results = []
    for m in (model, recoding(model)):
        with torch.no_grad():
            _, cache = m(context, use_cache=True)
            logits, _ = m(tails, torch.ones_like(tails), cache=cache.expand(4))
        results.append(logits)
    assert torch.equal(*results)


def test_modes_without_closed_form_coding_keep_no_codes():
    for mode in ("ann", "qat", "snn"):
        model = tiny_model("llama") if mode == "ann" else same_weights(tiny_model("llama"), mode)
        with torch.no_grad():
            _, cache = model(torch.randint(0, 97, (1, 5)), use_cache=True)
        assert cache.codes is None, mode


@pytest.mark.parametrize("groups, T", [(1, 127), (3, 7), (2, 1)])
def test_one_query_row_is_counted_from_kept_tallies_as_from_the_whole_operand(groups, T):
    """query_tallies (histograms kept per kv head) equals matmul_tallies over the repeated operands, for keys and values."""
    from models.spiking.fast import matmul_tallies, query_tallies
    from models.spiking.products import CodedTally

    g = torch.Generator().manual_seed(T)
    B, H_kv, D, N = 2, 2, 5, 9
    na_scores = torch.randint(-T, T + 1, (B, H_kv * groups, 1, D), generator=g).float()
    nk = torch.randint(-T, T + 1, (B, H_kv, D, N), generator=g).float()
    expected = matmul_tallies(na_scores, nk.repeat_interleave(groups, dim=1), T, T)
    keys = CodedTally.of_keys(nk[..., :4], T).extend(CodedTally.of_keys(nk[..., 4:], T))  # kept in two pieces, as a decoder does
    assert query_tallies(na_scores, keys.prefix(T), keys.spikes(), N, T, T) == expected
    na_values = torch.randint(-T, T + 1, (B, H_kv * groups, 1, N), generator=g).float()
    nv = torch.randint(-T, T + 1, (B, H_kv, N, D), generator=g).float()
    expected = matmul_tallies(na_values, nv.repeat_interleave(groups, dim=1), T, T)
    values = CodedTally.of_values(nv[:, :, :6], T).extend(CodedTally.of_values(nv[:, :, 6:], T))
    assert query_tallies(na_values, values.prefix(T), values.spikes(), D, T, T) == expected
