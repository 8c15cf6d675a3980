"""EI-IF neuron: the excitatory-inhibitory integrate-and-fire neuron of BrainGPT (eq. 1, 6-10).

The neuron is a state machine with an explicit ``reset()``. Each step it

1. charges:  V(t) = V(t-1) + I(t)
2. fires:    S(t) = +1 if V(t) >= theta(t), -1 if V(t) <= -theta(t), else 0,
             with the adaptive threshold theta(t) = theta_base + alpha * t
3. attenuates: V(t) = max(0, V(t)(1-r)) if V(t) > 0, min(0, V(t)(1-r)) if V(t) < 0

Time steps are counted t = 0..T-1. With theta_base = 0.5, alpha = 1, r = 1 and a constant
input x the spike count over T steps is sign(x) * min(T, floor(|x| + 0.5)): round half away
from zero, clamped to [-T, T] (the paper's t = 1..T would start the threshold at 1.5).

``spike_count_closed_form`` gives the same count without stepping, for every neuron with
r >= 1 (the membrane forgets between steps, so the spikes fall on the first k steps).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .checks import check_finite, check_nonnegative, check_positive, check_time_steps
from .quant import quantize_counts


def _as_param(value: float | torch.Tensor, num_features: int | None, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.get_default_dtype()).clone()
    if num_features is not None:
        if t.dim() == 0:
            t = t.expand(num_features).clone()
        if t.shape != (num_features,):
            raise ValueError(f"{name} must be a scalar or have shape ({num_features},), got {tuple(t.shape)}")
    elif t.dim() != 0:
        raise ValueError(f"{name} must be a scalar when num_features is not given, got shape {tuple(t.shape)}")
    return t


def threshold_at(theta_base: torch.Tensor, alpha: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """theta(t) = theta_base + alpha * t (eq. 8). One expression for both paths keeps them bit-equal."""
    return theta_base + alpha * t


def spike_count_closed_form(
    x: torch.Tensor,
    time_steps: int,
    theta_base: torch.Tensor | float = 0.5,
    alpha: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Signed spike count of a memoryless (r >= 1) EI-IF neuron under constant input ``x``.

    The count is #{t < T : |x| >= theta(t)} with the sign of x. theta(t) is non-decreasing,
    so the spikes are the first k steps; k is estimated from (|x| - theta_base) / alpha and
    then corrected with the very comparison the time-stepped neuron makes, which makes the
    result equal to the simulation bit for bit, whatever the rounding of the estimate.
    """
    T = check_time_steps(time_steps)
    theta_base = torch.as_tensor(theta_base, dtype=x.dtype, device=x.device)
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    u = x.abs()
    safe_alpha = torch.where(alpha > 0, alpha, torch.ones_like(alpha))
    estimate = torch.floor((u - theta_base) / safe_alpha) + 1
    estimate = torch.where(alpha > 0, estimate, torch.where(u >= theta_base, float(T), 0.0))
    k = torch.nan_to_num(estimate, nan=0.0, posinf=float(T), neginf=0.0).clamp(0, T)
    for _ in range(2):
        k = k + ((k < T) & (u >= threshold_at(theta_base, alpha, k))).to(x.dtype)
        k = k - ((k > 0) & (u < threshold_at(theta_base, alpha, k - 1))).to(x.dtype)
    return torch.where(x < 0, -k, k)


