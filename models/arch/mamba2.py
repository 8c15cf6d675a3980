"""Mamba-2 (Dao & Gu, "Transformers are SSMs", ICML 2024): the Mamba baseline of BrainGPT's Table 1.

Each block is ``x + out_proj(GatedRMSNorm(SSD(SiLU(conv1d(x, B, C)), dt), z))`` after an RMSNorm
(Mamba-2 paper, section 7 and figure 6): one ``in_proj`` gives z, x, B, C and dt; a short causal
depthwise convolution and SiLU act on (x, B, C); the state-space layer (SSD, section 6) runs with
a scalar-times-identity A per head, dt = softplus(dt + dt_bias) and a D skip; the output is gated
by SiLU(z) before the RMSNorm. B and C are shared by all heads (one group, as in the released
mamba2-130m). Parameter names follow transformers' ``Mamba2ForCausalLM``, so its state dict loads
one to one.

The SSD layer is the selective SSM of the paper's eq. (1) with SSD's scalar-times-identity
transition A_t = exp(dt_t A_h) I, per head h with A_h < 0 (discretized as in Mamba: exp(dt A) for A, dt B for the input):

    h_t = exp(dt_t A_h) h_{t-1} + dt_t x_t B_t^T        y_t = h_t C_t + D_h x_t

``ssd_chunked`` is the chunked algorithm of section 6 (quadratic "attention-like" form inside a
chunk, state passing between chunks); ``ssd_recurrent`` is the plain recurrence, the reference
and the one-token step of generation. Both are pure PyTorch and stay float in every mode; the
model records their work (and the convolution's) as ``float_ops``. The linear layers and the
norms come from ``Operators``, so in ``qat``/``snn-fused`` they are QSynapsis/Synapsis and
SNNRMSNorm like Llama's; the two SiLUs and the gate product come from it too.

Padding: the model first moves each row's real tokens to the front (a stable permutation, undone
on the logits), so every layer sees right-padded rows. Padded positions get x = dt = 0, so the
SSM state passes them unchanged, and the convolution state keeps the last real inputs; a padded
row therefore scores and continues exactly like the row alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.fields import check_fields
from models.spiking import counters

from .base import ArchConfig, CausalLM, Stack
from .operators import Operators


PRESETS: dict[str, dict[str, Any]] = {
    # ~ the parameter count of LlamaConfig(vocab 10000, hidden 256, intermediate 688, 4 layers):
    # a Mamba-2 block has ~half the parameters of a Transformer block, hence twice the layers.
    "tiny": dict(vocab_size=10000, hidden_size=256, num_hidden_layers=8, state_size=64, head_dim=64, chunk_size=64, max_position_embeddings=256),
    # BrainGPT's appendix C.2 table 6 is not in the text; these are the published mamba2-130m settings
    # (d_model 768, 24 layers, d_state 128, expand 2, headdim 64, GPT-NeoX vocabulary padded to 50288).
    "150m": dict(vocab_size=50288, hidden_size=768, num_hidden_layers=24, state_size=128, expand=2, head_dim=64, conv_kernel=4, chunk_size=256, max_position_embeddings=2048),
}


@dataclass(frozen=True)
class Mamba2Config(ArchConfig):
    architecture: ClassVar[str] = "mamba2"
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    vocab_size: int = 50288
    hidden_size: int = 768
    num_hidden_layers: int = 24
    state_size: int = 128
    expand: int = 2
    head_dim: int = 64
    conv_kernel: int = 4
    chunk_size: int = 256
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = True
    use_conv_bias: bool = True
    use_bias: bool = False
    dt_min: float = 0.001  # initial dt range (log-uniform), as in mamba_ssm
    dt_max: float = 0.1

    def __post_init__(self) -> None:
        check_fields(
            self,
            positive_int=("vocab_size", "hidden_size", "num_hidden_layers", "state_size", "expand", "head_dim", "conv_kernel", "chunk_size",
                          "max_position_embeddings"),
            positive=("rms_norm_eps", "dt_min", "dt_max"),
        )
        if self.conv_kernel < 2:
            raise ValueError(f"conv_kernel must be >= 2, got {self.conv_kernel}")
        if self.intermediate_size % self.head_dim:
            raise ValueError(f"head_dim ({self.head_dim}) must divide expand * hidden_size ({self.intermediate_size})")
        if not self.dt_min <= self.dt_max:
            raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min <= dt_max, got {self.dt_min} and {self.dt_max}")

    @property
    def intermediate_size(self) -> int:
        return self.expand * self.hidden_size

    @property
    def num_heads(self) -> int:
        return self.intermediate_size // self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.intermediate_size + 2 * self.state_size


# ---------------------------------------------------------------------------------------------
# The SSD layer (pure PyTorch)


def segment_sums(a: torch.Tensor) -> torch.Tensor:
    """a (..., Q) -> (..., Q, Q) with [i, j] = a_{j+1} + ... + a_i for i >= j, -inf above the diagonal.

    Summed by a cumulative sum of a masked matrix, not as a difference of prefix sums, so that
    long chunks of strongly decaying steps do not lose precision.
    """
    Q = a.shape[-1]
    ones = torch.ones(Q, Q, dtype=torch.bool, device=a.device)
    terms = a[..., :, None].expand(*a.shape, Q).masked_fill(~ones.tril(-1), 0.0)  # [k, j] = a_k if k > j else 0
    sums = terms.cumsum(dim=-2)  # [i, j] = sum_{j < k <= i} a_k
    return sums.masked_fill(~ones.tril(), -math.inf)


def ssd_chunked(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int, state: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SSD layer by chunks (Mamba-2 paper, section 6, without the D skip).

    x (b, l, h, p), dt (b, l, h) (after softplus), A (h) (negative), B and C (b, l, n), state
    (b, h, p, n) or None. Returns y (b, l, h, p) and the final state. The length is padded to a
    multiple of ``chunk_size`` with dt = 0 and x = 0, which leaves the state unchanged.
    """
    b, l, h, p = x.shape
    n = B.shape[-1]
    pad = (-l) % chunk_size
    if pad:
        x, B, C = (F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
    c, Q = (l + pad) // chunk_size, chunk_size
    x, dt, B, C = x.view(b, c, Q, h, p), dt.view(b, c, Q, h), B.view(b, c, Q, n), C.view(b, c, Q, n)
    a = (dt * A).permute(0, 1, 3, 2)  # (b, c, h, Q): log of each step's decay
    a_cum = a.cumsum(-1)
    xdt = x * dt[..., None]

    # 1. inside each chunk: y_i = sum_{j <= i} (C_i . B_j) exp(a_{j+1} + ... + a_i) dt_j x_j
    scores = C @ B.transpose(-1, -2)  # (b, c, Q, Q)
    weights = scores[:, :, None] * torch.exp(segment_sums(a))  # (b, c, h, Q, Q)
    y = torch.einsum("bchij,bcjhp->bcihp", weights, xdt)

    # 2. the state each chunk leaves at its end, from its own inputs
    to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (b, c, h, Q)
    chunk_states = torch.einsum("bchj,bcjhp,bcjn->bchpn", to_end, xdt, B)

    # 3. pass the states from chunk to chunk (the recurrence at chunk granularity)
    h_state = x.new_zeros(b, h, p, n) if state is None else state
    chunk_decay = torch.exp(a_cum[..., -1])  # (b, c, h)
    starts = []
    for k in range(c):
        starts.append(h_state)
        h_state = chunk_decay[:, k, :, None, None] * h_state + chunk_states[:, k]
    start_states = torch.stack(starts, dim=1)  # (b, c, h, p, n)

    # 4. what the state at each chunk's start contributes to its outputs
    y = y + torch.einsum("bcin,bchpn,bchi->bcihp", C, start_states, torch.exp(a_cum))
    return y.reshape(b, c * Q, h, p)[:, :l], h_state


def ssd_recurrent(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same layer, one step at a time: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t."""
    b, l, h, p = x.shape
    h_state = x.new_zeros(b, h, p, B.shape[-1]) if state is None else state
    ys = []
    for t in range(l):
        decay = torch.exp(dt[:, t] * A)[..., None, None]  # (b, h, 1, 1)
        h_state = decay * h_state + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, None, None, :]
        ys.append(torch.einsum("bhpn,bn->bhp", h_state, C[:, t]))
    return torch.stack(ys, dim=1), h_state


def ssd_float_ops(batch: int, length: int, heads: int, head_dim: int, state_size: int, chunk_size: int | None) -> int:
    """Float multiply-adds and elementwise operations of one SSD call (chunked, or recurrent if None)."""
    if chunk_size is None:
        return batch * length * heads * (3 * head_dim * state_size + 2)
    Q = chunk_size
    chunks = -(-length // Q)
    per_chunk = Q * Q * state_size + heads * (Q * Q * (head_dim + 3) + 2 * Q * head_dim * state_size + head_dim * state_size + 4 * Q)
    return batch * chunks * per_chunk


# ---------------------------------------------------------------------------------------------
# The model


@dataclass
class Mamba2Cache:
    """The recurrent state of every layer: the last ``conv_kernel - 1`` convolution inputs and the SSM state."""

    conv_states: list[torch.Tensor]  # (batch, conv_kernel - 1, conv_dim)
    ssm_states: list[torch.Tensor]  # (batch, heads, head_dim, state_size)

    @property
    def batch_size(self) -> int:
        return self.ssm_states[0].shape[0]

    def expand(self, batch: int) -> "Mamba2Cache":
        """The cache of a batch of one, shared by ``batch`` sequences (no copy)."""
        return Mamba2Cache([s.expand(batch, *s.shape[1:]) for s in self.conv_states], [s.expand(batch, *s.shape[1:]) for s in self.ssm_states])


class Mamba2Mixer(nn.Module):
    def __init__(self, config: Mamba2Config, ops: Operators, layer: int) -> None:
        super().__init__()
        self.config = config
        H, d_inner = config.num_heads, config.intermediate_size
        self.in_proj = ops.linear(config.hidden_size, d_inner + config.conv_dim + H, config.use_bias)
        self.conv1d = nn.Conv1d(config.conv_dim, config.conv_dim, config.conv_kernel, groups=config.conv_dim, bias=config.use_conv_bias)
        self.act = ops.silu(layer)
        self.dt_bias = nn.Parameter(torch.empty(H))
        self.A_log = nn.Parameter(torch.empty(H))
        self.D = nn.Parameter(torch.empty(H))
        self.gate_act = ops.silu(layer)
        self.gate = ops.multiply()
        self.norm = ops.norm(d_inner, config.rms_norm_eps)
        self.out_proj = ops.linear(d_inner, config.hidden_size, config.use_bias)
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """A ~ U[1, 16], D = 1, softplus(dt_bias) log-uniform in [dt_min, dt_max] (mamba_ssm's initialization)."""
        H, c = self.A_log.shape[0], self.config
        self.A_log.copy_(torch.log(torch.empty(H).uniform_(1, 16)))
        self.D.fill_(1.0)
        dt = torch.exp(torch.rand(H) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min)).clamp(min=1e-4)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # the inverse of softplus

    def initial_state(self, batch: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        return like.new_zeros(batch, c.conv_kernel - 1, c.conv_dim), like.new_zeros(batch, c.num_heads, c.head_dim, c.state_size)

    def forward(
        self, u: torch.Tensor, mask: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """u (b, l, hidden), mask (b, l) right-padded (real tokens first); returns the output and the new state."""
        c = self.config
        b, l, _ = u.shape
        H, P, N, d_inner = c.num_heads, c.head_dim, c.state_size, c.intermediate_size
        conv_state, ssm_state = state if state is not None else self.initial_state(b, u)
        real = mask[..., None].to(u.dtype)

        z, xBC, dt = self.in_proj(u).split([d_inner, c.conv_dim, H], dim=-1)
        # causal depthwise convolution over (history, this call); padded positions feed it zeros
        conv_in = torch.cat([conv_state.to(u.dtype), xBC * real], dim=1)  # (b, k - 1 + l, conv_dim)
        xBC = F.conv1d(conv_in.transpose(1, 2), self.conv1d.weight, self.conv1d.bias, groups=c.conv_dim).transpose(1, 2)
        xBC = self.act(xBC)
        x, B, C = xBC.split([d_inner, N, N], dim=-1)
        x = (x * real).view(b, l, H, P)
        dt = F.softplus(dt + self.dt_bias) * real  # dt = 0 at padding: the state passes unchanged
        A = -torch.exp(self.A_log)

        chunked = l > 1
        if chunked:
            y, ssm_state = ssd_chunked(x, dt, A, B, C, c.chunk_size, ssm_state)
        else:
            y, ssm_state = ssd_recurrent(x, dt, A, B, C, ssm_state)
        y = (y + x * self.D[:, None]).reshape(b, l, d_inner)
        out = self.out_proj(self.norm(self.gate(y, self.gate_act(z))))

        # the next call's convolution history: the last k - 1 inputs up to each row's last real token
        ends = mask.sum(dim=1)[:, None] + torch.arange(c.conv_kernel - 1, device=u.device)  # (b, k - 1)
        conv_state = conv_in.gather(1, ends[..., None].expand(-1, -1, c.conv_dim))
        if counters.counting():
            ssd = ssd_float_ops(b, l, H, P, N, c.chunk_size if chunked else None)
            counters.record(self, float_ops=ssd + b * l * (c.conv_dim * c.conv_kernel + 6 * H + 2 * d_inner))  # + conv, dt, D skip
        return out, (conv_state, ssm_state)


class Mamba2Block(nn.Module):
    def __init__(self, config: Mamba2Config, ops: Operators, layer: int) -> None:
        super().__init__()
        self.norm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.mixer = Mamba2Mixer(config, ops, layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.mixer(self.norm(x), mask, state)
        if counters.counting():
            counters.record(self, float_ops=x.numel())  # the residual addition
        return x + out, state


class Mamba2ForCausalLM(CausalLM):
    """The Mamba-2 language model; ``forward`` returns float32 logits and the recurrent state as the cache."""

    def build(self, ops: Operators) -> nn.Module:
        c = self.config  # built in this order: embeddings, layers, norm (A, D and dt keep their construction-time draws)
        self.backbone = Stack(
            ("embeddings", "layers", "norm_f"), nn.Embedding(c.vocab_size, c.hidden_size),
            [Mamba2Block(c, ops, i) for i in range(c.num_hidden_layers)], ops.norm(c.hidden_size, c.rms_norm_eps),
        )
        return self.backbone.embeddings

    @torch.no_grad()
    def _arch_init(self) -> None:
        """GPT-2 style: scale the residual branch's last projection by 1/sqrt(depth)."""
        for layer in self.backbone.layers:
            layer.mixer.out_proj.weight.div_(math.sqrt(self.config.num_hidden_layers))

    def run(self, input_ids: torch.Tensor, mask: torch.Tensor, cache: Mamba2Cache | None) -> tuple[torch.Tensor, Mamba2Cache]:
        input_ids, mask, order = self.real_tokens_first(input_ids, mask, cache)
        x = self.backbone.embeddings(input_ids)
        conv_states, ssm_states = [], []
        for i, layer in enumerate(self.backbone.layers):
            state = (cache.conv_states[i], cache.ssm_states[i]) if cache is not None else None
            x, (conv_state, ssm_state) = layer(x, mask, state)
            conv_states.append(conv_state)
            ssm_states.append(ssm_state)
        logits = self.lm_head(self.backbone.norm_f(x)).float()
        return self.original_order(logits, order), Mamba2Cache(conv_states, ssm_states)
