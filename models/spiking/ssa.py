"""Spike-based self-attention (SSA): NeurTransformer's attention block, after Spikformer (Zhou et al., ICLR 2023).

Spikformer's SSA (its eq. 6-8) computes, at every time step t,

    Q_t = SN(X_t W_Q),  K_t = SN(X_t W_K),  V_t = SN(X_t W_V),
    SSA_t = SN(Q_t K_t^T V_t * s),

with spike trains Q, K, V, NO softmax (the products of non-negative spikes need none) and a
constant scale s. NeurTransformer replaces GPT-2's float self-attention (ASA) by this block and
fine-tunes it with surrogate gradients (its steps 1 and 3). Here, for a causal decoder:

- the block's input (the LayerNorm output) is rate-coded over T steps by a spiking neuron with
  a per-token value per spike theta_x = max|x| / T;
- c_attn's synapses integrate the input spike train (one accumulation of a weight per spike and
  fan-out, W . sum_t S_t) and then drive the Q, K and V neurons with a constant current for T
  steps (the two-stage pipeline of this project's Synapsis); Q and K have one threshold per
  head, V one per channel;
- at every step the integer matrix (Q_t K_t^T masked causally and by padding) V_t is formed
  from ternary spikes only (``SpikeProduct``: additions and subtractions, no multiplication);
- it drives the output neuron through the scale s_h (one learnable scalar per head) times the
  spike values theta_q theta_k theta_v; with ``normalize`` the current of query i is divided
  by its number of visible keys (a causal mean instead of a causal sum; off by default);
- c_proj acts on the output spikes; the block returns its accumulated current.

Neurons are ternary integrate-and-fire neurons with a soft reset (``neuron.IFNeuron``): V_t =
V_{t-1} + I_t; a spike +1 when V_t >= theta/2, -1 when V_t <= -theta/2; V_t -= S_t theta. Under a
constant current c a neuron fires round(T c / theta) times (clamped to T): a spike carries the
value theta. The spike function is a Heaviside step with a surrogate gradient (``surrogate.py``),
so the block trains with back-propagation through time. Per-token and static scales are folded
into the thresholds, so what is integrated per step is a sum of weights (AC) or an integer.

The block has one computation whatever the execution mode (``qat`` trains it, ``snn`` and
``snn-fused`` evaluate it: all three are the same arithmetic). Counted (``counters``): spikes,
neuron steps, the ACs of c_attn, c_proj and of both products, and the float work of the scale
folding; neuron membrane updates are neuron steps, not priced ACs (as everywhere here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import models.spiking.counters as counters

from .checks import OPERATOR_MODES, check_finite, check_mode, check_time_steps
from .neuron import IFNeuron
from .surrogate import check_surrogate


def if_neuron(currents: torch.Tensor, threshold: torch.Tensor, surrogate: str = "atan", alpha: float | None = None) -> torch.Tensor:
    """Spikes (T, ...) of ternary IF neurons (``IFNeuron``, soft reset) over the leading time axis of ``currents``.

    Under a constant current c the count is round(T c / theta) clamped to [-T, T]. Differentiable through the surrogate.
    """
    return IFNeuron(threshold, surrogate, alpha).multi_step(currents)


class SpikeProduct(nn.Module):
    """(Q_t K_t^T masked) V_t for ternary spike trains (T, B, H, L, d): integer-valued, additions only."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` (B, 1, Lq, Lk) bool, True where query i may see key j."""
        scores = (q @ k.transpose(-1, -2)) * mask.to(q.dtype)
        out = scores @ v
        if counters.counting():
            self._record_counts(q, k, v, mask, scores)
        return out

    @torch.no_grad()
    def _record_counts(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scores: torch.Tensor) -> None:
        live = mask.to(q.dtype)
        qk_acs = ((q.abs() @ k.abs().transpose(-1, -2)) * live).sum()  # coincident spike pairs
        pv_acs = (((scores != 0).to(q.dtype)) @ v.abs().sum(-1, keepdim=True)).sum()  # a nonzero score per value spike
        T, B, H, Lq, d = q.shape
        Lk = k.shape[-2]
        cached = 2 * B * H * Lq * Lk * d  # keys, then values, read once per query row
        counters.record(
            self, Effective_ACs=int(qk_acs) + int(pv_acs), Dense=2 * T * B * H * Lq * Lk * d,
            cache_reads=cached, step_reads=T * cached, act_writes=B * H * Lq * d,
        )


