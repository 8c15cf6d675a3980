"""``snnbench verify``: check the spiking core's exactness claims on random and adversarial inputs.

It measures, and prints:
- the EI-IF neuron against the quantizer it replaces (mismatches must be 0) and against the
  paper's literal quantizer (torch.round, [-128, 127]: mismatches expected, the DESIGN trap);
- QSynapsis against Synapsis on both paths (max |difference| must be 0);
- every spiking operator's time-stepped path against its closed form, outputs and counters;
- SNNSiLU's fitted approximation error against SiLU on [-8, 8] for several T.
The figures are also written to a JSON file (``Verification.as_dict``); the command prints them
and exits with 1 if any exactness check fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.spiking import (
    EIIFNeuron,
    OpCounter,
    QSynapsis,
    QuantSpec,
    SNNMatmul,
    SNNRMSNorm,
    SNNSiLU,
    SNNSoftmax,
    SpikingSigmoid,
    Synapsis,
    fit_snn_silu,
    naive_quantize,
    quantize_counts,
)
from tasks.files import check_writable

MAX_TIME_STEPS = 127  # the operator checks run at 8 bits


@dataclass
class Check:
    name: str
    detail: str
    max_abs_diff: float
    counters_equal: bool | None
    expect_exact: bool = True

    @property
    def passed(self) -> bool:
        if not self.expect_exact:
            return self.max_abs_diff > 0
        return self.max_abs_diff == 0 and self.counters_equal is not False


def _tie_heavy_values(generator: torch.Generator, n: int = 4096) -> torch.Tensor:
    """Uniform values, exact ties k + 0.5, one ulp either side of them, and values beyond T."""
    k = torch.randint(-140, 141, (n,), generator=generator).float()
    ties = k + 0.5
    return torch.cat([
        torch.empty(n).uniform_(-140, 140, generator=generator),
        ties,
        torch.nextafter(ties, ties + 1),
        torch.nextafter(ties, ties - 1),
    ])


def _neuron_checks(generator: torch.Generator) -> list[Check]:
    x = _tie_heavy_values(generator)
    checks = []
    for T in (1, 8, 127):
        spikes = EIIFNeuron().run_constant(x, T).sum(0)
        diff = (spikes - quantize_counts(x, T)).abs().max().item()
        checks.append(Check("EI-IF neuron vs quantizer", f"T={T}, {x.numel()} values incl. ties", diff, None))
    neuron = EIIFNeuron().run_constant(x, 127).sum(0)
    naive = naive_quantize(x, 1.0, bits=8)
    mismatches = int((neuron != naive).sum())
    checks.append(
        Check(
            "EI-IF neuron vs torch.round/[-128,127]",
            f"T=127: {mismatches} of {x.numel()} values differ (expected: not lossless)",
            (neuron - naive).abs().max().item(),
            None,
            expect_exact=False,
        )
    )
    return checks


def _compare(make: Callable[[str], torch.nn.Module], inputs: tuple[torch.Tensor, ...], paths: tuple[str, str]) -> tuple[float, bool]:
    outs, totals = [], []
    for path in paths:
        op = make(path)
        with OpCounter() as counter, torch.no_grad():
            outs.append(op(*inputs))
        totals.append(counter.total())
    return (outs[0] - outs[1]).abs().max().item(), totals[0] == totals[1]


def _synapsis_checks(generator: torch.Generator, T: int) -> list[Check]:
    checks = []
    x = torch.randn(4, 16, 64, generator=generator) * 3
    for bits in (4, 8):
        spec = QuantSpec(bits=bits, time_steps=min(T, 2 ** (bits - 1) - 1))
        torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        q = QSynapsis(64, 48, pre=spec, post=spec)
        with torch.no_grad():
            reference = q(x)
        for path in ("snn-fused", "snn"):
            got = Synapsis.from_qsynapsis(q, path)(x)
            checks.append(Check("QSynapsis vs Synapsis", f"bits={bits}, T={spec.T}, path={path}", (got - reference).abs().max().item(), None))
        diff, same = _compare(lambda p: Synapsis.from_qsynapsis(q, p), (x,), ("snn", "snn-fused"))
        checks.append(Check("Synapsis snn vs snn-fused", f"bits={bits}, T={spec.T}, {q.in_features}->{q.out_features}", diff, same))
    return checks


def _operator_checks(generator: torch.Generator, T: int) -> list[Check]:
    spec = QuantSpec(time_steps=T)
    a = torch.randn(2, 4, 12, 16, generator=generator) * 2
    b = torch.randn(2, 4, 16, 12, generator=generator) * 2
    x = torch.randn(4, 12, 32, generator=generator) * 4
    norm_weight = torch.rand(32, generator=generator) + 0.5

    def rmsnorm(mode: str) -> SNNRMSNorm:
        op = SNNRMSNorm(32, input_spec=spec, mode=mode)
        with torch.no_grad():
            op.weight.copy_(norm_weight)
        return op

    cases = [
        ("SNNMatmul (B.1)", "activation x activation", lambda p: SNNMatmul(spec, spec, mode=p), (a, b)),
        ("SNNSoftmax (B.3)", "spike-coded input", lambda p: SNNSoftmax(input_spec=spec, mode=p), (x,)),
        ("Spiking sigmoid (B.2.1)", "spike-coded input", lambda p: SpikingSigmoid(input_spec=spec, mode=p), (x,)),
        ("SNNRMSNorm (B.4)", "spike-coded input", rmsnorm, (x,)),
        ("SNNSiLU (B.2.2)", "fitted neurons", lambda p: SNNSiLU(T, 8.0, mode=p), (x,)),
    ]
    checks = []
    for name, detail, make, inputs in cases:
        diff, same = _compare(make, inputs, ("snn", "snn-fused"))
        checks.append(Check(f"{name} snn vs snn-fused", f"T={T}, {detail}", diff, same))
    return checks


def silu_errors(time_steps: tuple[int, ...] = (15, 31, 63, 127), x_max: float = 8.0) -> list[dict[str, float]]:
    """Max and mean |SNNSiLU - SiLU| on [-x_max, x_max] for each T."""
    rows = []
    for T in time_steps:
        fit = fit_snn_silu(T, x_max)
        rows.append({"time_steps": T, "x_max": x_max, "max_abs_error": fit.max_abs_error, "mean_abs_error": fit.mean_abs_error})
    return rows


def check_arguments(time_steps: int, out: str | Path) -> Path:
    """One-line errors, before any check runs: T beyond 8 bits, an ``out`` folder that cannot be written (a JSON file
    name, the old form, says to give its folder). Returns the file the figures go to, ``<out>/verify.json``."""
    if not 1 <= time_steps <= MAX_TIME_STEPS:
        raise ValueError(f"--time-steps must be in 1..{MAX_TIME_STEPS} for the 8-bit checks, got {time_steps}")
    if Path(out).suffix == ".json":
        raise ValueError(f"--out {out}: --out is the folder verify.json goes to; give --out {Path(out).parent}")
    return check_writable(out, "--out") / "verify.json"


@dataclass
class Verification:
    """The figures of one ``snnbench verify``: the exactness checks, SNNSiLU's error per T, the seconds it took."""

    seed: int
    time_steps: int
    checks: list[Check]
    silu: list[dict[str, float]]
    seconds: float

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def as_dict(self) -> dict:
        checks = [{"name": c.name, "detail": c.detail, "max_abs_diff": c.max_abs_diff, "counters_equal": c.counters_equal, "passed": c.passed}
                  for c in self.checks]
        return {"seed": self.seed, "time_steps": self.time_steps, "checks": checks, "silu_error": self.silu, "seconds": self.seconds}


def run_checks(time_steps: int = 127, seed: int = 0) -> Verification:
    """Every check at ``time_steps`` (the arguments checked first, see ``check_arguments``) and SNNSiLU's error."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    checks = _neuron_checks(generator) + _synapsis_checks(generator, time_steps) + _operator_checks(generator, time_steps)
    silu = silu_errors(tuple(sorted({15, 31, 63, 127, time_steps})))
    return Verification(seed, time_steps, checks, silu, time.perf_counter() - started)
