"""GPT-2 written once, its operators chosen by mode; ``attention="ssa"`` gives NeurTransformer's model.

GPT-2 (Radford et al., 2019): learned absolute position embeddings, pre-LayerNorm blocks, a
GELU MLP (4x width by default, the tanh GELU of the original), tied embeddings, causal
attention with a padding mask. Positions count real tokens only (padding gets none), so a
sequence scores the same alone and in a padded batch.

Parameter names equal transformers' ``GPT2LMHeadModel`` (``transformer.h.0.attn.c_attn.weight``
...). The one difference: transformers stores c_attn, c_proj, c_fc and mlp.c_proj as ``Conv1D``
with weights (in, out); here they are linear layers with weights (out, in).
``from_transformers_state_dict`` transposes those four and drops transformers' non-parameter
buffers; nothing else is renamed.

Modes (``operators.py``): in ``qat``/``snn``/``snn-fused`` the linear layers are (Q)Synapsis,
QK^T and P.V are SNNMatmuls, softmax is SNNSoftmax, GELU is SNNGELU, the LayerNorms are
SNNLayerNorm. With ``attention="ssa"`` every block's attention is NeurTransformer's spike-based
self-attention (``models/spiking/ssa.py``) and the rest is what the mode makes it (steps 1-2 of
NeurTransformer: SSA in, the feed-forward block converted). Float in every mode: embeddings,
position embeddings and residual additions (counted as float work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from models.fields import check_fields
from models.spiking import counters
from models.spiking.ssa import SpikingSelfAttention
from models.spiking.surrogate import SURROGATES

from .base import ArchConfig, CausalLM
from .blocks import KVCache, SoftmaxAttention, causal_mask, mlp_residual
from .operators import Operators

ATTENTIONS = ("softmax", "ssa")
GELUS = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "none"}  # transformers' names -> torch's approximate
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass(frozen=True)
class GPT2Config(ArchConfig):
    architecture: ClassVar[str] = "gpt2"
    vocab_size: int = 50257
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int | None = None  # None: 4 x hidden_size
    max_position_embeddings: int = 1024
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    tie_word_embeddings: bool = True
    attention: str = "softmax"  # "ssa": NeurTransformer's spike-based self-attention
    ssa_time_steps: int = 8
    ssa_surrogate: str = "atan"
    ssa_alpha: float | None = None  # None: the surrogate's default
    ssa_normalize: bool = False

    def __post_init__(self) -> None:
        check_fields(
            self,
            positive_int=("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "ssa_time_steps"),
            optional_positive_int=("intermediate_size",),
            positive=("layer_norm_epsilon",),
            optional_positive=("ssa_alpha",),
            choices={"activation_function": GELUS, "attention": ATTENTIONS, "ssa_surrogate": SURROGATES},
        )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})")

    @property
    def inner_size(self) -> int:
        return self.intermediate_size if self.intermediate_size is not None else 4 * self.hidden_size

    @property
    def gelu_approximate(self) -> str:
        return GELUS[self.activation_function]

    def transformers_config(self) -> dict[str, Any]:
        """The keyword arguments of transformers' ``GPT2Config`` for the same model (no dropout)."""
        return dict(
            vocab_size=self.vocab_size, n_embd=self.hidden_size, n_layer=self.num_hidden_layers, n_head=self.num_attention_heads,
            n_inner=self.intermediate_size, n_positions=self.max_position_embeddings, layer_norm_epsilon=self.layer_norm_epsilon,
            activation_function=self.activation_function, tie_word_embeddings=self.tie_word_embeddings,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        )


def from_transformers_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' GPT2LMHeadModel state dict -> this model's: Conv1D weights transposed, buffers dropped."""
    out = {}
    for name, tensor in state.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")):  # causal-mask buffers of older transformers
            continue
        out[name] = tensor.t().contiguous() if name.endswith(CONV1D_WEIGHTS) else tensor
    return out


class Attention(SoftmaxAttention):
    """Causal multi-head attention with softmax: c_attn (fused Q, K, V), scores, softmax, P.V, c_proj.

    In ann mode it runs through the separate float operators (no fused kernel), as it was trained.
    """

    fused_kernel = False

    def __init__(self, config: GPT2Config, ops: Operators) -> None:
        super().__init__()
        D = config.hidden_size
        self.num_heads, self.head_dim = config.num_attention_heads, D // config.num_attention_heads
        self.c_attn = ops.linear(D, 3 * D, True)
        self.c_proj = ops.linear(D, D, True)
        self._attention_operators(ops, self.head_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def _attention(
        self, x: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(Q K V of ``x`` (B, L, 3D), attention output before c_proj (B, L, D), present keys and values)."""
        B, L, D = x.shape
        qkv = self.c_attn(x)
        q, k, v = (self._heads(t) for t in qkv.split(D, dim=-1))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        if counters.counting():
            counters.record(self, float_ops=q.numel())  # scaling
        out = self.attend(q, k, v, mask).transpose(1, 2).reshape(B, L, D)
        return qkv, out, (k, v)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        _, out, present = self._attention(x, mask, past)
        return self.c_proj(out), present

    @torch.no_grad()
    def reference_activations(self, x: torch.Tensor, mask: torch.Tensor, past: Any = None) -> tuple[torch.Tensor, ...]:
        """Q, K, V and the output before c_proj, each (B, L, D), on this block's forward inputs: what SSA calibrates to."""
        qkv, out, _ = self._attention(x, mask, past)
        return (*qkv.split(x.shape[-1], dim=-1), out)


