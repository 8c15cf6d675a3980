"""The quantizer of QSynapsis (BrainGPT eq. 2 and 5), made to match the EI-IF neuron.

    Q(x) = s * clamp(round_half_away(x / s), -T, T)

The paper writes ``round`` and clamps to [-2^(b-1), 2^(b-1) - 1]; the neuron it is converted
to rounds half away from zero and clamps symmetrically to [-T, T]. ``torch.round`` rounds
half to even, so the paper's literal quantizer is not lossless against the neuron (see
``naive_quantize``, kept only so a test can prove the difference). Here the clamp is the
neuron's: T <= 2^(b-1) - 1 time steps, default the largest.

Scales are never computed over a whole batch:
- ``token``: dynamic, s = clip * max|x| / T over the feature dimension of each token, so a
  sequence's output does not depend on what else is in the batch; ``clip`` is a parameter
  (the spec's value at first) that quantization-aware fine-tuning may learn (LSQ-style
  gradient through the straight-through round), clipping each token's outliers;
- ``channel``: static, one calibrated (and trainable) scale per feature;
- ``tensor``: static, one calibrated (and trainable) scale;
- ``smoothed``: dynamic per token after dividing each channel by a calibrated factor
  (max |x_c|^smoothing, as SmoothQuant), so a few outlier channels no longer take the whole
  range of every token; for an EI-IF neuron the factor is a per-neuron threshold scale;
- ``integer``: the input already is integer counts in [-T, T] (scale 1, no calibration), e.g.
  an operand another operator has spike-coded.

``Quantizer.scales(x)`` returns the two parts of the scale separately, (per-token part or
None, static per-channel part or None), so a synapse can fold the static part into its
weights and keep the integer accumulation exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .checks import check_bits, check_finite, check_time_steps, max_level

GRANULARITIES = ("token", "channel", "tensor", "smoothed", "integer")
MIN_CLIP = 1e-3  # a learned clip below this would code every token with a handful of its values
MIN_FACTOR = 1e-4  # smoothing factors stay positive whatever fine-tuning does to them


@dataclass(frozen=True)
class QuantSpec:
    """How one activation is quantized / spike-coded: bit width, time steps, scale granularity."""

    bits: int = 8
    time_steps: int | None = None
    granularity: str = "token"
    clip: float = 1.0
    smoothing: float = 0.5

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.time_steps is not None:
            check_time_steps(self.time_steps, upper=max_level(self.bits))
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}")
        if not (isinstance(self.clip, (int, float)) and 0 < self.clip <= 1):
            raise ValueError(f"clip must be a number in (0, 1], got {self.clip!r}")
        if not (isinstance(self.smoothing, (int, float)) and 0 <= self.smoothing <= 1):
            raise ValueError(f"smoothing must be a number in [0, 1], got {self.smoothing!r}")

    @property
    def T(self) -> int:
        """Time steps of the spiking twin = largest count the quantizer emits."""
        return self.time_steps if self.time_steps is not None else max_level(self.bits)

    @property
    def dynamic(self) -> bool:
        """True when the scale has a per-token part computed from each token's own values."""
        return self.granularity in ("token", "smoothed")


def round_half_away(v: torch.Tensor) -> torch.Tensor:
    """Round half away from zero, exactly: floor(|v|) + (frac >= 0.5), sign restored.

    ``floor(|v| + 0.5)`` is not exact in floating point (0.49999997 + 0.5 rounds to 1.0);
    ``|v| - floor(|v|)`` is, so the comparison with 0.5 is exact. The result is piecewise
    constant (no gradient); it is computed in place on two buffers, since it runs on every
    spike-coded tensor, attention scores included.
    """
    with torch.no_grad():
        a = v.abs()
        f = a.floor()
        a.sub_(f).ge_(0.5)  # 1.0 where the fraction is >= 0.5
        return f.add_(a).copysign_(v)


def quantize_counts(v: torch.Tensor, time_steps: int) -> torch.Tensor:
    """Integer-valued counts clamp(round_half_away(v), -T, T) = the EI-IF spike count of v."""
    return round_half_away(v).clamp_(-time_steps, time_steps)