class SpikeLinear(nn.Linear):
    """A synapse layer driven by spikes, with nn.Linear's parameters: W . (theta n) for integrated spike counts n."""

    def forward_spikes(
        self, counts: torch.Tensor, spikes: int, time_steps: int, value: torch.Tensor | None = None, bias: bool = False
    ) -> torch.Tensor:
        """W . (value n) (+ b with ``bias``) for spike counts n (..., in_features) integrated over ``time_steps``.

        ``value`` (per input channel) is what one spike carries, folded into the weights; ``spikes`` x fan-out ACs.
        """
        out = F.linear(counts, self.weight if value is None else self.weight * value)
        if bias:
            out = out + self.bias
        if counters.counting():
            self._record_counts(counts, spikes, time_steps, bias)
        return out

    def _record_counts(self, counts: torch.Tensor, spikes: int, time_steps: int, bias: bool) -> None:
        tokens = counts.numel() // self.in_features
        counters.record(
            self,
            Effective_ACs=spikes * self.out_features,
            Dense=time_steps * counts.numel() * self.out_features,
            float_ops=tokens * self.out_features if bias else 0,
            weight_reads=tokens * self.weight.numel(),
            step_reads=time_steps * tokens * self.weight.numel(),
            act_writes=tokens * self.out_features,
        )