class MLP(nn.Module):
    def __init__(self, config: GPT2Config, ops: Operators, layer: int) -> None:
        super().__init__()
        self.c_fc = ops.linear(config.hidden_size, config.inner_size, True)
        self.act = ops.gelu(layer, config.gelu_approximate)
        self.c_proj = ops.linear(config.inner_size, config.hidden_size, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPT2Config, ops: Operators, layer: int) -> None:
        super().__init__()
        self.ln_1 = ops.layer_norm(config.hidden_size, config.layer_norm_epsilon)
        if config.attention == "ssa":  # one computation in every mode; in ann mode it trains as qat
            mode = ops.config.mode if ops.config.mode != "ann" else "qat"
            self.attn = SpikingSelfAttention(
                config.hidden_size, config.num_attention_heads, config.ssa_time_steps, config.ssa_surrogate, config.ssa_alpha,
                config.ssa_normalize, mode=mode,
            )
        else:
            self.attn = Attention(config, ops)
        self.ln_2 = ops.layer_norm(config.hidden_size, config.layer_norm_epsilon)
        self.mlp = MLP(config, ops, layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past: Any = None) -> tuple[torch.Tensor, Any]:
        attn, present = self.attn(self.ln_1(x), mask, past)
        return mlp_residual(self, x, attn, self.ln_2, self.mlp), present


class GPT2Model(nn.Module):
    def __init__(self, config: GPT2Config, ops: Operators) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.h = nn.ModuleList(Block(config, ops, i) for i in range(config.num_hidden_layers))
        self.ln_f = ops.layer_norm(config.hidden_size, config.layer_norm_epsilon)


class GPT2ForCausalLM(CausalLM):
    """GPT-2 with its language-model head; ``forward`` returns float32 logits and the new cache."""

    def build(self, ops: Operators) -> nn.Module:
        self.transformer = GPT2Model(self.config, ops)
        return self.transformer.wte

    def _arch_init(self) -> None:
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, std=0.02 / (2 * self.config.num_hidden_layers) ** 0.5)

    def forward_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, cache: KVCache | None = None, with_logits: bool = True
    ) -> tuple[torch.Tensor | None, list[torch.Tensor], KVCache]:
        """(float32 logits or None, hidden states, the new cache): the hidden states are every block's output and, last, ln_f's output."""
        return self._hidden(input_ids, self._input_mask(input_ids, attention_mask), cache, with_logits)

    def run(self, input_ids: torch.Tensor, now: torch.Tensor, cache: KVCache | None) -> tuple[torch.Tensor, KVCache]:
        logits, _, new_cache = self._hidden(input_ids, now, cache, True)
        return logits, new_cache

    def _hidden(
        self, input_ids: torch.Tensor, now: torch.Tensor, cache: KVCache | None, with_logits: bool
    ) -> tuple[torch.Tensor | None, list[torch.Tensor], KVCache]:
        full, positions, mask, _ = causal_mask(now, cache)
        if positions.numel() and int(positions.max()) >= self.config.max_position_embeddings:
            raise ValueError(f"the sequence is longer than max_position_embeddings ({self.config.max_position_embeddings})")
        x = self.transformer.wte(input_ids) + self.transformer.wpe(positions)
        if counters.counting():
            counters.record(self.transformer, float_ops=x.numel())  # token + position embedding
        keys, values, hidden = [], [], []
        for i, block in enumerate(self.transformer.h):
            past = (cache.keys[i], cache.values[i]) if cache is not None else None
            x, (k, v) = block(x, mask, past)
            keys.append(k)
            values.append(v)
            hidden.append(x)
        h = self.transformer.ln_f(x)
        hidden.append(h)
        logits = self.lm_head(h).float() if with_logits else None
        return logits, hidden, KVCache(keys, values, full)

    def attention_blocks(self) -> list[nn.Module]:
        """Every block's attention (float or SSA): what NeurTransformer's energy comparison counts."""
        return [block.attn for block in self.transformer.h]

    def ssa_parameters(self) -> list[nn.Parameter]:
        """The parameters of the spike-based self-attention blocks (what NeurTransformer fine-tunes)."""
        return [p for m in self.modules() if isinstance(m, SpikingSelfAttention) for p in m.parameters()]
