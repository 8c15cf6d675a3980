"""A Llama / Qwen2-family decoder written once, its operators chosen by mode (BrainTransformers).

RMSNorm, rotary positions (the rotate-half convention of Llama in transformers), grouped-query
attention, SwiGLU MLP, tied or untied embeddings, a KV cache for generation. Parameter names
follow transformers' ``LlamaForCausalLM`` so checkpoints map one to one. In the spiking modes
every linear layer is a Synapsis, attention scores and attention-times-values are SNNMatmuls,
softmax is SNNSoftmax, SiLU is SNNSiLU, the SwiGLU product is SNNMultiply and the norms are
SNNRMSNorm (see ``operators.py``). What stays float in every mode is counted as float work:
the residual additions, the rotary rotation and the embedding lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.spiking import counters
from models.spiking.products import SNNMatmul

from .base import ArchConfig, CausalLM
from .operators import Operators
from .spiking_config import SpikingConfig


@dataclass(frozen=True)
class LlamaConfig(ArchConfig):
    architecture: ClassVar[str] = "llama"
    vocab_size: int = 32000
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    head_dim: int | None = None
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "max_position_embeddings"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})")
        if self.dims_per_head % 2:
            raise ValueError(f"head_dim must be even for rotary positions, got {self.dims_per_head}")
        if not self.rms_norm_eps > 0 or not self.rope_theta > 0:
            raise ValueError("rms_norm_eps and rope_theta must be > 0")

    @property
    def dims_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_attention_heads


@dataclass
class KVCache:
    """Keys and values (after rotary positions, before spike coding) of every layer, and the padding mask."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    mask: torch.Tensor  # (batch, cached length) bool

    @property
    def length(self) -> int:
        return self.mask.shape[1]

    def expand(self, batch: int) -> "KVCache":
        """The cache of a batch of one, shared by ``batch`` sequences (no copy)."""
        return KVCache(
            [k.expand(batch, *k.shape[1:]) for k in self.keys],
            [v.expand(batch, *v.shape[1:]) for v in self.values],
            self.mask.expand(batch, -1),
        )


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions.float()[..., None] * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, L, D); cos/sin (B, L, D)."""
    cos, sin = cos[:, None], sin[:, None]
    return x * cos + rotate_half(x) * sin


class Attention(nn.Module):
    def __init__(self, config: LlamaConfig, ops: Operators) -> None:
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.dims_per_head
        bias = config.attention_bias
        self.q_proj = ops.linear(config.hidden_size, self.num_heads * self.head_dim, bias)
        self.k_proj = ops.linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias)
        self.v_proj = ops.linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias)
        self.o_proj = ops.linear(self.num_heads * self.head_dim, config.hidden_size, False)
        self.scores = ops.attention_scores()
        self.softmax = ops.softmax()
        self.weighted_values = ops.attention_values()
        self.scaling = self.head_dim**-0.5
        # Float attention (ann mode, or attention and softmax kept float) runs as one fused
        # scaled_dot_product_attention call: same result within float tolerance, much faster;
        # counted runs record what the separate operators would (``_record_float_attention``).
        self.float_attention = ops.config.op_mode("attention") == "ann" and ops.config.op_mode("softmax") == "ann"

    def _float_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, causal_only: bool) -> torch.Tensor:
        """softmax(q k^T / sqrt(d), masked) v with grouped-query heads, in one fused call. ``causal_only``: the
        mask is the causal one on every real query (no cache, padding only at the end), so the kernel's
        own causal mask serves and skips the upper triangle."""
        gqa = self.num_heads != self.num_kv_heads
        if causal_only:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scaling, enable_gqa=gqa)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scaling, enable_gqa=gqa)

    def _record_float_attention(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> None:
        """What the separate float operators would record, without materializing the score matrix.

        Scores: nonzero(q / sqrt(d)) x N effective MACs; softmax: 5 float ops per score; P . V: one
        row of D MACs per unmasked (query, key) pair. The last counts a probability that underflows
        to exactly 0 as nonzero, where the operator path would skip it.
        """
        B, H, M, D = q.shape
        N = k.shape[2]
        dense = B * H * M * N * D
        counters.record(self.scores, Effective_MACs=counters.nonzero(q * self.scaling) * N, Dense=dense)
        counters.record(self.softmax, float_ops=5 * B * H * M * N)
        pairs = int(mask.expand(B, 1, M, N).sum()) * H
        counters.record(getattr(self.weighted_values, "matmul", self.weighted_values), Effective_MACs=pairs * D, Dense=dense)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, n, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        causal_only: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, L, _ = x.shape
        q = apply_rotary(self._heads(self.q_proj(x), self.num_heads), cos, sin)
        k = apply_rotary(self._heads(self.k_proj(x), self.num_kv_heads), cos, sin)
        v = self._heads(self.v_proj(x), self.num_kv_heads)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        if counters.counting():
            counters.record(self, float_ops=3 * (q.numel() + k.numel()) + q.numel())  # rotary + scaling
        if self.float_attention:
            if counters.counting():
                self._record_float_attention(q, k, mask)
            out = self._float_attention(q, k, v, mask, causal_only)
        else:
            out = self._operator_attention(q, k, v, mask)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, self.num_heads * self.head_dim)), present

    def _operator_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """softmax(q k^T / sqrt(d), masked) v through the separate (spiking or float) operators."""
        groups = self.num_heads // self.num_kv_heads
        k_all = k.repeat_interleave(groups, dim=1)
        v_all = v.repeat_interleave(groups, dim=1)
        q = q * self.scaling
        if isinstance(self.scores, SNNMatmul) and self.scores.mode == "snn" and getattr(self.softmax, "mode", None) == "snn":
            probs = self.softmax.integrate(self.scores.iter_steps(q, k_all.transpose(-1, -2)), mask=mask)
        else:
            probs = self.softmax(self.scores(q, k_all.transpose(-1, -2)), mask=mask)
        return self.weighted_values(probs, v_all)


class MLP(nn.Module):
    def __init__(self, config: LlamaConfig, ops: Operators, layer: int) -> None:
        super().__init__()
        self.gate_proj = ops.linear(config.hidden_size, config.intermediate_size, config.mlp_bias)
        self.up_proj = ops.linear(config.hidden_size, config.intermediate_size, config.mlp_bias)
        self.down_proj = ops.linear(config.intermediate_size, config.hidden_size, config.mlp_bias)
        self.act = ops.silu(layer)
        self.multiply = ops.multiply()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.multiply(self.act(self.gate_proj(x)), self.up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, ops: Operators, layer: int) -> None:
        super().__init__()
        self.input_layernorm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, ops)
        self.post_attention_layernorm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config, ops, layer)

    def forward(self, x, cos, sin, mask, past=None, causal_only: bool = False):
        attn, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past, causal_only)
        h = x + attn
        out = h + self.mlp(self.post_attention_layernorm(h))
        if counters.counting():
            counters.record(self, float_ops=2 * x.numel())  # the two residual additions
        return out, present


class LlamaModel(nn.Module):
    def __init__(self, config: LlamaConfig, ops: Operators) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, ops, i) for i in range(config.num_hidden_layers))
        self.norm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.rotary = RotaryEmbedding(config.dims_per_head, config.rope_theta)


class LlamaForCausalLM(CausalLM):
    """The decoder with its language-model head; ``forward`` returns float32 logits and the new cache."""

    def __init__(self, config: LlamaConfig, spiking: SpikingConfig | None = None, init_weights: bool = True) -> None:
        super().__init__()
        ops = self._start(config, spiking)
        self.model = LlamaModel(config, ops)
        self._finish(ops, self.model.embed_tokens, init_weights)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, KVCache | None]:
        now = self._input_mask(input_ids, attention_mask)
        B, L = input_ids.shape
        past_len = cache.length if cache is not None else 0
        full = now if cache is None else torch.cat([cache.mask, now], dim=1)
        positions = (full.long().cumsum(-1) - 1).clamp(min=0)[:, past_len:]
        query_index = past_len + torch.arange(L, device=input_ids.device)
        key_index = torch.arange(past_len + L, device=input_ids.device)
        mask = (key_index[None, :] <= query_index[:, None])[None, None] & full[:, None, None, :]
        mask = mask | (key_index[None, :] == query_index[:, None])[None, None]  # a padding query sees itself: no empty row
        # right padding only and no cache: every real query's row is the plain causal one (padding queries differ, unused)
        causal_only = cache is None and bool((now[:, 1:] <= now[:, :-1]).all())

        x = self.model.embed_tokens(input_ids)
        cos, sin = self.model.rotary(positions)
        keys, values = [], []
        for i, layer in enumerate(self.model.layers):
            past = (cache.keys[i], cache.values[i]) if cache is not None else None
            x, (k, v) = layer(x, cos, sin, mask, past, causal_only)
            keys.append(k)
            values.append(v)
        logits = self.lm_head(self.model.norm(x)).float()
        return logits, (KVCache(keys, values, full) if use_cache else None)


def spiking_coverage(stats: counters.OpStats) -> float:
    """Share of the model's operations that run as spike-driven accumulations: ACs / (ACs + MACs + float ops)."""
    total = stats.Effective_ACs + stats.Effective_MACs + stats.float_ops
    return stats.Effective_ACs / total if total else math.nan
