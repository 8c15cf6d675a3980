"""``snnbench eval``: a suite through lm-eval for each execution mode of a model, with what it cost
(the pipeline: ``harness/evaluation/``; the run folder it writes: ``harness/evaluation/runner.py``)."""

from __future__ import annotations

import argparse

from harness.evaluation.options import EvalOptions

from .common import CODINGS, CommaSeparated, add_data_dir, add_device, add_energy_presets, add_out, say

DEFAULT = EvalOptions(model="")  # the flags' defaults are the options'


def add_parser(commands) -> None:
    p = commands.add_parser("eval", help="run a suite through lm-eval for each mode of a model, with energy and operation counts")
    p.add_argument("--model", required=True, help="registry name (smollm2-135m), checkpoint folder or .gguf file")
    p.add_argument("--modes", default=DEFAULT.modes, help="comma-separated execution modes: ann, qat, snn, snn-fused")
    p.add_argument("--suite", default=DEFAULT.suite, help="ppl, mmlu, bbh, arc, gsm8k, lambada, braintransformers, braingpt, demo")
    p.add_argument("--tasks", action=CommaSeparated, default=DEFAULT.tasks, help="explicit lm-eval tasks instead of a suite, comma-separated, each optionally task:shots")
    p.add_argument("--limit", type=int, default=DEFAULT.limit, help="documents per task (default: all)")
    p.add_argument("--seed", type=int, default=DEFAULT.seed, help="lm-eval's seeds (few-shot sampling, generation)")
    p.add_argument("--bits", type=int, default=DEFAULT.bits, help="bit width of the conversion to a spiking mode (2..16)")
    p.add_argument("--time-steps", type=int, default=DEFAULT.time_steps, help="time steps T (default: the largest the bit width allows, 2^(bits-1)-1)")
    p.add_argument("--granularity", default=DEFAULT.granularity, choices=["token", "smoothed", "channel", "tensor"],
                   help="activation scales of the conversion's linear layers and norms")
    p.add_argument("--coding", default=DEFAULT.coding, choices=CODINGS,
                   help="spike coding of the spiking modes: rate (T steps), bitwise (ceil(log2(T+1)) binary digits) or multilevel "
                        "(one graded spike); the same outputs, other spikes and time steps")
    p.add_argument("--snn-from", default=DEFAULT.snn_from, metavar="CHECKPOINT|auto",
                   help="the spiking modes come from this quantization-aware fine-tuning of --model (snnbench train --init ... /checkpoint) "
                        "instead of a calibrated conversion; auto: the best finished one at --bits in results/train, else the conversion")
    p.add_argument("--batch-size", type=int, default=DEFAULT.batch_size, help="sequences per forward")
    p.add_argument("--max-length", type=int, default=DEFAULT.max_length, help="context length (default: the model's)")
    add_device(p)
    p.add_argument("--max-gen-toks", type=int, default=DEFAULT.max_gen_toks, help="cap generated tokens per answer (a CPU budget; changes scores of long chain-of-thought tasks)")
    p.add_argument("--meters", default=DEFAULT.meters, help="auto, none, or a list of nvml,rapl,codecarbon")
    p.add_argument("--idle-seconds", type=float, default=DEFAULT.idle_seconds, help="seconds of idle power measured by the counter meters (NVML, RAPL) before the run; 0 skips it")
    add_energy_presets(p, DEFAULT.energy_presets)
    add_out(p, DEFAULT.out, "the run folder goes under it (--run-id)", old="--results")
    p.add_argument("--run-id", default=DEFAULT.run_id, help="run folder name under --out (default: the model, suite and modes plus a hash of the settings)")
    add_data_dir(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from harness.evaluation.runner import evaluate_run

    return evaluate_run(EvalOptions.from_namespace(args), say)[0]
