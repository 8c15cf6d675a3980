"""SNNSiLU: SiLU from a positive and a negative spiking neuron (BrainGPT appendix B.2.2).

For x >= 0 the positive neuron sees V_t = x (decay gamma = 0) and emits A_pos whenever
V_t >= theta_pos(t); for x < 0 the negative neuron sees V_t = -x and emits A_neg(t). The
output is the sum of the spikes over T steps. Thresholds rise with t, so each neuron fires
on its first k steps and the output is a staircase in x with at most T steps per branch.

The parameters are fitted here (``fit_snn_silu``) for a given T and input range [-x_max,
x_max]:
- positive branch: SiLU rises monotonically from 0 to SiLU(x_max); T equal steps of
  A_pos = SiLU(x_max) / (T - 1/2), placed where SiLU crosses (k - 1/2) A_pos, are the
  L-infinity optimal staircase (error <= A_pos / 2);
- negative branch: SiLU(-u) falls to its minimum m = -0.2785 at u = 1.2785 and rises back
  towards 0, so the negative neuron is ternary: floor(T/2) inhibitory spikes of -a on the
  falling part, then as many excitatory +a on the rising part, a = |m| / floor(T/2).
Both neurons are memoryless (gamma = 0): the closed form (``snn-fused``) is a threshold
search plus a prefix sum accumulated in the same order as the time-stepped path, which
makes the two paths equal bit for bit.

The fit works for any activation of that shape (zero at 0, rising on x >= 0, one minimum on
x < 0 and back towards 0): ``fit_staircase(fn, ...)`` does it for a given function and
``SNNStaircase`` is the operator for a given fit; SNNSiLU is the SiLU instance, SNNGELU
(``gelu.py``) the GELU one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from . import counters, observe
from .checks import check_finite, check_path, check_time_steps
from .lookup import BucketLookup

def _silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _silu_prime(x: float) -> float:
    s = 1 / (1 + math.exp(-x))
    return s * (1 + x * (1 - s))


def bisect_root(derivative: Callable[[float], float], lo: float, hi: float) -> float:
    """x in [lo, hi] with derivative(x) = 0, derivative < 0 left of it (a minimum), by bisection (float64)."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if derivative(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _argmin_silu() -> float:
    """x* with SiLU'(x*) = 0, by bisection on the derivative (float64)."""
    return bisect_root(_silu_prime, -2.0, -1.0)


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


SiLUFit = StaircaseFit  # the name SNNSiLU's fit had first


def _staircase(u: torch.Tensor, thresholds: torch.Tensor, amplitudes: torch.Tensor) -> torch.Tensor:
    prefix = torch.cat([amplitudes.new_zeros(1), torch.cumsum(amplitudes, 0)])
    return prefix[torch.searchsorted(thresholds, u.contiguous(), right=True)]


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
    approx = torch.where(
        x >= 0,
        _staircase(x.abs(), pos_thr, torch.full((T,), pos_amp, dtype=f64)),
        _staircase(x.abs(), neg_thr, neg_amp),
    )
    err = (approx - fn(x)).abs()
    return StaircaseFit(T, float(x_max), pos_thr, pos_amp, neg_thr, neg_amp, float(err.max()), float(err.mean()))


@lru_cache(maxsize=64)
def fit_snn_silu(time_steps: int = 127, x_max: float = 8.0, grid_points: int = 160_001) -> StaircaseFit:
    """Fit the two neurons to SiLU for T time steps on [-x_max, x_max] and measure the error there."""
    return fit_staircase(_silu, _argmin_silu(), time_steps, x_max, grid_points)