class EIIFNeuron(nn.Module):
    """Ternary EI-IF neuron with per-neuron theta_base, alpha and r (eq. 1).

    ``num_features`` gives each of the last-dimension neurons its own parameters; ``None``
    shares scalars. ``single_step`` advances one step, ``multi_step`` runs a [T, ...] input.
    With ``track_stats`` the neuron keeps its signed spike count, number of spikes and
    first-spike time (-1 = not yet fired) until ``reset()``.
    """

    def __init__(
        self,
        num_features: int | None = None,
        *,
        theta_base: float | torch.Tensor = 0.5,
        alpha: float | torch.Tensor = 1.0,
        r: float | torch.Tensor = 1.0,
        track_stats: bool = False,
    ) -> None:
        super().__init__()
        theta_base = _as_param(theta_base, num_features, "theta_base")
        alpha = _as_param(alpha, num_features, "alpha")
        r = _as_param(r, num_features, "r")
        check_positive(theta_base, "theta_base")
        check_nonnegative(alpha, "alpha")
        check_nonnegative(r, "r")
        self.num_features = num_features
        self.register_buffer("theta_base", theta_base)
        self.register_buffer("alpha", alpha)
        self.register_buffer("r", r)
        self.track_stats = track_stats
        self.reset()

    def reset(self) -> None:
        """Forget the membrane, the step counter and the statistics."""
        self.v = None
        self._checked: list | None = None  # [input, its version, zero-free or None]: the last input that passed the checks
        self._memoryless_key: tuple | None = None
        self._memoryless_now = False
        self.t = 0
        self.spike_count: torch.Tensor | None = None
        self.num_spikes: torch.Tensor | None = None
        self.first_spike_time: torch.Tensor | None = None

    @property
    def memoryless(self) -> bool:
        """True when r >= 1 for every neuron: the membrane is wiped after every step."""
        return bool((self.r >= 1).all())

    def _params(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.theta_base.to(like.dtype),
            self.alpha.to(like.dtype),
            self.r.to(like.dtype),
        )

    # The membrane after attenuation, V(t), is computed when it is needed: when read, or when the
    # next charge needs it. A memoryless neuron (r >= 1) is left with V = +-0 after every step,
    # and x + (+-0) == x bit for bit for every finite x != 0, so under a zero-free input the next
    # charge is the input itself and V never has to be formed. Spikes, statistics and V (when
    # read) are bit for bit those of charging and attenuating at every step.

    @property
    def v(self) -> torch.Tensor | None:
        """The membrane potential after the last step (attenuated), None before the first step."""
        if self._charged is not None:
            charged, r = self._charged
            decayed = charged * (1 - r)
            self._v = torch.where(charged > 0, decayed.clamp(min=0), torch.where(charged < 0, decayed.clamp(max=0), charged))
            self._charged = None
        return self._v

    @v.setter
    def v(self, value: torch.Tensor | None) -> None:
        self._v = value
        self._charged: tuple[torch.Tensor, torch.Tensor] | None = None  # (V after charging, r) of the last step, not yet attenuated

    def _state_shape(self) -> torch.Size | None:
        if self._charged is not None:
            return self._charged[0].shape
        return self._v.shape if self._v is not None else None

    def _is_memoryless(self) -> bool:
        """``memoryless``, cached while the ``r`` buffer is unchanged (no device sync per step)."""
        key = (id(self.r), self.r.data_ptr(), self.r._version)
        if key != self._memoryless_key:
            self._memoryless_key, self._memoryless_now = key, self.memoryless
        return self._memoryless_now

    def _check_current(self, current: torch.Tensor, name: str = "current") -> list:
        """check_finite and the shape checks, skipped for the very input that passed them last (unmodified)."""
        checked = self._checked
        if checked is not None and checked[0] is current and checked[1] == current._version:
            return checked
        check_finite(current, name)
        if self.num_features is not None and (current.dim() == 0 or current.shape[-1] != self.num_features):
            raise ValueError(
                f"{name} must have last dimension {self.num_features} (num_features), got shape {tuple(current.shape)}"
            )
        self._checked = [current, current._version, None]
        return self._checked

    def _step(self, current: torch.Tensor, zero_free: Callable[[], bool]) -> torch.Tensor:
        """One step of eq. 1 on a checked input; ``zero_free()`` says whether it has no exact zeros."""
        state_shape = self._state_shape()
        if state_shape is not None and state_shape != current.shape:
            raise ValueError(
                f"current has shape {tuple(current.shape)} but the membrane has {tuple(state_shape)}; call reset() between inputs"
            )
        theta_base, alpha, r = self._params(current)
        if self._charged is not None and self._charged[0].dtype == current.dtype and self._is_memoryless() and zero_free():
            v = current.clone()  # = (+-0) + current: see above
        else:
            previous = self.v
            v = current.clone() if previous is None else previous + current
        theta = threshold_at(theta_base, alpha, self.t)
        spikes = (v >= theta).to(current.dtype) - (v <= -theta).to(current.dtype)
        self._v, self._charged = None, (v, r)
        if self.track_stats:
            self._update_stats(spikes)
        self.t += 1
        return spikes

    def single_step(self, current: torch.Tensor) -> torch.Tensor:
        """One step of eq. 1: charge, fire against theta(t), attenuate. Returns S(t) in {-1, 0, 1}."""
        checked = self._check_current(current)

        def zero_free() -> bool:
            if checked[2] is None:
                checked[2] = not bool((current == 0).any())
            return checked[2]

        return self._step(current, zero_free)

    def _update_stats(self, spikes: torch.Tensor) -> None:
        fired = spikes != 0
        if self.spike_count is None:
            self.spike_count = torch.zeros_like(spikes)
            self.num_spikes = torch.zeros(spikes.shape, dtype=torch.int64, device=spikes.device)
            self.first_spike_time = torch.full(spikes.shape, -1, dtype=torch.int64, device=spikes.device)
        self.spike_count = self.spike_count + spikes
        self.num_spikes = self.num_spikes + fired.to(torch.int64)
        first = fired & (self.first_spike_time < 0)
        self.first_spike_time = torch.where(first, torch.full_like(self.first_spike_time, self.t), self.first_spike_time)

    def multi_step(self, currents: torch.Tensor) -> torch.Tensor:
        """Run ``currents`` of shape [T, ...] step by step; returns spikes of the same shape."""
        if currents.dim() == 0 or currents.shape[0] < 1:
            raise ValueError("currents must have a leading time dimension of length >= 1")
        check_finite(currents, "current")
        if self.num_features is not None and (currents.dim() < 2 or currents.shape[-1] != self.num_features):
            raise ValueError(
                f"current must have last dimension {self.num_features} (num_features), got shape {tuple(currents.shape[1:])}"
            )
        zero_free: list[bool] | None = None

        def step_is_zero_free(t: int) -> bool:
            nonlocal zero_free
            if zero_free is None:
                nonzero = currents != 0
                zero_free = (nonzero.flatten(1).all(1) if nonzero.dim() > 1 else nonzero).tolist()
            return zero_free[t]

        return torch.stack([self._step(c, lambda t=t: step_is_zero_free(t)) for t, c in enumerate(currents)])

    def run_constant(self, x: torch.Tensor, time_steps: int) -> torch.Tensor:
        """Drive the neuron with the constant current ``x`` for T steps (eq. 6-10); returns [T, ...] spikes."""
        T = check_time_steps(time_steps)
        check_finite(x, "x")
        return torch.stack([self.single_step(x) for _ in range(T)])

    def count_closed_form(self, x: torch.Tensor, time_steps: int) -> torch.Tensor:
        """Spike count of ``run_constant(x, T).sum(0)`` without stepping (requires r >= 1).

        With the conversion parameters (theta_base 0.5, alpha 1) in float32/float64 the count is
        round-half-away-from-zero clamped to [-T, T], computed directly (the tests prove the two equal).
        """
        check_finite(x, "x")
        if not self.memoryless:
            raise ValueError("count_closed_form needs r >= 1 for every neuron (a leaky membrane has no closed form); use run_constant")
        check_time_steps(time_steps)
        if x.dtype in (torch.float32, torch.float64) and time_steps < 2**22 and self.conversion_parameters:
            return quantize_counts(x, time_steps)
        theta_base, alpha, _ = self._params(x)
        return spike_count_closed_form(x, time_steps, theta_base, alpha)

    @property
    def conversion_parameters(self) -> bool:
        """True when every neuron has theta_base = 0.5 and alpha = 1 (BrainGPT's lossless setting).

        Asked on every closed-form count; the answer is kept until either buffer changes."""
        key = (self.theta_base.data_ptr(), self.theta_base._version, self.alpha.data_ptr(), self.alpha._version)
        cached = self.__dict__.get("_conversion_parameters")
        if cached is None or cached[0] != key:
            cached = (key, bool((self.theta_base == 0.5).all()) and bool((self.alpha == 1.0).all()))
            self.__dict__["_conversion_parameters"] = cached
        return cached[1]

    @staticmethod
    def first_spike_time_closed_form(count: torch.Tensor) -> torch.Tensor:
        """First-spike time of a memoryless neuron given its closed-form count: 0 if it fires, else -1."""
        return torch.where(count != 0, 0, -1).to(torch.int64)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, track_stats={self.track_stats}"
