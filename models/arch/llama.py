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

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from models.fields import check_fields
from models.spiking import counters

from .base import ArchConfig, CausalLM, Stack
from .blocks import CodedKeysValues, KVCache, SoftmaxAttention, SwiGLU, causal_mask, mlp_residual
from .operators import Operators


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
        check_fields(
            self,
            positive_int=("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                          "max_position_embeddings"),
            positive=("rms_norm_eps", "rope_theta"),
        )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of num_key_value_heads ({self.num_key_value_heads})"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})")
        if self.dims_per_head % 2:
            raise ValueError(f"head_dim must be even for rotary positions, got {self.dims_per_head}")

    @property
    def dims_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_attention_heads


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


class Attention(SoftmaxAttention):
    """Grouped-query attention with rotary positions on q and k; ``SoftmaxAttention.attend`` does the rest."""

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
        self._attention_operators(ops, self.head_dim)

    def _heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, n, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor, CodedKeysValues | None] | None = None,
        causal_only: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, CodedKeysValues | None]]:
        B, L, _ = x.shape
        q = apply_rotary(self._heads(self.q_proj(x), self.num_heads), cos, sin)
        k = apply_rotary(self._heads(self.k_proj(x), self.num_kv_heads), cos, sin)
        v = self._heads(self.v_proj(x), self.num_kv_heads)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        if counters.counting():
            counters.record(self, float_ops=3 * (q.numel() + k.numel()) + q.numel())  # rotary + scaling
        codes = self.code_keys_values(k, v, past[2] if past is not None else None)
        out = self.attend_coded(q, codes, mask) if codes is not None else self.attend(q, k, v, mask, causal_only)
        return self.o_proj(out.transpose(1, 2).reshape(B, L, self.num_heads * self.head_dim)), (k, v, codes)


class DecoderLayer(nn.Module):
    def __init__(self, config: LlamaConfig, ops: Operators, layer: int) -> None:
        super().__init__()
        self.input_layernorm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, ops)
        self.post_attention_layernorm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.intermediate_size, ops, layer, config.mlp_bias)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor, past: tuple | None = None, causal_only: bool = False
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attn, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past, causal_only)
        return mlp_residual(self, x, attn, self.post_attention_layernorm, self.mlp), present


class LlamaForCausalLM(CausalLM):
    """The decoder with its language-model head; ``forward`` returns float32 logits and the new cache."""

    def build(self, ops: Operators) -> nn.Module:
        c = self.config  # built in this order: embeddings, layers, norm (the random init follows it)
        self.model = Stack(
            ("embed_tokens", "layers", "norm"), nn.Embedding(c.vocab_size, c.hidden_size),
            [DecoderLayer(c, ops, i) for i in range(c.num_hidden_layers)], ops.norm(c.hidden_size, c.rms_norm_eps),
        )
        self.model.rotary = RotaryEmbedding(c.dims_per_head, c.rope_theta)
        return self.model.embed_tokens

    def run(self, input_ids: torch.Tensor, now: torch.Tensor, cache: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        full, positions, mask, own = causal_mask(now, cache)
        mask = mask | own  # a padding query sees itself: no empty row
        # right padding only and no cache: every real query's row is the plain causal one (padding queries differ, unused)
        causal_only = cache is None and bool((now[:, 1:] <= now[:, :-1]).all())
        x = self.model.embed_tokens(input_ids)
        cos, sin = self.model.rotary(positions)
        keys, values, codes = [], [], []
        for i, layer in enumerate(self.model.layers):
            past = (cache.keys[i], cache.values[i], cache.codes[i] if cache.codes is not None else None) if cache is not None else None
            x, (k, v, coded) = layer(x, cos, sin, mask, past, causal_only)
            keys.append(k)
            values.append(v)
            codes.append(coded)
        kept = codes if all(c is not None for c in codes) else None
        return self.lm_head(self.model.norm(x)).float(), KVCache(keys, values, full, kept)
