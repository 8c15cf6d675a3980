"""Activations from two fitted spiking neurons (BrainGPT appendix B.2.2): the fit and the operator.

For x >= 0 a positive neuron sees V_t = x (decay gamma = 0) and emits A_pos whenever
V_t >= theta_pos(t); for x < 0 a negative neuron sees V_t = -x and emits A_neg(t). The output
is the sum of the spikes over T steps. Thresholds rise with t, so each neuron fires on its
first k steps and the output is a staircase in x with at most T steps per branch.

``fit_staircase(fn, ...)`` fits the two neurons, for T time steps and the input range
[-x_max, x_max], to any activation of SiLU's shape (zero at 0, rising on x >= 0, one minimum on
x < 0 and back towards 0):
- positive branch: fn rises monotonically from 0 to fn(x_max); T equal steps of
  A_pos = fn(x_max) / (T - 1/2), placed where fn crosses (k - 1/2) A_pos, are the L-infinity
  optimal staircase (error <= A_pos / 2);
- negative branch: fn(-u) falls to its minimum m at u* = -argmin and rises back towards 0, so
  the negative neuron is ternary: floor(T/2) inhibitory spikes of -a on the falling part, then
  as many excitatory +a on the rising part, a = |m| / floor(T/2).

``SNNStaircase`` is the operator for a fit: its ``snn`` mode steps the two ``StaircaseNeuron``s
(``neuron.py``), its ``snn-fused`` mode takes their closed form (``fast.StaircaseClosedForm``: a
threshold search plus a prefix sum accumulated in the order of the steps, so the two agree bit
for bit), its ``qat`` mode the closed form forward and fn' backward. SNNSiLU (``silu.py``) and
SNNGELU (``gelu.py``) are its instances.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

import models.spiking.counters as counters
import models.spiking.observe as observe

from .checks import OPERATOR_MODES, check_finite, check_mode, check_time_steps
from .encode import SpikeCoding
from .fast import StaircaseClosedForm
from .lookup import BucketLookup
from .neuron import StaircaseNeuron


def bisect_root(derivative: Callable[[float], float], lo: float, hi: float) -> float:
    """x in [lo, hi] with derivative(x) = 0, derivative < 0 left of it (a minimum), by bisection (float64)."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if derivative(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _invert_monotone(f, targets: torch.Tensor, lo: float, hi: float, increasing: bool) -> torch.Tensor:
    """Solve f(x) = target on [lo, hi] for each target by bisection (float64)."""
    a = torch.full_like(targets, lo)
    b = torch.full_like(targets, hi)
    for _ in range(200):
        mid = (a + b) / 2
        below = f(mid) < targets
        go_right = below if increasing else ~below
        a = torch.where(go_right, mid, a)
        b = torch.where(go_right, b, mid)
    return (a + b) / 2


@dataclass(frozen=True)
class StaircaseFit:
    """Fitted neuron parameters and the approximation error they give on [-x_max, x_max]."""

    time_steps: int
    x_max: float
    pos_thresholds: torch.Tensor  # (T,) ascending, on x
    pos_amplitude: float
    neg_thresholds: torch.Tensor  # (2K,) ascending, on u = -x
    neg_amplitudes: torch.Tensor  # (2K,) -a then +a
    max_abs_error: float
    mean_abs_error: float


@lru_cache(maxsize=128)
def fit_staircase(
    fn: Callable[[torch.Tensor], torch.Tensor], argmin: float, time_steps: int = 127, x_max: float = 8.0, grid_points: int = 160_001
) -> StaircaseFit:
    """Fit the two neurons to ``fn`` for T time steps on [-x_max, x_max] and measure the error there.

    ``fn`` (float64 tensors in and out) is 0 at 0, rises on x >= 0, has its one minimum on x < 0 at
    ``argmin`` and tends to 0 as x -> -inf (SiLU, GELU).
    """
    T = check_time_steps(time_steps)
    if not (isinstance(x_max, (int, float)) and math.isfinite(x_max) and x_max > 0):
        raise ValueError(f"x_max must be a finite number > 0, got {x_max!r}")
    if not (isinstance(argmin, float) and math.isfinite(argmin) and argmin < 0):
        raise ValueError(f"argmin must be a finite float < 0 (where fn has its minimum), got {argmin!r}")
    f64 = torch.float64
    top = float(fn(torch.tensor(x_max, dtype=f64)))
    pos_amp = top / (T - 0.5)
    levels = (torch.arange(1, T + 1, dtype=f64) - 0.5) * pos_amp
    pos_thr = _invert_monotone(fn, levels, 0.0, x_max, increasing=True)

    u_star = -argmin
    g = lambda u: fn(-u)  # noqa: E731
    m = float(g(torch.tensor(u_star, dtype=f64)))
    K = T // 2
    if K == 0 or u_star >= x_max:
        neg_thr = torch.zeros(0, dtype=f64)
        neg_amp = torch.zeros(0, dtype=f64)
    else:
        a = abs(m) / K
        falling = _invert_monotone(g, -(torch.arange(1, K + 1, dtype=f64) - 0.5) * a, 0.0, u_star, increasing=False)
        rising_targets = -(torch.arange(K, 0, -1, dtype=f64) - 0.5) * a
        rising = _invert_monotone(g, rising_targets, u_star, max(x_max, u_star), increasing=True)
        reachable = g(torch.tensor(max(x_max, u_star), dtype=f64)) >= rising_targets
        rising = rising[reachable]
        neg_thr = torch.cat([falling, rising])
        neg_amp = torch.cat([torch.full((K,), -a, dtype=f64), torch.full((len(rising),), a, dtype=f64)])

    x = torch.linspace(-x_max, x_max, grid_points, dtype=f64)
    neurons = StaircaseNeuron(pos_thr, torch.full((T,), pos_amp, dtype=f64)), StaircaseNeuron(neg_thr, neg_amp)
    err = (StaircaseClosedForm(*neurons).search(x)[0] - fn(x)).abs()
    return StaircaseFit(T, float(x_max), pos_thr, pos_amp, neg_thr, neg_amp, float(err.max()), float(err.mean()))


