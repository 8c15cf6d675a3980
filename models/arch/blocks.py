"""The pieces the architectures share: softmax attention from the factory's operators, its KV cache and
masks, the SwiGLU MLP, and the pre-norm residual step of a block.

Softmax attention (Vaswani et al. 2017): softmax(q k^T / sqrt(d), masked) v. In the spiking modes
q k^T and P . V are SNNMatmuls (BrainGPT B.1) and the softmax is SNNSoftmax (B.3); in ``snn`` the
softmax integrates the steps of the scores as they come. When all three are float the block may
compute them as one fused kernel, counted as the separate operators would count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.spiking import counters, kernels, observe
from models.spiking.checks import coding_steps
from models.spiking.fast import append_along
from models.spiking.gated import staircase_product
from models.spiking.tally import CodedTally

from .operators import Operators


class CodedKeysValues(NamedTuple):
    """The spike codes of a layer's cached keys and values (``snn-fused``), one code per token and kv head, so a
    decoder codes each token once, when it enters the cache, instead of the whole cache at every step; with the
    firing tallies the op counters need, kept the same way."""

    keys: torch.Tensor  # counts of k^T, (batch, kv heads, head dim, tokens)
    key_scales: torch.Tensor  # (batch, kv heads, 1, tokens)
    values: torch.Tensor  # counts of v, (batch, kv heads, tokens, head dim)
    value_scales: torch.Tensor  # (batch, kv heads, tokens, 1)
    key_tally: CodedTally | None  # None: coded while nothing was counting (the counters then take a pass over the codes)
    value_tally: CodedTally | None

    def extend(self, new: "CodedKeysValues") -> "CodedKeysValues":
        """These codes followed by ``new``'s (the tokens just appended)."""
        codes = (append_along(old, add, dim) for old, add, dim in zip(self[:4], new[:4], (-1, -1, -2, -2)))
        tallies = (None if mine is None or theirs is None else mine.extend(theirs)
                   for mine, theirs in ((self.key_tally, new.key_tally), (self.value_tally, new.value_tally)))
        return CodedKeysValues(*codes, *tallies)

    def expand(self, batch: int) -> "CodedKeysValues":
        tallies = (None if t is None else t.expand(batch) for t in (self.key_tally, self.value_tally))
        return CodedKeysValues(*(x.expand(batch, *x.shape[1:]) for x in self[:4]), *tallies)


