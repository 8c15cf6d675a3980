"""Benchmark 4: what instrumentation costs (op counters and the per-forward energy meters of ``snnbench eval``)."""

from __future__ import annotations

from harness.energy import EnergyMeter, EnergyReading, price
from harness.evaluation.accounting import Accounting
from harness.evaluation.plan import energy_setup
from models.spiking import counters

from .table import Goal, Row, Side
from .timing import paired_ratios, paired_times, summarize, timed
from .workload import Context


class _KeepOpen:
    """A meter whose close() is deferred, so one meter serves many Accounting objects."""

    def __init__(self, meter: EnergyMeter) -> None:
        self.meter = meter
        self.name, self.kind = meter.name, meter.kind

    def start(self) -> None:
        self.meter.start()

    def stop(self) -> EnergyReading:
        return self.meter.stop()

    def close(self) -> None:
        pass


def instrumentation_overhead(ctx: Context) -> list[Row]:
    """4: the adapter with op counters and the per-forward meters on, against the same adapter with neither."""
    per_forward, per_task, presets, meter_notes = energy_setup("auto", "cpu", "45nm-fp32,45nm-int8", None)
    rows = []
    reqs = ctx.requests()["arc"]
    try:
        for suffix, mode in (("a", "ann"), ("b", "snn-fused")):
            lm = ctx.adapter(mode)
            plain = lm.accounting
            tokens = ctx.request_tokens(lm, "arc")

            def on() -> None:
                accounting = Accounting(lm.model, meters=[_KeepOpen(m) for m in per_forward], count_ops=True)
                lm.accounting = accounting
                try:
                    lm.loglikelihood(reqs, disable_tqdm=True)
                    total = accounting.totals()
                    price(total.ops, total.tokens, presets)
                finally:
                    accounting.close()
                    lm.accounting = plain

            def off() -> None:
                if counters.counting():
                    raise RuntimeError("an op counter is still active; the uninstrumented side would count")
                lm.loglikelihood(reqs, disable_tqdm=True)

            t_on, t_off = paired_times(timed(on), timed(off), ctx.repeats)
            row = Row(f"4{suffix}", f"instrumentation overhead, adapter {mode}, ARC-like loglikelihood",
                      Side("counters + meters", "tok/s", summarize([tokens / t for t in t_on])),
                      Side("plain", "tok/s", summarize([tokens / t for t in t_off])),
                      summarize(paired_ratios(t_on, t_off)), "overhead", "time on / off - 1",
                      Goal("<=", 1.05, "<= +5%") if mode == "ann" else Goal("<=", 1.10, "<= +10%"))
            meters = ", ".join(m.source for m in per_forward) or "none usable here"
            row.notes.append(f"per-batch meters: {meters}; op counters on; estimates under {len(presets)} presets")
            rows.append(row)
        for meter in per_task:
            seconds = timed(lambda: (meter.start(), meter.stop()))()
            rows[0].notes.append(f"per-task meter {meter.name} (read once per task by snnbench eval, not per batch): "
                                 f"{seconds:.2f} s fixed cost per task, not in the ratio")
        for note in meter_notes:
            rows[0].notes.append(f"meter not usable: {note}")
    finally:
        for meter in per_forward + per_task:
            meter.close()
    return rows
