"""Spiking neurons as state machines: one base class and the three neurons of this project.

``SpikingNeuron`` keeps a membrane potential ``v`` and a step counter ``t`` until ``reset()``.
One step is always the same three stages, each a method a neuron defines:

    neuronal_charge(x)        V(t) from V(t-1) and the input
    neuronal_fire()           S(t) from V(t) and the threshold
    neuronal_reset(S(t))      what the membrane keeps for the next step

``single_step(x)`` runs one step, ``multi_step(x_seq)`` a [T, ...] sequence and
``iter_constant(x, T)`` T steps under a constant input (rate coding, BrainGPT eq. 6-10).
Inputs are checked once per call, never inside the steps. The neurons:

- ``EIIFNeuron``: BrainGPT's excitatory-inhibitory integrate-and-fire neuron (eq. 1), with a spike
  ``coding`` (``rate``, ``bitwise``, ``multilevel``: ``step_weights``; ``set_coding`` sets a model's);
- ``IFNeuron``: the ternary IF neuron with soft reset of spike-based self-attention (``ssa.py``),
  trained through a surrogate gradient (``surrogate.py``);
- ``StaircaseNeuron``: a fitted neuron of the spiking SiLU and GELU (appendix B.2.2).

These neurons step: they are the reference of the ``snn`` mode. The closed forms of their spike
counts (the ``snn-fused`` mode) are in ``fast.py``, tested equal to them bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from .checks import check_coding, check_finite, check_nonnegative, check_positive, check_time_steps, coding_steps
from .fast import coded_counts, first_spike_time, remembered
from .quant import quantize_counts
from .surrogate import check_surrogate, ternary_spike


class SpikingNeuron(nn.Module):
    """Base of the neurons: a membrane ``v`` (None before the first step: V(-1) = 0) and a step counter ``t``."""

    def __init__(self) -> None:
        super().__init__()
        self.reset()

    def reset(self) -> None:
        """Forget the membrane and the step counter."""
        self.v: torch.Tensor | None = None
        self.t = 0

    def neuronal_charge(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def neuronal_fire(self) -> torch.Tensor:
        raise NotImplementedError

    def neuronal_reset(self, spikes: torch.Tensor) -> None:
        raise NotImplementedError

    def check_input(self, x: torch.Tensor, step_shape: torch.Size) -> None:
        """``x`` (one step or a sequence) is finite and a step of shape ``step_shape`` fits the membrane."""
        check_finite(x, "current")
        if self.v is not None and self.v.shape != step_shape:
            raise ValueError(
                f"current has shape {tuple(step_shape)} but the membrane has {tuple(self.v.shape)}; call reset() between inputs"
            )

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One time step on a checked input: charge, fire, reset. Returns S(t)."""
        self.neuronal_charge(x)
        spikes = self.neuronal_fire()
        self.neuronal_reset(spikes)
        self.t += 1
        return spikes

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        """One time step of input ``x``; returns S(t)."""
        self.check_input(x, x.shape)
        return self.step(x)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Run ``x_seq`` of shape [T, ...] step by step; returns the spikes, [T, ...]."""
        if x_seq.dim() == 0 or x_seq.shape[0] < 1:
            raise ValueError("currents must have a leading time dimension of length >= 1")
        self.check_input(x_seq, x_seq.shape[1:])
        return torch.stack([self.step(x) for x in x_seq])

    def iter_constant(self, x: torch.Tensor, time_steps: int) -> Iterator[torch.Tensor]:
        """S(t) for t = 0..T-1 under the constant input ``x``, one step per item (the input is checked now)."""
        T = check_time_steps(time_steps)
        self.check_input(x, x.shape)
        return (self.step(x) for _ in range(T))

    def run_constant(self, x: torch.Tensor, time_steps: int) -> torch.Tensor:
        """Drive the neuron with the constant input ``x`` for T steps (eq. 6-10); returns [T, ...] spikes."""
        return torch.stack(list(self.iter_constant(x, time_steps)))


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


def step_weights(coding: str, time_steps: int) -> list[int]:
    """What the spike of each step of a code of range T is worth: the count is n = sum_k w_k S_k.

    - ``rate``: T steps of weight 1 (|n| ternary spikes);
    - ``bitwise``: K = ceil(log2(T + 1)) steps, step k weighs 2^(K-1-k) (most significant digit first; listed
      least significant first, digit t weighs 2^t), one ternary spike per nonzero binary digit of |n|;
    - ``multilevel``: 1 step of weight 1, the spike is the graded count n itself.
    """
    K = coding_steps(coding, time_steps)
    return [2 ** (K - 1 - k) for k in range(K)] if coding == "bitwise" else [1] * K


def coding_parameters_error(coding: str) -> str:
    """The one-line error of a non-rate coding on a neuron without the conversion parameters."""
    return (
        f"{coding} coding emits the quantizer's count and needs the conversion parameters (theta_base 0.5, alpha 1, r >= 1) "
        "on every EI-IF neuron, but some were changed (stage 3, STDP, tunes rate-coded thresholds): use --coding rate for a model after stage 3"
    )


def threshold_at(theta_base: torch.Tensor, alpha: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """theta(t) = theta_base + alpha * t (eq. 8). ``fast.spike_count_closed_form`` compares against the same expression."""
    return theta_base + alpha * t


class EIIFNeuron(SpikingNeuron):
    """Ternary EI-IF neuron of BrainGPT (eq. 1; eq. 6-10 under a constant input), per-neuron theta_base, alpha, r:

        charge:  V(t) = V(t-1) + I(t)
        fire:    S(t) = 1 if V(t) >= theta(t), -1 if V(t) <= -theta(t), else 0,   theta(t) = theta_base + alpha t
        reset:   V(t) = max(0, V(t)(1 - r)) if V(t) > 0,  min(0, V(t)(1 - r)) if V(t) < 0   (attenuation)

    Time steps are counted t = 0..T-1: with theta_base = 0.5, alpha = 1, r = 1 the count under a
    constant x is sign(x) min(T, floor(|x| + 0.5)), round half away from zero clamped to [-T, T]
    (the paper's t = 1..T would start the threshold at 1.5). ``num_features`` gives each of the
    last-dimension neurons its own parameters; ``None`` shares scalars. With ``track_stats`` the
    neuron keeps its signed count (sum of its spikes times their ``step_weights``), number of
    spikes and first-spike time (-1 = not yet).

    ``coding`` says how the count n = quantize_counts(x, T) is emitted under a constant input over
    ``iter_constant(x, T)`` (the two other codings need the conversion parameters above):

    - ``rate`` (default): the dynamics above, T steps, |n| spikes;
    - ``bitwise`` (binary-weighted, as SpikingBrain arXiv 2509.05276): K = ceil(log2(T + 1)) steps;
      charge V = clamp(x, -T, T) once; at step k the digit weight is w = 2^(K-1-k) (most significant
      first: listed least significant first, digit t weighs 2^t); with u = sign(x) V the magnitude left
      to emit, fire S = sign(x) if u >= w - 0.5; reset u -= w when fired (u may end at -0.5: the sign is
      the charge's, so it never fires back). u < 2w - 0.5 before every step, so a firing u lies in
      [w - 0.5, 2w): each subtraction is exact (Sterbenz), u ends in [-0.5, 0.5) and the fired weights
      sum to round_half_away(|V|), bit for bit in float32 and float64. popcount(|n|) spikes;
    - ``multilevel``: 1 step; charge V = clamp(x, -T, T), fire the graded spike S = round_half_away(V)
      (= n), reset V = 0. One spike per nonzero n.
    """

    mode_state = ("theta_base", "alpha", "r")  # only spiking operators have neurons

    def __init__(
        self,
        num_features: int | None = None,
        *,
        theta_base: float | torch.Tensor = 0.5,
        alpha: float | torch.Tensor = 1.0,
        r: float | torch.Tensor = 1.0,
        track_stats: bool = False,
        coding: str = "rate",
    ) -> None:
        theta_base = _as_param(theta_base, num_features, "theta_base")
        alpha = _as_param(alpha, num_features, "alpha")
        r = _as_param(r, num_features, "r")
        check_positive(theta_base, "theta_base")
        check_nonnegative(alpha, "alpha")
        check_nonnegative(r, "r")
        super().__init__()
        self.num_features = num_features
        self.register_buffer("theta_base", theta_base)
        self.register_buffer("alpha", alpha)
        self.register_buffer("r", r)
        self.track_stats = track_stats
        self.coding = check_coding(coding)
        self.check_coding_parameters(self.coding)

    def reset(self) -> None:
        """Forget the membrane, the step counter, the code under way and the statistics."""
        super().reset()
        self.code_range = 0  # T of the bitwise / multilevel code under way (``iter_constant``)
        self.code_start = 0  # the step it started at
        self.code_sign: torch.Tensor | None = None  # sign(x) of the bitwise code under way
        self.spike_count: torch.Tensor | None = None
        self.num_spikes: torch.Tensor | None = None
        self.first_spike_time: torch.Tensor | None = None

    @property
    def memoryless(self) -> bool:
        """True when r >= 1 for every neuron: the membrane is wiped after every step."""
        return bool((self.r >= 1).all())

    @property
    def conversion_parameters(self) -> bool:
        """True when every neuron has theta_base = 0.5 and alpha = 1 (BrainGPT's lossless setting)."""
        return bool((self.theta_base == 0.5).all()) and bool((self.alpha == 1.0).all())

    def check_coding_parameters(self, coding: str | None = None) -> None:
        """A ``bitwise`` or ``multilevel`` code (``coding``, default the neuron's) is the quantizer's count: it needs the
        conversion parameters and r >= 1 (checked once per change of the buffers); a one-line ValueError otherwise."""
        coding = self.coding if coding is None else coding
        if coding == "rate":
            return
        sources = (self.theta_base, self.alpha, self.r)
        if not remembered(self, "_coding_parameters", sources, lambda: self.conversion_parameters and self.memoryless):
            raise ValueError(coding_parameters_error(coding))

    def single_step(self, x: torch.Tensor) -> torch.Tensor:
        """One step of a rate-coded neuron (the other codings code one constant input: ``iter_constant``)."""
        self._check_rate("single_step")
        return super().single_step(x)

    def multi_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        """A [T, ...] sequence through a rate-coded neuron (the other codings: ``iter_constant``)."""
        self._check_rate("multi_step")
        return super().multi_step(x_seq)

    def _check_rate(self, method: str) -> None:
        if self.coding != "rate":
            raise ValueError(f"a {self.coding}-coded neuron codes one constant input: use iter_constant(x, T), not {method}")

    def iter_constant(self, x: torch.Tensor, time_steps: int) -> Iterator[torch.Tensor]:
        """S(k) for the ``coding_steps(coding, T)`` steps of the code of the constant input ``x`` (rate: eq. 6-10);
        each spike is worth its ``step_weights`` (the input is checked now)."""
        T = check_time_steps(time_steps)
        if self.coding == "rate":
            return super().iter_constant(x, T)
        self.check_coding_parameters()
        self.check_input(x, x.shape)
        self.code_range, self.code_start = T, self.t
        return (self.step(x) for _ in range(coding_steps(self.coding, T)))

    def iter_weighted(self, x: torch.Tensor, time_steps: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(w_k, S(k)) for the steps of ``iter_constant``: the count is n = sum_k w_k S(k) (``step_weights``)."""
        return zip(step_weights(self.coding, time_steps), self.iter_constant(x, time_steps))

    def _digit_weight(self) -> int:
        """w = 2^(K-1-k) of step k of the bitwise code under way."""
        return 2 ** (coding_steps("bitwise", self.code_range) - 1 - (self.t - self.code_start))

    def check_input(self, x: torch.Tensor, step_shape: torch.Size) -> None:
        super().check_input(x, step_shape)
        if self.num_features is not None and (len(step_shape) == 0 or step_shape[-1] != self.num_features):
            raise ValueError(
                f"current must have last dimension {self.num_features} (num_features), got shape {tuple(step_shape)}"
            )

    def neuronal_charge(self, current: torch.Tensor) -> None:
        if self.coding == "rate":
            self.v = current if self.v is None else self.v + current
        elif self.t == self.code_start:  # a constant current: charged once, clamped to the code's range
            self.v = current.clamp(-self.code_range, self.code_range)
            self.code_sign = torch.sign(self.v)

    def neuronal_fire(self) -> torch.Tensor:
        v = self.v
        if self.coding == "multilevel":
            return quantize_counts(v, self.code_range)  # the graded spike: round half away from zero
        if self.coding == "bitwise":  # S = sign(x) where u = sign(x) V >= w - 0.5 (exact in float32 for every digit)
            fires = self.code_sign * v >= self._digit_weight() - 0.5
            return torch.where(fires, self.code_sign, torch.zeros((), dtype=v.dtype, device=v.device))
        theta = threshold_at(self.theta_base.to(v.dtype), self.alpha.to(v.dtype), self.t)
        return (v >= theta).to(v.dtype) - (v <= -theta).to(v.dtype)

    def neuronal_reset(self, spikes: torch.Tensor) -> None:
        v = self.v
        if self.coding == "multilevel":
            self.v = torch.zeros_like(v)
        elif self.coding == "bitwise":
            self.v = v - spikes * self._digit_weight()  # soft reset by the digit weight: u -= w where it fired
        else:
            decayed = v * (1 - self.r.to(v.dtype))
            self.v = torch.where(v > 0, decayed.clamp(min=0), torch.where(v < 0, decayed.clamp(max=0), v))

    def step(self, current: torch.Tensor) -> torch.Tensor:
        t = self.t
        weight = self._digit_weight() if self.coding == "bitwise" else 1
        spikes = super().step(current)
        if self.track_stats:
            self._update_stats(spikes, t, weight)
        return spikes

    def _update_stats(self, spikes: torch.Tensor, t: int, weight: int = 1) -> None:
        fired = spikes != 0
        if self.spike_count is None:
            self.spike_count = torch.zeros_like(spikes)
            self.num_spikes = torch.zeros(spikes.shape, dtype=torch.int64, device=spikes.device)
            self.first_spike_time = torch.full(spikes.shape, -1, dtype=torch.int64, device=spikes.device)
        self.spike_count = self.spike_count + (spikes if weight == 1 else spikes * weight)
        self.num_spikes = self.num_spikes + fired.to(torch.int64)
        first = fired & (self.first_spike_time < 0)
        self.first_spike_time = torch.where(first, torch.full_like(self.first_spike_time, t), self.first_spike_time)

    # The closed forms (r >= 1) belong to the fast path; these two name them on the neuron.

    def count_closed_form(self, x: torch.Tensor, time_steps: int) -> torch.Tensor:
        """The count sum_k w_k S(k) of ``iter_weighted(x, T)`` without stepping (needs r >= 1): ``fast.coded_counts``."""
        return coded_counts(self, x, time_steps)

    @staticmethod
    def first_spike_time_closed_form(count: torch.Tensor) -> torch.Tensor:
        """First-spike time of a memoryless neuron from its closed-form count: ``fast.first_spike_time``."""
        return first_spike_time(count)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, track_stats={self.track_stats}, coding={self.coding}"


def coding_neurons(model: nn.Module, coding: str) -> list[EIIFNeuron]:
    """Every ``EIIFNeuron`` of ``model``, each checked to take the spike ``coding`` (a non-rate coding needs the
    conversion parameters); a one-line ValueError otherwise."""
    check_coding(coding)
    neurons = [m for m in model.modules() if isinstance(m, EIIFNeuron)]
    for neuron in neurons:
        neuron.check_coding_parameters(coding)
    return neurons


def set_coding(model: nn.Module, coding: str) -> int:
    """Give every ``EIIFNeuron`` of ``model`` the spike ``coding``; returns how many there are. Every neuron is
    checked first (``coding_neurons``), so a refusal changes nothing."""
    neurons = coding_neurons(model, coding)
    for neuron in neurons:
        neuron.coding = coding
        neuron.reset()
    return len(neurons)


class IFNeuron(SpikingNeuron):
    """Ternary integrate-and-fire neuron with soft reset, as in SSA (Spikformer eq. 6-8 with ternary spikes):

        charge:  V_t = V_{t-1} + I_t
        fire:    S_t = 1 if V_t >= theta/2, -1 if V_t <= -theta/2, else 0   (surrogate gradient backward)
        reset:   V_t = V_t - S_t theta                                       (soft reset)

    A spike carries the value theta: under a constant current c the count over T steps is
    round(T c / theta) clamped to [-T, T]. ``threshold`` broadcasts against the input and may
    carry gradients (SSA learns it); ``surrogate`` and ``alpha`` choose the gradient (``surrogate.py``).
    """

    def __init__(self, threshold: torch.Tensor, surrogate: str = "atan", alpha: float | None = None) -> None:
        super().__init__()
        self.threshold = threshold
        self.surrogate, self.alpha = check_surrogate(surrogate, alpha)

    def neuronal_charge(self, current: torch.Tensor) -> None:
        self.v = current if self.v is None else self.v + current

    def neuronal_fire(self) -> torch.Tensor:
        return ternary_spike(self.v, self.threshold, self.surrogate, self.alpha)

    def neuronal_reset(self, spikes: torch.Tensor) -> None:
        self.v = self.v - spikes * self.threshold


class StaircaseNeuron(SpikingNeuron):
    """One neuron of the spiking SiLU (BrainGPT appendix B.2.2), with a fitted threshold and amplitude per step:

        charge:  V_t = gamma V_{t-1} + u
        fire:    S_t = A(t) if V_t >= theta(t), else 0     (silent after the last fitted step)
        reset:   none (the leak gamma acts in the charge)

    The positive neuron sees u = x (x >= 0), the negative one u = -x (x < 0; the paper writes its
    condition on -V). With gamma = 0 and ascending thresholds the neuron fires on its first k steps,
    k = #{t : u >= theta(t)}. Thresholds and amplitudes are float64 buffers, used in the input's dtype.
    """

    def __init__(self, thresholds: torch.Tensor, amplitudes: torch.Tensor, gamma: float = 0.0) -> None:
        if thresholds.shape != amplitudes.shape or thresholds.dim() != 1:
            raise ValueError(f"thresholds and amplitudes must be 1-D of one length, got {tuple(thresholds.shape)} and {tuple(amplitudes.shape)}")
        super().__init__()
        self.gamma = gamma
        self.register_buffer("thresholds", thresholds.clone(), persistent=False)
        self.register_buffer("amplitudes", amplitudes.clone(), persistent=False)

    def neuronal_charge(self, u: torch.Tensor) -> None:
        self.v = u if self.v is None else self.gamma * self.v + u

    def neuronal_fire(self) -> torch.Tensor:
        v = self.v
        if self.t >= len(self.thresholds):
            return torch.zeros_like(v)
        zero = torch.zeros((), dtype=v.dtype, device=v.device)
        return torch.where(v >= self.thresholds[self.t].to(v.dtype), self.amplitudes[self.t].to(v.dtype), zero)

    def neuronal_reset(self, spikes: torch.Tensor) -> None:
        pass

    def extra_repr(self) -> str:
        return f"steps={len(self.thresholds)}, gamma={self.gamma}"