class SpikingSelfAttention(nn.Module):
    """SSA for a causal decoder; parameters named as GPT-2's attention (c_attn, c_proj) so ANN weights load directly.

    ``calibrated_state``: what a float attention block lacks and ``calibrate`` fits to it (stage 2).
    """

    calibrated_state = ("log_theta_q", "log_theta_k", "log_theta_v", "log_theta_o", "log_scale")

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        time_steps: int = 8,
        surrogate: str = "atan",
        alpha: float | None = None,
        normalize: bool = False,
        mode: str = "snn-fused",
    ) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})")
        self.T = check_time_steps(time_steps)
        self.surrogate, self.alpha = check_surrogate(surrogate, alpha)
        self.hidden_size, self.num_heads, self.head_dim = hidden_size, num_heads, hidden_size // num_heads
        self.normalize = normalize
        self.mode = check_mode(mode, OPERATOR_MODES)
        self.c_attn = SpikeLinear(hidden_size, 3 * hidden_size)
        self.c_proj = SpikeLinear(hidden_size, hidden_size)
        self.product = SpikeProduct()
        # Spike values (thresholds), kept positive as logarithms; set by calibration, then trained.
        self.log_theta_q = nn.Parameter(torch.zeros(num_heads))
        self.log_theta_k = nn.Parameter(torch.zeros(num_heads))
        self.log_theta_v = nn.Parameter(torch.zeros(hidden_size))
        self.log_theta_o = nn.Parameter(torch.zeros(hidden_size))
        self.log_scale = nn.Parameter(torch.full((num_heads,), -0.5 * math.log(self.head_dim)))  # s = 1/sqrt(d)

    # ----------------------------------------------------------------- parts

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(T, B, L, D) -> (T, B, H, L, d)."""
        T, B, L, _ = x.shape
        return x.view(T, B, L, self.num_heads, self.head_dim).transpose(2, 3)

    def spike_trains(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input spike counts (B, L, D) and the Q, K, V spike trains (T, B, H, L, d) of ``x`` (B, L, D)."""
        T, D = self.T, self.hidden_size
        theta_x = (x.detach().abs().amax(-1, keepdim=True) / T).clamp_min(1e-12)  # value of one input spike, per token
        s_x = if_neuron((x / T).expand(T, *x.shape), theta_x, self.surrogate, self.alpha)
        n_x = s_x.sum(0)
        theta = torch.cat([
            self.log_theta_q.exp().repeat_interleave(self.head_dim),
            self.log_theta_k.exp().repeat_interleave(self.head_dim),
            self.log_theta_v.exp(),
        ])
        # The synapses integrate the input spike train (W . sum_t S_t: one AC per spike and fan-out), then
        # drive the Q, K, V neurons with a constant current over the next T steps. Folded: the per-token
        # spike value theta_x is moved into the thresholds and the bias.
        fired = counters.nonzero(s_x) if counters.counting() else 0
        current = (self.c_attn.forward_spikes(n_x, fired, T) + self.c_attn.bias / theta_x) / T
        spikes = if_neuron(current.expand(T, *current.shape), theta / theta_x, self.surrogate, self.alpha)
        q, k, v = spikes.split(D, dim=-1)
        if counters.counting():
            self._record_counts(
                spikes=counters.nonzero(s_x) + counters.nonzero(spikes),
                neuron_steps=T * (x.numel() + current.numel()),
                float_ops=2 * x.numel() + 3 * current.numel(),  # absmax and x/T per input; folded threshold, bias and 1/T per neuron
            )
        return n_x, self._heads(q), self._heads(k), self._heads(v)

    def output_current_scale(self, mask: torch.Tensor) -> torch.Tensor:
        """Value per unit of the integer product: s_h theta_q theta_k theta_v (/ visible keys), shape (B or 1, H, Lq, d)."""
        H, d = self.num_heads, self.head_dim
        per_head = (self.log_scale + self.log_theta_q + self.log_theta_k).exp().view(1, H, 1, 1)
        unit = per_head * self.log_theta_v.exp().view(1, H, 1, d)
        if self.normalize:
            unit = unit / mask.sum(-1, keepdim=True).clamp_min(1).to(unit.dtype)
        return unit

    def raw_attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The value the output neurons integrate, summed over T, (B, L, D): for calibrating s and theta_o."""
        _, q, k, v = self.spike_trains(x)
        total = self.product(q, k, v, mask).sum(0) * self.output_current_scale(mask)
        B, H, L, d = total.shape
        return total.transpose(1, 2).reshape(B, L, H * d)

    @torch.no_grad()
    def calibrate(
        self, inputs: tuple, reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], quantile: float = 0.999
    ) -> None:
        """Spike values and scale from the float attention block on the same text (NeurTransformer step 2).

        ``inputs``: this block's own forward inputs (x, mask, ...) through the already converted blocks before
        it; ``reference``: the float block's Q, K, V and output before c_proj, each (B, L, D). theta_q, theta_k
        (per head) and theta_v (per channel) = the ``quantile`` of |Q|, |K|, |V| / T, so a neuron's T spikes
        cover its range; s_h = rms(float output) / rms(SSA product) per head; theta_o (per channel) = the
        quantile of the float output / T.
        """
        x, mask = inputs[0], inputs[1]
        q, k, v, o = reference
        T, H, d, D = self.T, self.num_heads, self.head_dim, self.hidden_size
        per_head = lambda t: torch.quantile(t.abs().reshape(-1, H, d).transpose(0, 1).reshape(H, -1).float(), quantile, dim=1)  # noqa: E731
        per_channel = lambda t: torch.quantile(t.abs().reshape(-1, D).float(), quantile, dim=0)  # noqa: E731
        tiny = 1e-6
        self.log_theta_q.copy_((per_head(q) / T).clamp_min(tiny).log())
        self.log_theta_k.copy_((per_head(k) / T).clamp_min(tiny).log())
        self.log_theta_v.copy_((per_channel(v) / T).clamp_min(tiny).log())
        self.log_scale.zero_()
        raw = self.raw_attention(x, mask)
        rms = lambda t: t.reshape(-1, H, d).pow(2).mean((0, 2)).sqrt()  # noqa: E731
        self.log_scale.copy_((rms(o) / rms(raw).clamp_min(tiny)).clamp_min(tiny).log())
        self.log_theta_o.copy_((per_channel(o) / T).clamp_min(tiny).log())

    # ----------------------------------------------------------------- forward

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` (B, L, D), ``mask`` (B, 1, L, past + L) bool; ``past``/present: K and V spike trains (B, H, L, T, d)."""
        check_finite(x, "x")
        B, L, D = x.shape
        T, H, d = self.T, self.num_heads, self.head_dim
        _, q, k, v = self.spike_trains(x)
        present = (k.permute(1, 2, 3, 0, 4), v.permute(1, 2, 3, 0, 4))
        if past is not None:
            present = (torch.cat([past[0], present[0]], dim=2), torch.cat([past[1], present[1]], dim=2))
            k, v = present[0].permute(3, 0, 1, 2, 4), present[1].permute(3, 0, 1, 2, 4)
        product = self.product(q, k, v, mask)  # (T, B, H, L, d) integers
        # Output neurons: the product's value per unit folded into their thresholds.
        theta_o = self.log_theta_o.exp().view(1, H, 1, d) / self.output_current_scale(mask)
        s_o = if_neuron(product, theta_o, self.surrogate, self.alpha)
        s_o = s_o.transpose(2, 3).reshape(T, B, L, D)
        # c_proj: spikes of value theta_o through the synapses; the accumulated current leaves the block.
        fired = counters.nonzero(s_o) if counters.counting() else 0
        proj = self.c_proj.forward_spikes(s_o.sum(0), fired, T, value=self.log_theta_o.exp(), bias=True)
        if counters.counting():
            self._record_counts(spikes=fired, neuron_steps=T * B * L * D, float_ops=B * L * D)  # folded output thresholds
        return proj, present

    def _record_counts(self, spikes: int, neuron_steps: int, float_ops: int) -> None:
        """The block's own neurons (input, Q, K, V or output) and their float work; the synapses and the product count themselves."""
        counters.record(self, spikes=spikes, neuron_steps=neuron_steps, float_ops=float_ops)

    def extra_repr(self) -> str:
        return (
            f"hidden_size={self.hidden_size}, num_heads={self.num_heads}, time_steps={self.T}, surrogate={self.surrogate}, "
            f"alpha={self.alpha}, normalize={self.normalize}"
        )
