"""TTT-Linear (Sun et al. 2024, arXiv 2407.04620): the "original TTT" of BrainGPT's Table 1 and its section 3.1.1.

The hidden state of a TTT layer is a model: per head, a linear map f(x; W, b) = x W + b (W is
d x d, x a row vector). Each token trains it with one step of gradient descent on a
self-supervised reconstruction loss (paper eq. 4 and section 2.3, with section 2.7's layer norm
and residual, "TTT-Linear"):

    training view x_k = theta_K x_t,  label view x_v = theta_V x_t,  test view x_q = theta_Q x_t
    loss  l(W; x_t) = 1/2 || LN(x_k W + b) + x_k - x_v ||^2        (LN per head, learnable)
    output z_t = LN(x_q W_t + b_t) + x_q

Conventions, stated because they change the numbers:
- mini-batch TTT (section 2.4): the gradient of every token in a mini-batch of ``mini_batch_size``
  tokens is taken at the W of the mini-batch's start, W_0; the output of the token at position i
  (1-based) of the mini-batch uses W_i = W_0 - s_i * sum_{j <= i} eta_j grad l(W_0; x_j), the W
  *after* the updates that include token i itself (the paper's causal convention: z_t = f(x_q; W_t)).
  The next mini-batch starts from W_b. s_i = max(0, 1/i + c_i) is the averaging scale of the
  official implementation ("token_idx" with a learnable offset c, initialized to 0), so at
  initialization W_i is W_0 minus the running mean of the weighted gradients;
- eta_j = ttt_base_lr * sigmoid(x_t . w_h + b_h) / head_dim: the learned per-token, per-head
  inner learning rate (section 2.7), computed from the layer's input;
- the loss carries the factor 1/2 (its gradient is LN(.) + x_k - x_v pushed through LN), as the
  official implementation; a factor 2 would only rescale eta;
- rotary positions on x_q and x_k use the position inside the mini-batch (official implementation);
- the dual form (section 2.5) computes the same W_i x_q without materializing W_i.

Backbone: the Transformer backbone, "TTT-Linear (T)": RMSNorm -> TTT layer -> residual, RMSNorm ->
SwiGLU MLP -> residual, as Llama with its attention replaced. The TTT layer's output goes through
a post-norm (RMSNorm here, LayerNorm in the official code: ``Operators`` has no LayerNorm), an
optional GELU output gate (``use_gate``, the Mamba backbone's; off by default) and ``o_proj``.

Execution modes: every linear layer (q, k, v, o, the inner learning rate, the gate, the MLP, the
LM head) comes from ``Operators`` and the block norms are ``ops.norm``, so ``qat``/``snn-fused``
turn them into QSynapsis/Synapsis and SNNRMSNorm. The inner loop (W, its gradient, its LN) is
float in every mode and is recorded as ``float_ops``.

Cache: per layer W_0, b_0 of the current mini-batch and the sum of its tokens' weighted gradients,
and per row the number of tokens it holds; a call may start in the middle of a mini-batch.
Padding: the model moves each row's real tokens to the front (a stable permutation, undone on
the logits); padded tokens get eta = 0 and are not counted, so they never change W.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.fields import check_fields
from models.spiking import counters

from .base import ArchConfig, CausalLM, Stack
from .blocks import SwiGLU, mlp_residual
from .llama import RotaryEmbedding, apply_rotary
from .operators import Operators

TTT_NORM_EPS = 1e-6


PRESETS: dict[str, dict[str, Any]] = {
    # the Llama "tiny" (vocab 10000, hidden 256, intermediate 688, 4 layers, 4 heads) with TTT layers
    "tiny": dict(vocab_size=10000, hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4, mini_batch_size=16, max_position_embeddings=256),
    # BrainGPT's appendix C.2 table 7 is not in the text; these are the official TTT "125m" settings
    # (hidden 768, intermediate 2048, 12 layers, 12 heads, mini-batch 16, base lr 1, Llama vocabulary).
    "150m": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12, mini_batch_size=16, max_position_embeddings=2048),
}


@dataclass(frozen=True)
class TTTConfig(ArchConfig):
    architecture: ClassVar[str] = "ttt"
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    vocab_size: int = 32000
    hidden_size: int = 768
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    mini_batch_size: int = 16
    ttt_base_lr: float = 1.0
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = True
    use_gate: bool = False

    def __post_init__(self) -> None:
        check_fields(
            self,
            positive_int=("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "mini_batch_size",
                          "max_position_embeddings"),
            positive=("ttt_base_lr", "rms_norm_eps", "rope_theta"),
        )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim (hidden_size / num_attention_heads) must be even for rotary positions, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


# ---------------------------------------------------------------------------------------------
# The inner loop


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LN over the last dimension with per-head weight and bias (heads on dim 1)."""
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return weight[:, None] * (x - mu) / torch.sqrt(var + TTT_NORM_EPS) + bias[:, None]


