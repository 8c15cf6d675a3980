"""QSynapsis (BrainGPT eq. 2-3) and its spiking twin Synapsis (eq. 4, 6-10).

    QSynapsis:  Y_Q = Q_post(W . Q_pre(X) + b)
    Synapsis:   Y_S = ELIF_post(W . ELIF_pre(X) + b)

Both compute the synaptic current the same way, from integer-valued counts n (quantizer
output or spike count) and the two parts of the input scale: ``linear(n, W * s_static) *
s_token + b`` (the static part folded into the weights, the per-token part applied after).
The quantizer rounds half away from zero and clamps to [-T, T], which is what the EI-IF neuron with theta_base = 0.5,
alpha = 1, r = 1 counts, so ``Synapsis.from_qsynapsis(q)`` reproduces ``q`` exactly.

Synapsis has two modes:
- ``snn``: each pre-synaptic neuron is stepped through T steps under its constant input
  current x/s; the synapse integrates the ternary spike train it receives and applies the
  weights to the integrated train (W . sum_t S_t = sum_t W . S_t, appendix B.1's
  activation-weight product, without float re-association); the post-synaptic neuron is
  then stepped under the resulting current;
- ``snn-fused``: the same counts in closed form, and W * s_static kept between calls (``fast.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import models.spiking.counters as counters

from .checks import SPIKING_MODES, check_finite, check_last_dim, check_mode, coding_steps
from .encode import SpikeCoding, fused_code, spike_code
from .fast import folded_weight
from .neuron import EIIFNeuron
from .quant import QuantSpec, Quantizer, combine_scales


def synaptic_current(
    counts: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    token_scale: torch.Tensor | None,
    static_scale: torch.Tensor | None,
) -> torch.Tensor:
    """W . (s n) + b computed from counts n; one function for QSynapsis and both Synapsis modes. Without a gradient
    the scale and the bias go into the fresh product in place (an out-of-place broadcast product of a large output
    costs several times the in-place one on a CPU); the arithmetic, hence the result, is the same."""
    y = F.linear(counts, weight if static_scale is None else weight * static_scale)
    in_place = not torch.is_grad_enabled() or not (y.requires_grad or (token_scale is not None and token_scale.requires_grad))
    if token_scale is not None:
        fits = token_scale.shape[-1] == 1 and token_scale.dim() <= y.dim() and token_scale.dtype == y.dtype
        y = y.mul_(token_scale) if in_place and fits else y * token_scale
    if bias is None:
        return y
    return y.add_(bias) if in_place and not bias.requires_grad and bias.dtype == y.dtype else y + bias


class _SynapseBase(SpikeCoding, nn.Module):
    """Weights, bias, the quantizers' specs and the EI-IF neurons of QSynapsis and Synapsis; ``modes`` are the subclass's."""

    modes: tuple[str, ...] = ()

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        pre: QuantSpec = QuantSpec(),
        post: QuantSpec | None = QuantSpec(),
        mode: str | None = None,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features} and {out_features}")
        self.mode = check_mode(self.modes[-1] if mode is None else mode, self.modes)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        self.pre = Quantizer(pre, num_features=in_features)
        self.post = Quantizer(post, num_features=out_features) if post is not None else None
        self.pre_neuron = EIIFNeuron(in_features)
        self.post_neuron = EIIFNeuron(out_features) if post is not None else None

    @property
    def coding_steps(self) -> int:
        return self.pre.T

    @property
    def calibrated_input(self) -> Quantizer:
        return self.pre

    def _check_input(self, x: torch.Tensor) -> None:
        check_finite(x, "x")
        check_last_dim(x, self.in_features, "x", "in_features")

    def _float_ops(self, x: torch.Tensor, y: torch.Tensor) -> int:
        """Elementwise float work: absmax and x/s per input (x/s only for a static scale), current * s, bias, post coding."""
        ops = x.numel() * (2 if self.pre.spec.dynamic else 1) + y.numel()
        if self.bias is not None:
            ops += y.numel()
        if self.post is not None:
            ops += 3 * y.numel()  # absmax, y/s, n*s
        return ops

    def _memory_traffic(self, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict[str, int]:
        """Elements moved by one call (``counters.py``): W and b once per token (``steps`` times if read per time step),
        the input values read by the pre-synaptic coding, the output values written."""
        tokens = x.numel() // self.in_features
        weights = tokens * (self.weight.numel() + (self.out_features if self.bias is not None else 0))
        return dict(weight_reads=weights, step_reads=steps * weights, act_reads=x.numel(), act_writes=y.numel())

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, mode={self.mode}"


class QSynapsis(_SynapseBase):
    """The quantization-aware (stage 1) operator (eq. 2-3): one step, straight-through gradients."""

    modes = ("qat",)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        token, static = self.pre.scales(x)
        n, _ = spike_code(self, self.pre_neuron, x, combine_scales(token, static, x), self.pre.T, "qat")
        y = synaptic_current(n, self.weight, self.bias, token, static)
        out = self.post(y) if self.post is not None else y
        if counters.counting():
            self._record_counts(x, n, y)
        return out

    def _record_counts(self, x: torch.Tensor, n: torch.Tensor, y: torch.Tensor) -> None:
        tokens = x.numel() // self.in_features
        counters.record(
            self,
            Effective_MACs=counters.nonzero(n) * self.out_features,
            Dense=tokens * self.in_features * self.out_features,
            float_ops=self._float_ops(x, y),
            **self._memory_traffic(x, y, 1),
        )


class Synapsis(_SynapseBase):
    """The spiking operator (eq. 4): EI-IF pre- and post-synaptic neurons around an accumulate-only synapse.

    Modes ``snn`` (neurons stepped) and ``snn-fused`` (closed form, the default).
    """

    modes = SPIKING_MODES
    mode_state = ("window",)  # state only the spiking modes have (checkpoints of other modes load without it)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The parameters of ``_SynapseBase``; ``mode`` defaults to ``snn-fused``."""
        super().__init__(*args, **kwargs)
        # Time steps the pre-synaptic neurons are run for. The coding range (T of the quantizer,
        # which sets the per-token scale) stays; stage 3 (STDP) may shorten the window once the
        # neurons' adaptive thresholds make the late steps silent.
        self.register_buffer("window", torch.tensor(self.pre.T))

    @classmethod
    def from_qsynapsis(cls, q: QSynapsis, mode: str = "snn-fused") -> "Synapsis":
        """Stage-2 conversion: the same weights and scales, quantizers replaced by EI-IF neurons."""
        s = cls(q.in_features, q.out_features, q.bias is not None, q.pre.spec, q.post.spec if q.post else None, mode=mode)
        missing, unexpected = s.load_state_dict(q.state_dict(), strict=False)
        if unexpected or set(missing) != {"window"}:
            raise ValueError(f"QSynapsis state does not fit Synapsis: missing {missing}, unexpected {unexpected}")
        return s.to(q.weight.device, q.weight.dtype)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T_pre = int(self.window)
        check_last_dim(x, self.in_features, "x", "in_features")
        fused = fused_code(self.pre_neuron, self.pre, x, T_pre, shared=True) if self.mode == "snn-fused" else None
        if fused is not None:  # one pass (``kernels.py``), finite x checked on the way
            n_pre, token, static, pre_spikes = fused
        else:
            self._check_input(x)
            token, static = self.pre.scales(x)
            n_pre, pre_spikes = spike_code(self, self.pre_neuron, x, combine_scales(token, static, x), T_pre, self.mode)
        if self.mode == "snn-fused":
            y = synaptic_current(n_pre, folded_weight(self, static), self.bias, token, None)
        else:
            y = synaptic_current(n_pre, self.weight, self.bias, token, static)
        post_spikes = 0
        if self.post is not None:
            s_post = self.post.scale_for(y)
            n_post, post_spikes = spike_code(self, self.post_neuron, y, s_post, self.post.T, self.mode)
            out = n_post * s_post
        else:
            out = y
        if counters.counting():
            self._record_counts(x, y, T_pre, pre_spikes + post_spikes, pre_spikes)
        return out

    def _record_counts(self, x: torch.Tensor, y: torch.Tensor, T_pre: int, spikes: int, pre_spikes: int) -> None:
        """One call's figures. Each pre-synaptic spike reaches out_features synapses: a rate or bitwise spike adds the
        weight (shifted by its digit): ACs; a multilevel spike multiplies it by its integer level: MACs."""
        tokens = x.numel() // self.in_features
        K_pre = coding_steps(self.pre_neuron.coding, T_pre)
        K_post = coding_steps(self.post_neuron.coding, self.post.T) if self.post is not None else 0
        synops = pre_spikes * self.out_features
        acs, macs = (0, synops) if self.pre_neuron.coding == "multilevel" else (synops, 0)
        counters.record(
            self,
            spikes=spikes,
            neuron_steps=K_pre * x.numel() + K_post * y.numel(),
            Effective_ACs=acs,
            Effective_MACs=macs,
            Dense=K_pre * tokens * self.in_features * self.out_features,
            float_ops=self._float_ops(x, y),
            **self._memory_traffic(x, y, K_pre),
        )