def naive_quantize(x: torch.Tensor, scale: float | torch.Tensor, bits: int = 8) -> torch.Tensor:
    """The paper's literal eq. 5: s * clamp(torch.round(x/s), -2^(b-1), 2^(b-1)-1). NOT lossless."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return scale * torch.clamp(torch.round(x / scale), lo, hi)


class _RoundSTE(torch.autograd.Function):
    """Forward: the neuron-matching counts. Backward: straight-through inside [-T, T], zero outside."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, time_steps: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.time_steps = time_steps
        return quantize_counts(v, time_steps)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        inside = (v.abs() <= ctx.time_steps + 0.5).to(grad.dtype)
        return grad * inside, None


def token_scale(x: torch.Tensor, time_steps: int, clip: float | torch.Tensor = 1.0, dim: int = -1) -> torch.Tensor:
    """Per-token scale clip * max|x| / T along ``dim`` (kept as size 1); 1 where a token is all zero.
    A tensor ``clip`` (a learned one) keeps its gradient; max|x| never has one."""
    amax = x.detach().abs().amax(dim=dim, keepdim=True)
    if torch.is_tensor(clip):
        clip = clip.to(amax.dtype)
    scale = amax * clip / time_steps
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def combine_scales(token: torch.Tensor | None, static: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """The full scale from its per-token and static parts (either may be None)."""
    if token is None and static is None:
        return torch.ones((), dtype=like.dtype, device=like.device)
    if token is None:
        return static
    return token if static is None else token * static


class Quantizer(nn.Module):
    """Q(x) of eq. 2/5 with the neuron's rounding and clamp; returns counts and scale separately.

    ``counts(x)`` gives (n, s) with x ~= s * n and n integer-valued in [-T, T]; ``forward``
    returns s * n with a straight-through gradient (quantization-aware training). Static
    scales (``channel``/``tensor``) are learned parameters and must be calibrated first.
    The dynamic granularities (``token``, ``smoothed``) have a ``clip`` parameter and
    ``smoothed`` its per-channel ``factor``: calibration sets them, and they stay fixed unless a
    fine-tuning makes them trainable (``learned_quantizer_parameters``). Every mode reads the
    scale from here, so whatever is learned converts losslessly.
    ``dim`` is the feature dimension a per-token scale reduces over.
    """

    # only quantized operators have it; a checkpoint written before ``clip`` existed loads with the spec's clip
    mode_state = ("calibrated", "observed_absmax", "scale", "factor", "clip")
    learnable = ("clip", "factor")  # the parameters fine-tuning may learn (fixed by default)

    def __init__(self, spec: QuantSpec, num_features: int | None = None, dim: int = -1) -> None:
        super().__init__()
        self.spec = spec
        self.dim = dim
        self.num_features = num_features
        per_channel = spec.granularity in ("channel", "smoothed")
        if per_channel and num_features is None:
            raise ValueError(f"num_features is required for a {spec.granularity} quantizer")
        if spec.granularity in ("channel", "tensor"):
            self.scale = nn.Parameter(torch.ones((num_features,) if per_channel else ()))
        else:
            self.scale = None
        if spec.granularity == "smoothed":
            self.factor = nn.Parameter(torch.ones(num_features), requires_grad=False)
        if spec.dynamic:
            self.clip = nn.Parameter(torch.tensor(float(spec.clip)), requires_grad=False)
        self.register_buffer("calibrated", torch.tensor(spec.granularity in ("token", "integer")))
        self.register_buffer("observed_absmax", torch.zeros((num_features,) if per_channel else ()))

    @property
    def T(self) -> int:
        return self.spec.T

    @property
    def static(self) -> bool:
        """True when the scale has a calibrated part (channel, tensor, smoothed)."""
        return self.spec.granularity in ("channel", "tensor", "smoothed")

    def observe(self, x: torch.Tensor) -> None:
        """Calibration: keep the running max |x| (per channel or overall) for a static scale."""
        if not self.static:
            return
        check_finite(x, "x")
        if self.spec.granularity in ("channel", "smoothed"):
            amax = x.detach().abs().reshape(-1, x.shape[-1]).amax(0)
        else:
            amax = x.detach().abs().amax()
        self.observed_absmax.copy_(torch.maximum(self.observed_absmax, amax.to(self.observed_absmax)))

    def finish_calibration(self) -> None:
        """Static scale = clip * observed max / T; smoothing factor = max^smoothing, mean 1 (1 where nothing was seen)."""
        if not self.static:
            return
        amax = self.observed_absmax
        with torch.no_grad():
            if self.spec.granularity == "smoothed":
                f = torch.where(amax > 0, amax.pow(self.spec.smoothing), torch.ones_like(amax))
                self.factor.copy_(f / f.mean())
            else:
                s = amax * self.spec.clip / self.T
                self.scale.copy_(torch.where(s > 0, s, torch.ones_like(s)))
        self.calibrated.fill_(True)

    def _check_calibrated(self, x: torch.Tensor) -> None:
        if not bool(self.calibrated):
            raise ValueError(
                f"this {self.spec.granularity} quantizer has a static scale that was never calibrated; "
                "call observe() on sample inputs and finish_calibration() first"
            )
        if self.spec.granularity in ("channel", "smoothed") and x.shape[-1] != self.num_features:
            raise ValueError(f"x must have last dimension {self.num_features} (channels), got shape {tuple(x.shape)}")

    def scales(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(per-token part or None, static part or None) of the scale of ``x``; their product is ``scale_for(x)``."""
        g = self.spec.granularity
        if g == "token":
            return token_scale(x, self.T, self.clip_value(), self.dim), None
        if g == "integer":
            return None, None
        self._check_calibrated(x)
        if g == "smoothed":
            factor = self.factor.abs().clamp_min(MIN_FACTOR).to(x.dtype)
            return token_scale(x / factor, self.T, self.clip_value(), self.dim), factor
        return None, self.scale.abs().to(x.dtype)

    def clip_value(self) -> torch.Tensor:
        """The clip of a dynamic scale, kept above ``MIN_CLIP`` (a learned clip may wander; the sign is not its)."""
        return self.clip.abs().clamp_min(MIN_CLIP)

    def scale_for(self, x: torch.Tensor) -> torch.Tensor:
        """The scale that applies to ``x``, broadcastable against it."""
        return combine_scales(*self.scales(x), like=x)

    def counts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, s): integer-valued counts in [-T, T] and the scale, x ~= s * n. No gradient."""
        check_finite(x, "x")
        s = self.scale_for(x).detach()
        return quantize_counts(x.detach() / s, self.T), s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_finite(x, "x")
        s = self.scale_for(x)
        return _RoundSTE.apply(x / s, self.T) * s

    def extra_repr(self) -> str:
        sp = self.spec
        clip = f"{float(self.clip_value()):.4g}" if sp.dynamic else sp.clip
        return f"bits={sp.bits}, T={sp.T}, granularity={sp.granularity}, clip={clip}"


def learned_quantizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every quantizer's parameters fine-tuning may learn (``Quantizer.learnable``: clips and smoothing factors)
    that are set to learn (``requires_grad``); ``make_quantizers_learnable`` sets them."""
    return [p for p in quantizer_parameters(model) if p.requires_grad]


def make_quantizers_learnable(model: nn.Module) -> int:
    """Let every quantizer's clip and smoothing factors learn; returns how many tensors that is."""
    found = quantizer_parameters(model)
    for p in found:
        p.requires_grad_(True)
    return len(found)


def quantizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every quantizer's clip and smoothing factors (``Quantizer.learnable``), learning or not."""
    found, seen = [], set()
    for module in model.modules():
        if isinstance(module, Quantizer):
            for name in Quantizer.learnable:
                p = getattr(module, name, None)
                if isinstance(p, nn.Parameter) and id(p) not in seen:
                    seen.add(id(p))
                    found.append(p)
    return found