class _StaircaseSTE(torch.autograd.Function):
    """Forward: the spiking staircase. Backward: the derivative of the float activation (quantization-aware training)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, op: "SNNStaircase") -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.op = op
        return op._closed_form(x, spikes=False)[0]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return ctx.op.float_backward(x, grad), None


class SNNStaircase(nn.Module):
    """An activation by two fitted spiking neurons (B.2.2). Paths: ``qat`` (staircase forward, f' backward), ``snn``, ``snn-fused``.

    Subclasses give the fit (``make_fit``) and the float derivative (``float_backward``).
    """

    float_ops_per_element = 4  # what the float activation costs on the qat path

    def __init__(self, time_steps: int = 127, x_max: float = 8.0, path: str = "snn-fused") -> None:
        super().__init__()
        self.path = check_path(path, ("qat", "snn", "snn-fused"))
        self.fit = self.make_fit(time_steps, x_max)
        self.time_steps = time_steps
        self.register_buffer("pos_thresholds", self.fit.pos_thresholds.clone(), persistent=False)
        self.register_buffer("pos_amplitudes", torch.full((time_steps,), self.fit.pos_amplitude, dtype=torch.float64), persistent=False)
        self.register_buffer("neg_thresholds", self.fit.neg_thresholds.clone(), persistent=False)
        self.register_buffer("neg_amplitudes", self.fit.neg_amplitudes.clone(), persistent=False)
        self._tables: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, ...]] = {}
        self._lookups: dict[tuple[torch.dtype, torch.device], BucketLookup | None] = {}

    def make_fit(self, time_steps: int, x_max: float) -> StaircaseFit:
        raise NotImplementedError

    def float_backward(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """grad * f'(x), the gradient the qat path passes back."""
        raise NotImplementedError

    def _neuron_tables(self, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Thresholds, amplitudes and prefix sums in the input's dtype; prefix sums accumulated step by step."""
        key = (like.dtype, like.device)
        if key not in self._tables:
            tables = []
            for thr, amp in ((self.pos_thresholds, self.pos_amplitudes), (self.neg_thresholds, self.neg_amplitudes)):
                thr, amp = thr.to(like), amp.to(like)
                prefix = [torch.zeros((), dtype=like.dtype, device=like.device)]
                for a in amp:
                    prefix.append(prefix[-1] + a)
                tables += [thr, amp, torch.stack(prefix)]
            self._tables[key] = tuple(tables)
        return self._tables[key]

    def _lookup(self, like: torch.Tensor) -> BucketLookup | None:
        """The closed form as a bucket table (exact, see ``lookup.py``); None where it cannot be built."""
        key = (like.dtype, like.device)
        if key not in self._lookups:
            self._lookups[key] = None
            if like.is_floating_point():
                pos_thr, _, _, neg_thr, _, _ = self._neuron_tables(like)
                zero = torch.zeros(1, dtype=like.dtype, device=like.device)
                # the output changes where x reaches theta_pos, where x >= 0 switches branch, and just above -theta_neg
                negative_side = torch.nextafter(-neg_thr, torch.full_like(neg_thr, float("inf")))
                self._lookups[key] = BucketLookup.build(self._closed_form_search, torch.cat([negative_side, zero, pos_thr]))
        return self._lookups[key]

    def _closed_form(self, x: torch.Tensor, spikes: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, spikes per element or None): k = #{t : |x| >= theta(t)}, output = prefix[k]; by bucket lookup."""
        lookup = self._lookup(x)
        if lookup is None:
            return self._closed_form_search(x)
        found = lookup(x.detach(), outputs=2 if spikes else 1)
        return found[0], (found[1] if spikes else None)

    def _closed_form_search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The closed form by binary search over the thresholds (the reference the lookup is built from)."""
        pos_thr, _, pos_prefix, neg_thr, _, neg_prefix = self._neuron_tables(x)
        u = x.detach().abs().contiguous()
        k_pos = torch.searchsorted(pos_thr, u, right=True)
        k_neg = torch.searchsorted(neg_thr, u, right=True)
        positive = x >= 0
        out = torch.where(positive, pos_prefix[k_pos], neg_prefix[k_neg])
        return out, torch.where(positive, k_pos, k_neg)

    @torch.no_grad()
    def _time_stepped(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        pos_thr, pos_amp, _, neg_thr, neg_amp, _ = self._neuron_tables(x)
        positive = x >= 0
        v = x.abs()  # V_t = gamma V_{t-1} + |x| with gamma = 0
        out = torch.zeros_like(x)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        fired = 0
        for t in range(self.time_steps):
            spike_pos = (v >= pos_thr[t]) if t < len(pos_thr) else torch.zeros_like(positive)
            spike_neg = (v >= neg_thr[t]) if t < len(neg_thr) else torch.zeros_like(positive)
            a_pos = pos_amp[t] if t < len(pos_amp) else zero
            a_neg = neg_amp[t] if t < len(neg_amp) else zero
            spikes = torch.where(positive, torch.where(spike_pos, a_pos, zero), torch.where(spike_neg, a_neg, zero))
            if counters.counting():
                fired += int((torch.where(positive, spike_pos, spike_neg)).sum())
            out = out + spikes
        return out, fired

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_finite(x, "x")
        if self.path == "qat":
            out = _StaircaseSTE.apply(x, self)
            fired = None
        elif self.path == "snn-fused":
            with torch.no_grad():
                out, k = self._closed_form(x, spikes=counters.counting())
            fired = int(k.sum()) if k is not None else None
        else:
            out, fired = self._time_stepped(x)
        if observe.observing() and self.path != "qat":
            step = torch.tensor(self.fit.x_max / self.time_steps)  # inputs beyond x_max are clipped
            observe.encoded(self, x / step, self._closed_form(x.detach())[1], self.time_steps, step)
        if counters.counting():
            if fired is None:
                counters.record(self, float_ops=self.float_ops_per_element * x.numel())
            else:
                counters.record(
                    self, spikes=fired, neuron_steps=self.time_steps * x.numel(), Effective_ACs=fired, Dense=self.time_steps * x.numel()
                )
        return out

    def extra_repr(self) -> str:
        return f"time_steps={self.time_steps}, x_max={self.fit.x_max}, path={self.path}, max_abs_error={self.fit.max_abs_error:.4g}"


class SNNSiLU(SNNStaircase):
    """SiLU by two fitted spiking neurons. Paths: ``qat`` (staircase forward, SiLU' backward), ``snn``, ``snn-fused``."""

    def make_fit(self, time_steps: int, x_max: float) -> StaircaseFit:
        return fit_snn_silu(time_steps, x_max)

    def float_backward(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(x)
        return grad * s * (1 + x * (1 - s))