@dataclass
class KVCache:
    """Keys and values of every layer (after rotary positions, before spike coding), the padding mask, and in
    ``snn-fused`` the keys' and values' spike codes (``codes``, one ``CodedKeysValues`` per layer)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor  # (batch, cached length) bool
    codes: list[CodedKeysValues] | None = None

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def expand(self, batch: int) -> "KVCache":
        """The cache of a batch of one, shared by ``batch`` sequences (no copy)."""
        return KVCache(
            [k.expand(batch, *k.shape[1:]) for k in self.keys],
            [v.expand(batch, *v.shape[1:]) for v in self.values],
            self.mask.expand(batch, -1),
            [c.expand(batch) for c in self.codes] if self.codes is not None else None,
        )


class CausalMask(NamedTuple):
    full: torch.Tensor  # (batch, cached + new) bool: real tokens so far
    positions: torch.Tensor  # (batch, new) position of each new token among its row's real tokens
    mask: torch.Tensor  # (batch, 1, new, cached + new) bool: query i may see key j (causal and real)
    own: torch.Tensor  # (1, 1, new, cached + new) bool: the query's own key


def causal_mask(now: torch.Tensor, cache: KVCache | None) -> CausalMask:
    """The attention mask of new tokens ``now`` (batch, length; True = real) after a cache; positions count real tokens."""
    past_len = cache.length if cache is not None else 0
    full = now if cache is None else torch.cat([cache.mask, now], dim=1)
    positions = (full.long().cumsum(-1) - 1).clamp(min=0)[:, past_len:]
    query_index = past_len + torch.arange(now.shape[1], device=now.device)
    key_index = torch.arange(full.shape[1], device=now.device)
    mask = (key_index[None, :] <= query_index[:, None])[None, None] & full[:, None, None, :]
    return CausalMask(full, positions, mask, (key_index[None, :] == query_index[:, None])[None, None])


def grouped_mask(mask: torch.Tensor, groups: int) -> torch.Tensor:
    """A mask (B, 1, M, N) for the rows of ``groups`` query heads in one (B, 1, groups x M, N) block (grouped-query
    attention without a repeated cache: ``SoftmaxAttention.attend_coded``)."""
    if groups == 1:
        return mask
    return mask.unsqueeze(2).expand(mask.shape[0], 1, groups, *mask.shape[2:]).reshape(mask.shape[0], 1, groups * mask.shape[2], mask.shape[-1])


BLOCK_ELEMENTS = 2**22  # entries of a (rows x keys) block of snn-fused attention: 16 MB in float32, within a CPU's caches
_PER_MASK: dict[str, tuple] = {}  # slot -> (mask's base tensor, key, value) of the last call: every layer of a forward asks


def once_per_mask(slot: str, mask: torch.Tensor, extra: object, compute: Callable[[], Any]) -> Any:
    """``compute()`` for ``mask`` (a view of it, e.g. expanded, counts as the same mask), kept in ``slot`` while the
    same tensor, unmodified and seen through the same view, comes back with the same ``extra``: the layers of a
    forward share one mask. The tensor is held, so a later mask can never pass for it."""
    base = mask._base if mask._base is not None else mask
    key = (tuple(mask.shape), tuple(mask.stride()), mask.storage_offset(), base._version, extra)
    kept = _PER_MASK.get(slot)
    if kept is not None and kept[0] is base and kept[1] == key:
        return kept[2]
    value = compute()
    _PER_MASK[slot] = (base, key, value)
    return value


def allowed_pairs(mask: torch.Tensor) -> int:
    """How many (query, key) pairs ``mask`` allows (its True entries), counted once per forward (``once_per_mask``)."""
    return once_per_mask("allowed pairs", mask, None, lambda: int(mask.sum()))


def grouped_mask_bias(mask: torch.Tensor, groups: int) -> torch.Tensor:
    """``grouped_mask`` as an additive bias, 0 where a key may be seen and -inf where not (``kernels.scaled_scores``),
    made once per forward (``once_per_mask``)."""

    def bias() -> torch.Tensor:
        grouped = grouped_mask(mask, groups)
        return torch.zeros(grouped.shape, device=mask.device).masked_fill_(~grouped, float("-inf"))

    return once_per_mask("mask bias", mask, groups, bias)


CAUSAL_BLOCK_ROWS = 128  # query positions per row block where later blocks see more keys (``row_blocks``)


def visible_keys(mask: torch.Tensor) -> list[int]:
    """Per query row of ``mask`` (B, 1, M, N), 1 + the last key any sequence's row may see (every row sees its own
    key), once per forward (``once_per_mask``)."""

    def last() -> list[int]:
        flipped = mask.flip(-1).to(torch.uint8).argmax(-1)  # the first True from the right
        return (mask.shape[-1] - flipped).amax(0).reshape(-1).tolist()

    return once_per_mask("visible keys", mask, None, last)


def row_blocks(mask: torch.Tensor, batch_heads: int, groups: int, keys: int, device: torch.device) -> list[tuple[slice, int]]:
    """The row blocks of snn-fused attention over (groups x M) rows (a kv head's query heads, one after another) and
    how many of the first keys each needs: as many rows per block as ``BLOCK_ELEMENTS`` allows; where the mask hides
    later keys from earlier rows (causal prefill) and the softmax is blind to a masked tail
    (``kernels.softmax_ignores_masked_tail``), blocks of ``CAUSAL_BLOCK_ROWS`` positions of one head, each keeping
    the keys its last row may see, rounded up to ``kernels.KEY_ALIGN``: about half the L x L work of a prompt."""
    queries = mask.shape[-2]
    rows = groups * queries
    step = max(1, BLOCK_ELEMENTS // max(1, batch_heads * keys))
    if queries <= CAUSAL_BLOCK_ROWS or keys <= kernels.KEY_ALIGN or not kernels.softmax_ignores_masked_tail(device):
        return [(slice(start, min(start + step, rows)), keys) for start in range(0, rows, step)]
    visible = visible_keys(mask)
    step = min(step, CAUSAL_BLOCK_ROWS)
    blocks = []
    for head in range(groups):
        for start in range(0, queries, step):
            stop = min(start + step, queries)
            seen = min(keys, -(-max(visible[start:stop]) // kernels.KEY_ALIGN) * kernels.KEY_ALIGN)
            blocks.append((slice(head * queries + start, head * queries + stop), seen))
    return blocks


class SoftmaxAttention(nn.Module):
    """Base of the softmax attention blocks: ``attend`` from the factory's ``scores``, ``softmax`` and
    ``weighted_values`` operators. ``fused_kernel``: float attention may run as one
    ``scaled_dot_product_attention`` call (same result within float tolerance, much faster)."""

    fused_kernel: ClassVar[bool] = True

    def _attention_operators(self, ops: Operators, head_dim: int) -> None:
        """The three operators (registered after the projections, so the state dict keeps its order)."""
        self.scores = ops.attention_scores()
        self.softmax = ops.softmax()
        self.weighted_values = ops.attention_values()
        self.scaling = head_dim**-0.5
        self.float_attention = self.fused_kernel and ops.fused_float_attention()
        self.stepped_attention = ops.stepped_attention()
        self.coded_cache = ops.coded_attention_cache()

    def code_keys_values(self, k: torch.Tensor, v: torch.Tensor, past: CodedKeysValues | None) -> CodedKeysValues | None:
        """The codes of all keys and values so far: ``past``'s plus those of the new tokens (the last ones of k and v),
        or None when this block does not keep codes (not ``snn-fused``, or the conversion audit is observing)."""
        if not self.coded_cache or observe.observing():
            return None
        start = past.keys.shape[-1] if past is not None else 0
        n_k, s_k = self.scores.code_b(k[:, :, start:].transpose(-1, -2))
        n_v, s_v = self.weighted_values.code_values(v[:, :, start:])
        tallies = (CodedTally.of_keys(n_k, self.scores.qb.T), CodedTally.of_values(n_v, self.weighted_values.values.T)) if counters.counting() else (None, None)
        new = CodedKeysValues(n_k, s_k, n_v, s_v, *tallies)
        return past.extend(new) if past is not None else new

    def record_cache_reads(self, kv_heads: int, head_dim: int, mask: torch.Tensor, steps: int = 1) -> None:
        """The keys and values read from the cache (``counters.py``): for every (query, key) pair the mask allows, one key
        and one value row of each kv head (a group of query heads shares it); ``steps`` times if read per time step."""
        cached = 2 * kv_heads * head_dim * allowed_pairs(mask)
        counters.record(self, cache_reads=cached, step_reads=steps * cached)

    def _cache_steps(self) -> int:
        """Time steps of the spike code of the cached keys (1 in the float and qat modes)."""
        b = getattr(self.scores, "qb", None)
        return coding_steps(self.scores.coding, b.T) if b is not None and getattr(self.scores, "mode", "qat") != "qat" else 1

    def attend_coded(self, q: torch.Tensor, codes: CodedKeysValues, mask: torch.Tensor) -> torch.Tensor:
        """``attend`` with keys and values given as their codes: the same output and counts, no re-coding of the cache."""
        if counters.counting():
            self.record_cache_reads(codes.keys.shape[1], codes.keys.shape[2], mask.expand(q.shape[0], 1, *mask.shape[2:]), self._cache_steps())
        B, H, M, D = q.shape
        kv_heads = codes.keys.shape[1]
        groups = H // kv_heads
        # grouped-query heads without repeating the cache: the rows of a kv head's query heads in one product
        # (heads of a group are adjacent); every row is coded and scored as the repeated form would, so the bits agree
        q = q.reshape(B, kv_heads, groups * M, D)
        if getattr(self.softmax, "mode", None) == "snn-fused" and self.softmax.input_quant is None:  # scores masked as they are scaled
            out = self._attend_coded_blocks(q * self.scaling, codes, grouped_mask_bias(mask, groups), groups, mask)
            return out.reshape(B, H, M, out.shape[-1])
        scores = self.scores.forward_coded(q * self.scaling, codes.keys, codes.key_scales, codes.key_tally, b_heads=groups)
        probs = self.softmax(scores, mask=grouped_mask(mask, groups))
        out = self.weighted_values.forward_coded(probs, codes.values, codes.value_scales, codes.value_tally, v_heads=groups)
        return out.reshape(B, H, M, out.shape[-1])

    def _attend_coded_blocks(self, q: torch.Tensor, codes: CodedKeysValues, bias: torch.Tensor, groups: int, mask: torch.Tensor) -> torch.Tensor:
        """Scores, softmax and P . V of the snn-fused operators for blocks of query rows (q scaled, (B, kv heads, rows, D)),
        so that no (rows x keys) intermediate outgrows the caches (``BLOCK_ELEMENTS``), and a block of causal rows works
        only on the keys it can see (``row_blocks``): every row is computed as in one block, and the counts of the three
        operators are recorded once, from the blocks' summed tallies (those of every key, seen or not)."""
        keys = codes.keys.shape[-1]
        outs, score_tallies, value_tallies = [], (0, 0), (0, 0)
        for part, seen in row_blocks(mask, q.shape[0] * q.shape[1], groups, keys, q.device):
            cut = slice(None) if seen == keys else slice(0, seen)
            scores, tallies = self.scores.coded_block(q[:, :, part], codes.keys[..., cut], codes.key_scales[..., cut], codes.key_tally,
                                                      mask_bias=bias[:, :, part, cut], whole_b=codes.keys)
            probs = self.softmax.forward_masked(scores, record=False)
            out, more = self.weighted_values.coded_block(probs, codes.values[..., cut, :], codes.value_scales[..., cut, :], codes.value_tally,
                                                         whole_values=codes.values)
            outs.append(out)
            if tallies is not None:
                score_tallies = (score_tallies[0] + tallies[0], score_tallies[1] + tallies[1])
                value_tallies = (value_tallies[0] + more[0], value_tallies[1] + more[1])
        blocks = len(outs)
        if counters.counting():
            whole = q.new_empty(()).expand(*q.shape[:3], keys)  # the shape of the call's scores and probabilities
            self.scores.record_coded(q, codes.keys, codes.key_tally, score_tallies, blocks, b_heads=groups)
            self.softmax._record_counts(whole, evaluations=1)
            self.weighted_values.record_coded(whole, codes.values, codes.value_tally, value_tallies, blocks, v_heads=groups)
        return outs[0] if blocks == 1 else torch.cat(outs, dim=2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, causal_only: bool = False) -> torch.Tensor:
        """softmax(q k^T / sqrt(d), masked) v: q (B, H, M, D) unscaled, k and v (B, H_kv, N, D) (grouped-query heads),
        mask (B, 1, M, N). ``causal_only``: the mask is the causal one on every real query (the fused kernel's own)."""
        if counters.counting():
            self.record_cache_reads(k.shape[1], k.shape[-1], mask.expand(q.shape[0], 1, q.shape[2], k.shape[2]), self._cache_steps())
        if self.float_attention:
            if counters.counting():
                self._record_fused(q, k, mask)
            gqa = q.shape[1] != k.shape[1]
            if causal_only:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling, enable_gqa=gqa)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=gqa)
        groups = q.shape[1] // k.shape[1]
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        q = q * self.scaling
        if self.stepped_attention:
            probs = self.softmax.integrate(self.scores.iter_steps(q, k.transpose(-1, -2)), mask=mask)
        else:
            probs = self.softmax(self.scores(q, k.transpose(-1, -2)), mask=mask)
        return self.weighted_values(probs, v)

    def _record_fused(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> None:
        """What the separate float operators would record, without materializing the score matrix. P . V counts one
        row of D MACs per unmasked (query, key) pair: a probability that underflows to exactly 0 counts as nonzero."""
        B, H, M, D = q.shape
        N = k.shape[2]
        self.scores.record_counts(counters.nonzero(q * self.scaling), B * H * M, D, N)
        self.softmax.record_counts(B * H * M * N)
        self.weighted_values.record_counts(int(mask.expand(B, 1, M, N).sum()) * H, B * H * M, N, D)


class SwiGLU(nn.Module):
    """down(SiLU(gate(x)) * up(x)) (Shazeer 2020): Llama's MLP, TTT's and BrainGPT's experts. In the spiking
    modes SiLU is SNNSiLU (B.2.2) and the product SNNMultiply (B.1)."""

    def __init__(self, hidden_size: int, intermediate_size: int, ops: Operators, layer: int, bias: bool = False) -> None:
        super().__init__()
        self.gate_proj = ops.linear(hidden_size, intermediate_size, bias)
        self.up_proj = ops.linear(hidden_size, intermediate_size, bias)
        self.down_proj = ops.linear(intermediate_size, hidden_size, bias)
        self.act = ops.silu(layer)
        self.multiply = ops.multiply()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_proj(x), self.up_proj(x)
        fused = staircase_product(self.act, self.multiply, gate, up)
        return self.down_proj(fused if fused is not None else self.multiply(self.act(gate), up))


def mlp_residual(block: nn.Module, x: torch.Tensor, mixed: torch.Tensor, norm: nn.Module, mlp: nn.Module) -> torch.Tensor:
    """The rest of a pre-norm block after its sequence mixer: h = x + mixed, h + mlp(norm(h)); the two residual
    additions are counted as ``block``'s float work."""
    h = x + mixed
    out = h + mlp(norm(h))
    if counters.counting():
        counters.record(block, float_ops=2 * x.numel(), act_reads=4 * x.numel(), act_writes=2 * x.numel())  # two additions
    return out
