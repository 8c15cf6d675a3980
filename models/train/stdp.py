"""Stage 3: STDP-inspired unsupervised optimization of the time steps (BrainGPT section 3.2.3).

The converted SNN codes each linear layer's input with EI-IF neurons whose adaptive threshold
theta(t) = theta_base + alpha t rises by alpha per step. At conversion alpha = 1: a value v
needs |v| steps. A neuron with alpha_i = 2 and theta_base_i = 1 codes the same value in half the
steps at half the resolution; the synapse keeps its output by strengthening that input's
weights by alpha_i (the synaptic-strength constraint of eq. 16: what reaches post-synaptic
neuron j, sum_i w_ji alpha_i n_i, stays what it was). Stage 3 learns theta_base_i and alpha_i
per neuron, without labels, from the layer's own inputs, by lowering the composite loss of
eq. 19 by gradient steps (eq. 18: move every parameter in the direction that lowers T):

- the expected time steps (eq. 17) with P(spike | t) = sigmoid((|v| - theta(t)) / lambda): a
  memoryless EI-IF neuron fires on its first steps, so its expected time window is the sum over t of
  P(spike | t), and a layer's time window is the soft maximum over its neurons; the term
  lambda_T (T - T_target)^2 pulls it to the target;
- the synaptic-strength term lambda_C (sum_i w_ji alpha_i n_i - C_j)^2, with C_j the layer's
  output before stage 3, relative to |C|^2: it keeps each Synapsis' output unchanged;
- lambda_theta (S_target - S_i)^2 and lambda_alpha (V_i - V_target)^2 on the mean spike count
  and mean membrane potential (eq. 12-13; off by default);
- lambda_w (w - delta)^2 with delta the STDP timing window of eq. 15 on the neurons' last-spike times
  (a memoryless neuron fires first at t = 0 whenever it fires, so first-spike times carry no
  information; the last spike, at |n| - 1, does). Off by default: it pulls trained weights
  toward the small STDP targets and costs accuracy.
The attenuation r stays 1 (eq. 14 would make neurons leaky, which has no closed form; it is
reported, not learned). Afterwards each layer's time window (``Synapsis.window``) is set to its largest spike count on the
calibration text: the steps after it are silent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from models.audit import ruled
from models.fields import check_fields
from models.spiking.fast import spike_count_closed_form
from models.spiking.synapsis import Synapsis


@dataclass(frozen=True)
class STDPConfig:
    steps: int = 150
    lr: float = 0.05
    target_fraction: float = 0.5  # T_target = target_fraction x the layer's time window before stage 3
    softness: float = 0.5  # lambda of P(spike | t)
    lambda_T: float = 1.0
    lambda_C: float = 20.0
    lambda_theta: float = 0.0
    lambda_alpha: float = 0.0
    lambda_w: float = 0.0
    s_target: float = 0.0
    v_target: float = 0.0
    a_plus: float = 0.01
    a_minus: float = 0.012
    tau_plus: float = 20.0
    tau_minus: float = 20.0
    max_alpha: float = 16.0

    def __post_init__(self) -> None:
        check_fields(
            self, positive_int=("steps",), positive=("lr", "softness", "lambda_T", "lambda_C", "tau_plus", "tau_minus"), fraction=("target_fraction",)
        )


@dataclass
class LayerReport:
    name: str
    time_window_before: int
    time_window_after: int
    mean_alpha: float
    output_error_before: float
    output_error_after: float
    spikes_per_token_before: float
    spikes_per_token_after: float


def stdp_delta(post_last: torch.Tensor, pre_last: torch.Tensor, config: STDPConfig) -> torch.Tensor:
    """Eq. 15 for every synapse (post j, pre i): A+ exp(-dt/tau+) if dt > 0 else -A- exp(dt/tau-), dt = t_j - t_i."""
    dt = post_last[:, None] - pre_last[None, :]
    return torch.where(dt > 0, config.a_plus * torch.exp(-dt / config.tau_plus), -config.a_minus * torch.exp(dt / config.tau_minus))


def _collect_inputs(model: nn.Module, layers: dict[str, Synapsis], batches: Iterable[torch.Tensor], limit: int = 1024) -> dict[str, torch.Tensor]:
    """Up to ``limit`` input tokens of every Synapsis on the calibration batches."""
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in layers}

    def hook(name):
        def fn(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1])
            have = sum(len(t) for t in seen[name])
            if have < limit:
                seen[name].append(x[: limit - have])

        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            for ids in batches:
                model(ids.to(device))
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(xs) for n, xs in seen.items() if xs}


def _soft_count(u: torch.Tensor, theta_base: torch.Tensor, alpha: torch.Tensor, time_window: int, softness: float) -> torch.Tensor:
    """Sum over t < time_window of P(spike | t) = sigmoid((|v| - theta_base - alpha t) / softness) (eq. 17).

    The thresholds are evenly spaced, so the sum is the integral of the sigmoid over t in
    [-1/2, time_window - 1/2] (midpoint rule): (softness / alpha) [softplus(a) - softplus(b)], with no
    (tokens x neurons x T) tensor.
    """
    a = (u - theta_base + alpha / 2) / softness
    b = (u - theta_base - alpha * (time_window - 0.5)) / softness
    return softness / alpha * (nn.functional.softplus(a) - nn.functional.softplus(b))


def _hard_count(u: torch.Tensor, theta_base: torch.Tensor, alpha: torch.Tensor, time_window: int) -> torch.Tensor:
    return spike_count_closed_form(u, time_window, theta_base.detach(), alpha.detach())


def optimize_layer(layer: Synapsis, x: torch.Tensor, config: STDPConfig) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(theta_base, alpha) per neuron for one Synapsis from its inputs ``x`` (tokens, in_features)."""
    token, static = layer.pre.scales(x)
    scale = token if static is None else (token * static if token is not None else static)
    v = (x / scale).detach()
    u, sign = v.abs(), torch.sign(v)
    time_window = int(layer.window)
    weight = layer.weight.detach()
    n0 = _hard_count(u, layer.pre_neuron.theta_base, layer.pre_neuron.alpha, time_window)
    target_out = nn.functional.linear(sign * n0, weight)  # C_j: the synaptic current before stage 3
    ref = target_out.pow(2).mean() + 1e-12
    log_alpha = nn.Parameter(torch.log(layer.pre_neuron.alpha.detach().clone()))
    offset = nn.Parameter(torch.zeros_like(log_alpha))  # theta_base = alpha / 2 + offset
    optimizer = torch.optim.Adam([log_alpha, offset], lr=config.lr)
    t_target = config.target_fraction * time_window
    for _ in range(config.steps):
        alpha = log_alpha.exp().clamp(1.0, config.max_alpha)
        theta_base = (alpha / 2 + offset).clamp(min=1e-3)
        soft = _soft_count(u, theta_base, alpha, time_window, config.softness)
        hard = _hard_count(u, theta_base, alpha, time_window)
        count = hard + soft - soft.detach()  # straight-through: forward uses the real spike counts
        out = nn.functional.linear(sign * count * alpha, weight)
        loss = config.lambda_C * (out - target_out).pow(2).mean() / ref
        expected_t = torch.logsumexp(soft * 4.0, dim=-1).mean() / 4.0  # soft max over neurons, per token
        loss = loss + config.lambda_T * ((expected_t - t_target) / time_window) ** 2
        if config.lambda_theta:
            loss = loss + config.lambda_theta * ((config.s_target - count.mean(0)) ** 2).mean()
        if config.lambda_alpha:
            loss = loss + config.lambda_alpha * ((u.mean(0) - config.v_target) ** 2 * alpha / alpha.detach()).mean()
        if config.lambda_w:
            pre_last = (hard.mean(0) - 1).clamp(min=0)
            post_last = (target_out.abs().mean(0) / weight.abs().sum(1).clamp(min=1e-6)).detach()
            delta = stdp_delta(post_last, pre_last, config)
            loss = loss + config.lambda_w * ((weight * alpha - delta) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    alpha = log_alpha.exp().clamp(1.0, config.max_alpha).detach()
    theta_base = (alpha / 2 + offset).clamp(min=1e-3).detach()
    final = _hard_count(u, theta_base, alpha, time_window)
    out = nn.functional.linear(sign * final * alpha, weight)
    stats = {"output_error": float(((out - target_out).pow(2).mean() / ref).sqrt()), "max_count": int(final.abs().max())}
    return theta_base, alpha, stats


@torch.no_grad()
def _apply(layer: Synapsis, theta_base: torch.Tensor, alpha: torch.Tensor, time_window: int) -> None:
    """Install the learned thresholds, fold alpha into the synaptic weights (eq. 16), shorten the time window."""
    layer.pre_neuron.theta_base.copy_(theta_base)
    layer.pre_neuron.alpha.copy_(alpha)
    layer.weight.mul_(alpha)  # w_ji <- w_ji alpha_i: the same current from fewer spikes
    layer.window.fill_(max(1, time_window))


def optimize_time_steps(model: nn.Module, batches: list[torch.Tensor], config: STDPConfig | None = None) -> list[LayerReport]:
    """Stage 3 on every Synapsis of a spiking model (snn or snn-fused); returns the per-layer report."""
    config = config or STDPConfig()
    if getattr(model, "mode", None) not in ("snn", "snn-fused"):
        raise ValueError(f"stage 3 works on a converted SNN (mode snn or snn-fused), got mode {getattr(model, 'mode', None)!r}")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, Synapsis)}
    if not layers:
        raise ValueError("the model has no Synapsis layers (all linear layers kept float?)")
    inputs = _collect_inputs(model, layers, batches)
    reports = []
    for name, layer in tqdm(layers.items(), desc="stage 3", unit="layer", leave=False):
        x = inputs[name]
        time_window_before = int(layer.window)
        token, static = layer.pre.scales(x)
        scale = token if static is None else (token * static if token is not None else static)
        n0 = _hard_count((x / scale).abs(), layer.pre_neuron.theta_base, layer.pre_neuron.alpha, time_window_before)
        with torch.enable_grad():
            theta_base, alpha, stats = optimize_layer(layer, x, config)
        n1 = _hard_count((x / scale).abs(), theta_base, alpha, time_window_before)
        _apply(layer, theta_base, alpha, stats["max_count"])
        reports.append(
            LayerReport(
                name=name,
                time_window_before=time_window_before,
                time_window_after=int(layer.window),
                mean_alpha=float(alpha.mean()),
                output_error_before=0.0,
                output_error_after=stats["output_error"],
                spikes_per_token_before=float(n0.sum() / len(x)),
                spikes_per_token_after=float(n1.sum() / len(x)),
            )
        )
    return reports


def report_table(reports: list[LayerReport]) -> str:
    header = f"{'layer':<40} {'T before':>8} {'T after':>7} {'mean alpha':>10} {'out err':>8} {'spikes/tok before':>17} {'after':>9}"
    before, after = [r.time_window_before for r in reports], [r.time_window_after for r in reports]
    return ruled(header, [
        *(f"{r.name:<40} {r.time_window_before:>8} {r.time_window_after:>7} {r.mean_alpha:>10.3f} {r.output_error_after:>8.4f} "
          f"{r.spikes_per_token_before:>17.1f} {r.spikes_per_token_after:>9.1f}" for r in reports),
        f"mean T {sum(before) / len(before):.1f} -> {sum(after) / len(after):.1f}; max T {max(before)} -> {max(after)}",
    ])


def reports_as_dicts(reports: list[LayerReport]) -> list[dict]:
    return [asdict(r) for r in reports]


def mean_time_window(reports: list[LayerReport], after: bool) -> float:
    """The layers' mean time window (time steps their pre-synaptic neurons run) before or after stage 3."""
    values = [r.time_window_after if after else r.time_window_before for r in reports]
    return sum(values) / len(values) if values else math.nan