def reconstruction_grad(Z: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """d/dZ of 1/2 ||LN(Z) - target||^2, the LN backward written out (one row per token)."""
    mu = Z.mean(-1, keepdim=True)
    std = torch.sqrt(Z.var(-1, keepdim=True, unbiased=False) + TTT_NORM_EPS)
    z_hat = (Z - mu) / std
    g_hat = (weight[:, None] * z_hat + bias[:, None] - target) * weight[:, None]
    return (g_hat - g_hat.mean(-1, keepdim=True) - z_hat * (g_hat * z_hat).mean(-1, keepdim=True)) / std


@dataclass
class TTTState:
    """One layer's inner model at the start of the current mini-batch and its tokens' gradient sums."""

    W: torch.Tensor  # (batch, heads, d, d)
    b: torch.Tensor  # (batch, heads, d)
    grad_W: torch.Tensor  # (batch, heads, d, d): sum of eta_j grad_W l(W; x_j) over the tokens seen
    grad_b: torch.Tensor  # (batch, heads, d)


@dataclass
class TTTCache:
    states: list[TTTState]
    count: torch.Tensor  # (batch,) tokens already in the current mini-batch, 0 .. mini_batch_size - 1

    @property
    def batch_size(self) -> int:
        return self.count.shape[0]

    def expand(self, batch: int) -> "TTTCache":
        """The cache of a batch of one, shared by ``batch`` sequences (no copy)."""
        grow = lambda t: t.expand(batch, *t.shape[1:])  # noqa: E731
        return TTTCache([TTTState(grow(s.W), grow(s.b), grow(s.grad_W), grow(s.grad_b)) for s in self.states], grow(self.count))


class TTTLinear(nn.Module):
    """The TTT-Linear layer (section 2, figure 4), dual form per mini-batch."""

    def __init__(self, config: TTTConfig, ops: Operators) -> None:
        super().__init__()
        D, H, d, b = config.hidden_size, config.num_attention_heads, config.head_dim, config.mini_batch_size
        self.num_heads, self.head_dim, self.mini_batch_size, self.base_lr = H, d, b, config.ttt_base_lr
        self.q_proj = ops.linear(D, D, False)
        self.k_proj = ops.linear(D, D, False)
        self.v_proj = ops.linear(D, D, False)
        self.o_proj = ops.linear(D, D, False)
        self.lr_proj = ops.linear(D, H, True)  # the inner learning rate's gate, one per head (section 2.7)
        self.W1 = nn.Parameter(torch.randn(H, d, d) * 0.02)  # W_0 of every sequence, learned by the outer loop
        self.b1 = nn.Parameter(torch.zeros(H, d))
        self.ttt_norm_weight = nn.Parameter(torch.ones(H, d))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(H, d))
        self.learnable_token_idx = nn.Parameter(torch.zeros(b))  # offsets c_i of the averaging scale s_i
        self.register_buffer("token_idx", 1.0 / torch.arange(1, b + 1, dtype=torch.float32), persistent=False)
        self.rotary = RotaryEmbedding(d, config.rope_theta)
        self.post_norm = ops.norm(D, config.rms_norm_eps)
        self.use_gate = config.use_gate
        if self.use_gate:
            self.g_proj = ops.linear(D, D, False)
            self.gate = ops.multiply()

    def initial_state(self, batch: int) -> TTTState:
        grow = lambda t: t.expand(batch, *t.shape)  # noqa: E731
        return TTTState(grow(self.W1), grow(self.b1), grow(torch.zeros_like(self.W1)), grow(torch.zeros_like(self.b1)))

    def views(self, x: torch.Tensor, position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """x_q, x_k, x_v (b, H, l, d), rotary at ``position`` inside the mini-batch, and eta (b, H, l)."""
        B, L, _ = x.shape
        heads = lambda t: t.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # noqa: E731
        cos, sin = self.rotary(position)
        xq = apply_rotary(heads(self.q_proj(x)), cos, sin)
        xk = apply_rotary(heads(self.k_proj(x)), cos, sin)
        eta = self.base_lr * torch.sigmoid(self.lr_proj(x)).transpose(1, 2) / self.head_dim
        return xq, xk, heads(self.v_proj(x)), eta

    def inner_loop(
        self, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor, eta: torch.Tensor, mask: torch.Tensor, state: TTTState, count: torch.Tensor
    ) -> tuple[torch.Tensor, TTTState]:
        """Mini-batch TTT over right-padded rows (real tokens first); returns z (b, H, l, d) and the new state.

        Row r's token j sits in slot count[r] + j of a grid of whole mini-batches, so a call can
        start inside a mini-batch; the slots before it stand for the tokens already summed in
        ``state.grad_W``. Padded tokens and empty slots have eta = 0.
        """
        B, H, L, d = xq.shape
        b = self.mini_batch_size
        slot = count[:, None] + torch.arange(L, device=xq.device)  # (B, L)
        n_slots = -(-(int(count.max()) + L) // b) * b
        eta = eta * mask[:, None]

        def to_grid(t: torch.Tensor) -> torch.Tensor:  # (B, H, L, ...) -> (B, H, mini-batches, b, ...)
            index = slot.view(B, 1, L, *([1] * (t.dim() - 3))).expand_as(t)
            grid = t.new_zeros(B, H, n_slots, *t.shape[3:]).scatter(2, index, t)
            return grid.view(B, H, n_slots // b, b, *t.shape[3:])

        xq_g, xk_g, xv_g, eta_g = to_grid(xq), to_grid(xk), to_grid(xv), to_grid(eta)
        scale = (self.token_idx.to(xq.dtype) + self.learnable_token_idx).clamp(min=0)  # s_i
        causal = torch.ones(b, b, dtype=torch.bool, device=xq.device).tril()
        total = count + mask.sum(1)  # tokens through the end of this call, counted from the current mini-batch's start
        W, bias, gW, gb = state.W, state.b, state.grad_W, state.grad_b
        outputs = []
        for k in range(n_slots // b):
            q, kk, v, e = xq_g[:, :, k], xk_g[:, :, k], xv_g[:, :, k], eta_g[:, :, k]
            Z = kk @ W + bias[:, :, None]  # every token's gradient is taken at the mini-batch's W_0
            G = e[..., None] * reconstruction_grad(Z, v - kk, self.ttt_norm_weight, self.ttt_norm_bias)  # eta_j grad_Z l_j
            # dual form: x_q W_i + b_i = x_q W_0 + b_0 - s_i (x_q gW + gb + sum_{j <= i} (x_q . x_k_j + 1) G_j)
            mixed = ((q @ kk.transpose(-1, -2) + 1) * causal) @ G
            if k == 0:  # gradients carried in from the previous call (zero after a completed mini-batch)
                mixed = mixed + q @ gW + gb[:, :, None]
            Zq = q @ W + bias[:, :, None] - scale[:, None] * mixed
            outputs.append(layer_norm(Zq, self.ttt_norm_weight, self.ttt_norm_bias) + q)
            # close the mini-batch for the rows that filled it; the others keep summing
            gW = gW + kk.transpose(-1, -2) @ G
            gb = gb + G.sum(2)
            full = ((k + 1) * b <= total).view(B, 1, 1)
            W = torch.where(full[..., None], W - scale[-1] * gW, W)
            bias = torch.where(full, bias - scale[-1] * gb, bias)
            gW = torch.where(full[..., None], torch.zeros_like(gW), gW)
            gb = torch.where(full, torch.zeros_like(gb), gb)
        z = torch.stack(outputs, 2).view(B, H, n_slots, d)
        z = z.gather(2, slot.view(B, 1, L, 1).expand(B, H, L, d))
        if counters.counting():
            counters.record(self, float_ops=B * H * n_slots * (4 * d * d + 2 * b * d + 30 * d) + B * H * (n_slots // b) * 4 * d * d)
        return z, TTTState(W, bias, gW, gb)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: TTTState, count: torch.Tensor) -> tuple[torch.Tensor, TTTState]:
        B, L, D = x.shape
        position = (count[:, None] + torch.arange(L, device=x.device)) % self.mini_batch_size
        xq, xk, xv, eta = self.views(x, position)
        z, state = self.inner_loop(xq, xk, xv, eta, mask, state, count)
        out = self.post_norm(z.transpose(1, 2).reshape(B, L, D))
        if self.use_gate:
            gate = self.g_proj(x)
            if counters.counting():
                counters.record(self, float_ops=8 * gate.numel())  # the float GELU
            out = self.gate(F.gelu(gate, approximate="tanh"), out)
        return self.o_proj(out), state


class TTTBlock(nn.Module):
    """RMSNorm -> TTT layer -> residual, RMSNorm -> MLP -> residual; ``mlp`` replaces the SwiGLU (e.g. BrainGPT's MoESynapsis)."""

    def __init__(self, config: TTTConfig, ops: Operators, layer: int, mlp: nn.Module | None = None) -> None:
        super().__init__()
        self.seq_norm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.seq_modeling_block = TTTLinear(config, ops)
        self.ffn_norm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.mlp = mlp if mlp is not None else SwiGLU(config.hidden_size, config.intermediate_size, ops, layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, state: TTTState, count: torch.Tensor) -> tuple[torch.Tensor, TTTState]:
        out, state = self.seq_modeling_block(self.seq_norm(x), mask, state, count)
        return mlp_residual(self, x, out, self.ffn_norm, self.mlp), state


class TTTForCausalLM(CausalLM):
    """TTT-Linear (T) with its language-model head; ``forward`` returns float32 logits and the inner-loop state as the cache."""

    def build(self, ops: Operators) -> nn.Module:
        c = self.config  # built in this order: embeddings, layers, norm (W_0 keeps its construction-time draw)
        self.model = Stack(
            ("embed_tokens", "layers", "norm"), nn.Embedding(c.vocab_size, c.hidden_size),
            [TTTBlock(c, ops, i) for i in range(c.num_hidden_layers)], ops.norm(c.hidden_size, c.rms_norm_eps),
        )
        return self.model.embed_tokens

    def run(self, input_ids: torch.Tensor, mask: torch.Tensor, cache: TTTCache | None) -> tuple[torch.Tensor, TTTCache]:
        input_ids, mask, order = self.real_tokens_first(input_ids, mask, cache)
        count = cache.count if cache is not None else mask.new_zeros(mask.shape[0], dtype=torch.int64)
        x = self.model.embed_tokens(input_ids)
        states = []
        for i, layer in enumerate(self.model.layers):
            state = cache.states[i] if cache is not None else layer.seq_modeling_block.initial_state(mask.shape[0])
            x, state = layer(x, mask, state, count)
            states.append(state)
        logits = self.lm_head(self.model.norm(x)).float()
        return self.original_order(logits, order), TTTCache(states, (count + mask.sum(1)) % self.config.mini_batch_size)
