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

from models.spiking import counters
from models.spiking.products import SNNMatmul
from models.spiking.ssa import SpikingSelfAttention
from models.spiking.surrogate import SURROGATES

from .llama import KVCache
from .base import ArchConfig, CausalLM
from .operators import Operators
from .spiking_config import SpikingConfig

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
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings", "ssa_time_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.intermediate_size is not None and (not isinstance(self.intermediate_size, int) or self.intermediate_size < 1):
            raise ValueError(f"intermediate_size must be a positive integer or None, got {self.intermediate_size!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})")
        if not self.layer_norm_epsilon > 0:
            raise ValueError(f"layer_norm_epsilon must be > 0, got {self.layer_norm_epsilon}")
        if self.activation_function not in GELUS:
            raise ValueError(f"activation_function must be one of {', '.join(GELUS)}, got {self.activation_function!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if self.ssa_surrogate not in SURROGATES:
            raise ValueError(f"ssa_surrogate must be one of {', '.join(SURROGATES)}, got {self.ssa_surrogate!r}")
        if self.ssa_alpha is not None and not (isinstance(self.ssa_alpha, (int, float)) and self.ssa_alpha > 0):
            raise ValueError(f"ssa_alpha must be a number > 0 or None, got {self.ssa_alpha!r}")

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


class Attention(nn.Module):
    """Causal multi-head attention with softmax: c_attn (fused Q, K, V), scores, softmax, P.V, c_proj."""

    def __init__(self, config: GPT2Config, ops: Operators) -> None:
        super().__init__()
        D = config.hidden_size
        self.num_heads, self.head_dim = config.num_attention_heads, D // config.num_attention_heads
        self.c_attn = ops.linear(D, 3 * D, True)
        self.c_proj = ops.linear(D, D, True)
        self.scores = ops.attention_scores()
        self.softmax = ops.softmax()
        self.weighted_values = ops.attention_values()
        self.scaling = self.head_dim**-0.5

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        B, L, D = x.shape
        q, k, v = (self._heads(t) for t in self.c_attn(x).split(D, dim=-1))
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        present = (k, v)
        q = q * self.scaling
        if counters.counting():
            counters.record(self, float_ops=q.numel())  # scaling
        if isinstance(self.scores, SNNMatmul) and self.scores.mode == "snn" and getattr(self.softmax, "mode", None) == "snn":
            probs = self.softmax.integrate(self.scores.iter_steps(q, k.transpose(-1, -2)), mask=mask)
        else:
            probs = self.softmax(self.scores(q, k.transpose(-1, -2)), mask=mask)
        out = self.weighted_values(probs, v).transpose(1, 2).reshape(B, L, D)
        return self.c_proj(out), present


class MLP(nn.Module):
    def __init__(self, config: GPT2Config, ops: Operators, layer: int) -> None:
        super().__init__()
        self.c_fc = ops.linear(config.hidden_size, config.inner_size, True)
        self.act = ops.gelu(layer, config.gelu_approximate)
        self.c_proj = ops.linear(config.inner_size, config.hidden_size, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.act(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: GPT2Config, ops: Operators, layer: int, spiking: SpikingConfig) -> None:
        super().__init__()
        self.ln_1 = ops.layer_norm(config.hidden_size, config.layer_norm_epsilon)
        if config.attention == "ssa":
            mode = spiking.mode if spiking.mode != "ann" else "qat"
            self.attn = SpikingSelfAttention(
                config.hidden_size, config.num_attention_heads, config.ssa_time_steps, config.ssa_surrogate, config.ssa_alpha,
                config.ssa_normalize, mode=mode,
            )
        else:
            self.attn = Attention(config, ops)
        self.ln_2 = ops.layer_norm(config.hidden_size, config.layer_norm_epsilon)
        self.mlp = MLP(config, ops, layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, past=None):
        attn, present = self.attn(self.ln_1(x), mask, past)
        h = x + attn
        out = h + self.mlp(self.ln_2(h))
        if counters.counting():
            counters.record(self, float_ops=2 * x.numel())  # the two residual additions
        return out, present


class GPT2Model(nn.Module):
    def __init__(self, config: GPT2Config, ops: Operators, spiking: SpikingConfig) -> None:
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.h = nn.ModuleList(Block(config, ops, i, spiking) for i in range(config.num_hidden_layers))
        self.ln_f = ops.layer_norm(config.hidden_size, config.layer_norm_epsilon)


class GPT2ForCausalLM(CausalLM):
    """GPT-2 with its language-model head; ``forward`` returns float32 logits and the new cache."""

    def __init__(self, config: GPT2Config, spiking: SpikingConfig | None = None, init_weights: bool = True) -> None:
        super().__init__()
        ops = self._start(config, spiking)
        self.transformer = GPT2Model(config, ops, self.spiking)
        self._finish(ops, self.transformer.wte, init_weights)
        if init_weights:
            for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, std=0.02 / (2 * config.num_hidden_layers) ** 0.5)

    def forward_hidden(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
        with_logits: bool = True,
    ) -> tuple[torch.Tensor | None, list[torch.Tensor], KVCache | None]:
        """(float32 logits or None, hidden states, cache): the hidden states are every block's output and, last, ln_f's output."""
        now = self._input_mask(input_ids, attention_mask)
        B, L = input_ids.shape
        past_len = cache.length if cache is not None else 0
        full = now if cache is None else torch.cat([cache.mask, now], dim=1)
        positions = (full.long().cumsum(-1) - 1).clamp(min=0)[:, past_len:]
        if positions.numel() and int(positions.max()) >= self.config.max_position_embeddings:
            raise ValueError(f"the sequence is longer than max_position_embeddings ({self.config.max_position_embeddings})")
        query_index = past_len + torch.arange(L, device=input_ids.device)
        key_index = torch.arange(past_len + L, device=input_ids.device)
        mask = (key_index[None, :] <= query_index[:, None])[None, None] & full[:, None, None, :]

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
        return logits, hidden, (KVCache(keys, values, full) if use_cache else None)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, KVCache | None]:
        logits, _, cache = self.forward_hidden(input_ids, attention_mask, cache, use_cache)
        return logits, cache

    def ssa_parameters(self) -> list[nn.Parameter]:
        """The parameters of the spike-based self-attention blocks (what NeurTransformer fine-tunes)."""
        return [p for m in self.modules() if isinstance(m, SpikingSelfAttention) for p in m.parameters()]
