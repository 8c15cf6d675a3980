"""The pieces the architectures share: softmax attention from the factory's operators, its KV cache and
masks, the SwiGLU MLP, and the pre-norm residual step of a block.

Softmax attention (Vaswani et al. 2017): softmax(q k^T / sqrt(d), masked) v. In the spiking modes
q k^T and P . V are SNNMatmuls (BrainGPT B.1) and the softmax is SNNSoftmax (B.3); in ``snn`` the
softmax integrates the steps of the scores as they come. When all three are float the block may
compute them as one fused kernel, counted as the separate operators would count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.spiking import counters, observe
from models.spiking.checks import coding_steps
from models.spiking.products import CodedTally

from .operators import Operators


class CodedKeysValues(NamedTuple):
    """The spike codes of a layer's cached keys and values (``snn-fused``), one code per token and kv head, so a
    decoder codes each token once, when it enters the cache, instead of the whole cache at every step; with the
    firing tallies the op counters need, kept the same way."""

    keys: torch.Tensor  # counts of k^T, (batch, kv heads, head dim, tokens)
    key_scales: torch.Tensor  # (batch, kv heads, 1, tokens)
    values: torch.Tensor  # counts of v, (batch, kv heads, tokens, head dim)
    value_scales: torch.Tensor  # (batch, kv heads, tokens, 1)
    key_tally: CodedTally
    value_tally: CodedTally

    def extend(self, new: "CodedKeysValues") -> "CodedKeysValues":
        """These codes followed by ``new``'s (the tokens just appended)."""
        codes = (torch.cat([old, add], dim=dim) for old, add, dim in zip(self[:4], new[:4], (-1, -1, -2, -2)))
        return CodedKeysValues(*codes, self.key_tally.extend(new.key_tally), self.value_tally.extend(new.value_tally))

    def expand(self, batch: int) -> "CodedKeysValues":
        return CodedKeysValues(*(x.expand(batch, *x.shape[1:]) for x in self[:4]), self.key_tally.expand(batch), self.value_tally.expand(batch))

    def repeat_heads(self, groups: int) -> tuple[torch.Tensor, ...]:
        """The four code tensors, each kv head's once per query head of its group (grouped-query attention)."""
        return tuple(self[:4]) if groups == 1 else tuple(x.repeat_interleave(groups, dim=1) for x in self[:4])


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
        new = CodedKeysValues(n_k, s_k, n_v, s_v, CodedTally.of_keys(n_k, self.scores.qb.T), CodedTally.of_values(n_v, self.weighted_values.values.T))
        return past.extend(new) if past is not None else new

    def record_cache_reads(self, kv_heads: int, head_dim: int, mask: torch.Tensor, steps: int = 1) -> None:
        """The keys and values read from the cache (``counters.py``): for every (query, key) pair the mask allows, one key
        and one value row of each kv head (a group of query heads shares it); ``steps`` times if read per time step."""
        cached = 2 * kv_heads * head_dim * int(mask.sum())
        counters.record(self, cache_reads=cached, step_reads=steps * cached)

    def _cache_steps(self) -> int:
        """Time steps of the spike code of the cached keys (1 in the float and qat modes)."""
        b = getattr(self.scores, "qb", None)
        return coding_steps(self.scores.coding, b.T) if b is not None and getattr(self.scores, "mode", "qat") != "qat" else 1

    def attend_coded(self, q: torch.Tensor, codes: CodedKeysValues, mask: torch.Tensor) -> torch.Tensor:
        """``attend`` with keys and values given as their codes: the same output and counts, no re-coding of the cache."""
        if counters.counting():
            self.record_cache_reads(codes.keys.shape[1], codes.keys.shape[2], mask.expand(q.shape[0], 1, *mask.shape[2:]), self._cache_steps())
        n_k, s_k, n_v, s_v = codes.repeat_heads(q.shape[1] // codes.keys.shape[1])
        probs = self.softmax(self.scores.forward_coded(q * self.scaling, n_k, s_k, codes.key_tally), mask=mask)
        return self.weighted_values.forward_coded(probs, n_v, s_v, codes.value_tally)

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
        return self.down_proj(self.multiply(self.act(self.gate_proj(x)), self.up_proj(x)))


def mlp_residual(block: nn.Module, x: torch.Tensor, mixed: torch.Tensor, norm: nn.Module, mlp: nn.Module) -> torch.Tensor:
    """The rest of a pre-norm block after its sequence mixer: h = x + mixed, h + mlp(norm(h)); the two residual
    additions are counted as ``block``'s float work."""
    h = x + mixed
    out = h + mlp(norm(h))
    if counters.counting():
        counters.record(block, float_ops=2 * x.numel(), act_reads=4 * x.numel(), act_writes=2 * x.numel())  # two additions
    return out