class _StaircaseSTE(torch.autograd.Function):
    """Forward: the spiking staircase. Backward: the derivative of the float activation (quantization-aware training)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: "SNNStaircase") -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.op = op
        return op.closed_form(x, spikes=False)[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return ctx.op.float_backward(x, grad), None


class SNNStaircase(SpikeCoding, nn.Module):
    """An activation by two fitted spiking neurons (B.2.2). Modes ``qat`` (staircase forward, f' backward), ``snn``, ``snn-fused``.

    Subclasses give the fit (``make_fit``) and the float derivative (``float_backward``).
    """

    float_ops_per_element = 4  # what the float activation costs on the qat path

    def __init__(self, time_steps: int = 127, x_max: float = 8.0, mode: str = "snn-fused") -> None:
        super().__init__()
        self.mode = check_mode(mode, OPERATOR_MODES)
        self.fit = self.make_fit(time_steps, x_max)
        self.time_steps = time_steps
        self.pos_neuron = StaircaseNeuron(self.fit.pos_thresholds, torch.full((time_steps,), self.fit.pos_amplitude, dtype=torch.float64))
        self.neg_neuron = StaircaseNeuron(self.fit.neg_thresholds, self.fit.neg_amplitudes)
        self.closed_form = StaircaseClosedForm(self.pos_neuron, self.neg_neuron)

    @property
    def coding_steps(self) -> int:
        return self.time_steps

    def make_fit(self, time_steps: int, x_max: float) -> StaircaseFit:
        raise NotImplementedError

    def float_backward(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """grad * f'(x), the gradient the qat mode passes back."""
        raise NotImplementedError

    # the fast path under the names the lookup tests use
    def _closed_form(self, x: torch.Tensor, spikes: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.closed_form(x, spikes)

    def _closed_form_search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.closed_form.search(x)

    def _lookup(self, like: torch.Tensor) -> BucketLookup | None:
        return self.closed_form.lookup(like)

    @torch.no_grad()
    def time_stepped(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The reference: (output, spikes). Both neurons run T steps under u = |x|, summing their spikes
        (SiLU_approx = sum_t S_pos(t) for x >= 0, sum_t S_neg(t) for x < 0); the sign of x picks the sum."""
        u, positive = x.abs(), x >= 0
        self.pos_neuron.reset()
        self.neg_neuron.reset()
        out_pos, out_neg, fired = torch.zeros_like(x), torch.zeros_like(x), 0
        steps = zip(self.pos_neuron.iter_constant(u, self.time_steps), self.neg_neuron.iter_constant(u, self.time_steps))
        for s_pos, s_neg in steps:
            out_pos, out_neg = out_pos + s_pos, out_neg + s_neg
            if counters.counting():
                fired += int(torch.where(positive, s_pos != 0, s_neg != 0).sum())
        self.pos_neuron.reset()
        self.neg_neuron.reset()
        return torch.where(positive, out_pos, out_neg), fired

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lookup = self.closed_form.lookup(x) if self.mode == "snn-fused" and x.dim() > 0 and x.numel() and not observe.observing() else None
        if lookup is not None:  # one pass (``kernels.py``), finite x checked on the way
            with torch.no_grad():
                out, k, check = lookup.fused(x.detach(), second=counters.counting())
            if bool(torch.isfinite(check).all()):
                if counters.counting():
                    self._record_counts(x, int(k.sum()))
                return out
        check_finite(x, "x")
        if self.mode == "qat":
            out = _StaircaseSTE.apply(x, self)
            fired = None
        elif self.mode == "snn-fused":
            with torch.no_grad():
                out, k = self.closed_form(x, spikes=counters.counting())
            fired = int(k.sum()) if k is not None else None
        else:
            out, fired = self.time_stepped(x)
        if observe.observing() and self.mode != "qat":
            step = torch.tensor(self.fit.x_max / self.time_steps)  # inputs beyond x_max are clipped
            observe.encoded(self, x / step, self.closed_form(x.detach())[1], self.time_steps, step)
        if counters.counting():
            self._record_counts(x, fired)
        return out

    def _record_counts(self, x: torch.Tensor, fired: int | None) -> None:
        """Spiking modes: ``fired`` spikes, one AC each; qat (``fired`` None): the float activation's work."""
        if fired is None:
            counters.record(self, float_ops=self.float_ops_per_element * x.numel(), act_reads=x.numel(), act_writes=x.numel())
        else:
            counters.record(
                self, spikes=fired, neuron_steps=self.time_steps * x.numel(), Effective_ACs=fired, Dense=self.time_steps * x.numel(),
                act_reads=x.numel(), act_writes=x.numel(),
            )

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}, x_max={self.fit.x_max}, mode={self.mode}, max_abs_error={self.fit.max_abs_error:.4g}"
