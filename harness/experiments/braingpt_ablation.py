"""``snnbench braingpt-ablate``: BrainGPT's architecture ablations and its figure 2 (section 4.4).

    snnbench braingpt-ablate                      # braingpt-tiny on Brown, about 50 minutes on 2 cores
    snnbench braingpt-ablate --max-steps 200 --variants braingpt ttt

Trains, with one ``[train]`` table (same corpus, tokenizer, steps, batches and seed), one model
per variant:

| variant           | model                                                        |
|-------------------|--------------------------------------------------------------|
| braingpt          | ``[model.braingpt]``: dual + MoESynapsis + selective embedding |
| single            | dual off: the token model alone                              |
| dense             | MoE off: TTT's dense SwiGLU MLPs                             |
| plain-embedding   | selective embedding off: one embedding matrix               |
| ttt               | ``[model.ttt]``: the original TTT-Linear                     |
| llama             | ``[model.llama]``: the tiny attention decoder, for reference |
| mamba2            | ``[model.mamba2]``: the tiny Mamba-2, for reference           |

Each run lives in ``<out>/runs/<variant>/`` (checkpoint, ``log.jsonl``, ``summary.json``, which
``snnbench report`` reads too); a re-run reuses finished runs with the same configuration and
resumes interrupted ones. Then, atomically: ``ablation.csv`` / ``ablation.md`` (test perplexity
on the corpus, parameters, training time, tokens/s, the POS model's tag accuracy on the test
split, synaptic operations per token) and ``convergence.csv`` (validation perplexity at every
evaluation step of every run, from its ``log.jsonl``: figure 2's curves), ``convergence.png``
and ``ablation.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from models.arch.braingpt import TAGGED_CORPORA, tag_accuracy
from models.train.config import load_config
from models.train.data import tag_streams, token_stream
from models.train.trainer import LOG, Trainer
from tasks.fetch import use_data_dir
from tasks.files import atomic_write_json, atomic_write_text

from ..energy import count_forwards, first_sequences
from ..report import plots
from ..report.render import to_markdown
from ..runs import git_commit, machine_info
from .braingpt_variants import VARIANTS


def _finished(out: Path, mode: str, config, fields: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a finished run of exactly this mode and configuration in ``out``, else None."""
    path = out / "summary.json"
    if not path.exists() or not (out / "extras.json").exists():
        return None
    summary = json.loads(path.read_text())
    model = summary.get("model", {})
    if summary.get("mode") != mode or summary.get("config") != config.to_dict() or any(model.get(k) != v for k, v in fields.items()):
        return None
    return summary


@dataclass
class BrainGPTAblation:
    """What ``snnbench braingpt-ablate`` made: the ablation table (and as markdown), figure 2 in numbers, where, how long."""

    table: pd.DataFrame
    table_markdown: str
    figure2: dict[str, Any] | None
    root: Path
    seconds: float


def _measure(trainer: Trainer, arch: str, data: str, eval_tokens: int) -> dict[str, Any]:
    """POS tag accuracy on the test split (dual models on a tagged corpus) and synaptic operations per token."""
    model, seq_len = trainer.model, trainer.config.seq_len
    accuracy = None
    if arch == "braingpt" and model.pos_model is not None and data in TAGGED_CORPORA:
        accuracy = tag_accuracy(model, tag_streams(trainer.tokenizer, data, "test"), seq_len, eval_tokens)
    test = token_stream(trainer.tokenizer, data, "test")
    model.eval()
    cost = count_forwards(model, [first_sequences(test, min(seq_len, len(test)))], device=trainer.device)
    return {"tag_accuracy": accuracy, "synops_per_token": cost.per_token("synops"), "float_ops_per_token": cost.per_token("float_ops")}


def convergence_table(logs: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """One row per evaluation step, one validation-perplexity column per run (blank where a run has none)."""
    frames = []
    for name, records in logs.items():
        rows = [(r["step"], r["tokens"], r["valid_perplexity"]) for r in records if r.get("valid_perplexity") is not None]
        frames.append(pd.DataFrame(rows, columns=["step", "tokens", name]).set_index(["step", "tokens"]))
    if not frames:
        return pd.DataFrame(columns=["step", "tokens"])
    return pd.concat(frames, axis=1).sort_index().reset_index()


def convergence_summary(table: pd.DataFrame, fast: str = "braingpt", slow: str = "ttt") -> dict[str, Any] | None:
    """Figure 2 in numbers: the first step at which ``fast`` reaches ``slow``'s final validation perplexity."""
    if fast not in table or slow not in table:
        return None
    slow_curve = table[["step", slow]].dropna()
    fast_curve = table[["step", fast]].dropna()
    if slow_curve.empty or fast_curve.empty:
        return None
    target_step, target = int(slow_curve["step"].iloc[-1]), float(slow_curve[slow].iloc[-1])
    reached = fast_curve[fast_curve[fast] <= target]
    step = int(reached["step"].iloc[0]) if len(reached) else None
    both = table[["step", fast, slow]].dropna()
    return {
        "target_perplexity": target,
        "target_step": target_step,
        "fast_reaches_target_at_step": step,
        "step_ratio": (target_step / step) if step else None,
        "fewer_steps": (1 - step / target_step) if step else None,
        "lower_at_every_evaluation": bool((both[fast] < both[slow]).all()) if len(both) else None,
        "final": {fast: float(fast_curve[fast].iloc[-1]), slow: target},
    }


def _base_config(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The shared ``[train]`` table with the flags' overrides: (TrainConfig of braingpt, the overrides every variant gets)."""
    overrides: dict[str, Any] = {"data": args.data, "max_steps": args.max_steps, "seed": args.seed, "eval_interval": args.eval_interval}
    base, _ = load_config(args.config, "braingpt", overrides)
    if base.warmup_steps >= base.max_steps:  # a short run (e.g. --max-steps 40) keeps a tenth of its steps for warm-up
        overrides["warmup_steps"] = base.max_steps // 10
        base, _ = load_config(args.config, "braingpt", overrides)
    return base, overrides


def _variant(args: argparse.Namespace, name: str, overrides: dict[str, Any], root: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Train ``name`` (or reuse its finished run); its folder, summary and extras."""
    arch, switches, what = VARIANTS[name]
    config, fields = load_config(args.config, arch, overrides)
    fields = {**fields, **switches}
    out = root / "runs" / name
    summary = None if args.fresh else _finished(out, args.mode, config, fields)
    if summary is None:
        trainer = Trainer(arch, args.mode, config, fields, out, device=args.device, name=name)
        say(f"[{name}] {what}: {trainer.model.num_parameters():,} parameters, {config.max_steps} steps on {config.data} -> {out}")
        trainer.run(fresh=args.fresh, progress=not args.quiet)
        atomic_write_json(out / "extras.json", _measure(trainer, arch, config.data, config.eval_tokens))
        summary = json.loads((out / "summary.json").read_text())
    else:
        say(f"[{name}] finished before ({out}); reused")
    say(f"[{name}] test perplexity {summary['test_perplexity']:.2f}, {summary['train_seconds']:.0f} s")
    return {"folder": str(out), "summary": summary, "extras": json.loads((out / "extras.json").read_text())}


def _row(name: str, run: dict[str, Any]) -> dict[str, Any]:
    """One variant's line of ``ablation.csv``."""
    summary, extras = run["summary"], run["extras"]
    model = summary["model"]
    return {
        "variant": name,
        "arch": VARIANTS[name][0],
        "dual": model.get("dual", False),
        "moe": model.get("moe", False),
        "selective_embedding": model.get("selective_embedding", False),
        **{k: summary[k] for k in ("mode", "parameters", "steps", "test_perplexity", "valid_perplexity")},
        "tag_accuracy": extras["tag_accuracy"],
        "synops_per_token": extras["synops_per_token"],
        "train_seconds": summary["train_seconds"],
        "tokens_per_second": summary["tokens_per_second"],
    }


def _markdown(args: argparse.Namespace, base: Any, table: pd.DataFrame, curves: pd.DataFrame, figure2: dict[str, Any] | None,
              caption: str | None) -> str:
    """``ablation.md``: the table, what its columns mean, figure 2's curves and what they say."""
    blocks: list[tuple[Any, ...]] = [
        ("h2", f"BrainGPT ablation on {base.data} ({args.mode}, {base.max_steps} steps of {base.batch_size} x {base.seq_len} tokens, seed {base.seed})"),
        ("table", table),
        ("p", f"Test perplexity: sliding windows of {base.seq_len} tokens, stride {base.eval_stride}, over the whole test split, <eos> counted. "
              "tag_accuracy: the POS model's next-tag predictions on the test split (known tags only). "
              "synops_per_token: Effective MACs + ACs per token on 4 test windows."),
        ("h2", "Convergence (figure 2): validation perplexity per evaluation step"),
        ("table", curves),
    ]
    if figure2:
        reached = figure2["fast_reaches_target_at_step"]
        blocks.append(("p", (
            f"TTT ends at validation perplexity {figure2['target_perplexity']:.2f} (step {figure2['target_step']}); "
            + (f"BrainGPT reaches it at step {reached}: {figure2['step_ratio']:.2f}x fewer steps ({100 * figure2['fewer_steps']:.1f}% fewer)."
               if reached else "BrainGPT does not reach it within the run.")
            + f" BrainGPT lower at every evaluation: {figure2['lower_at_every_evaluation']}."
        )))
    if caption:
        blocks.append(("figure", "convergence.png", caption))
    return to_markdown(blocks)


def run_braingpt_ablation(args: argparse.Namespace, say: Callable[[str], None]) -> BrainGPTAblation:
    """Train (or reuse) every variant, then write the tables, figure 2 and ``ablation.json``; progress to ``say``."""
    use_data_dir(args.data_dir)
    started = time.perf_counter()
    names = args.variants or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants has unknown names {unknown}; known: {', '.join(VARIANTS)}")
    base, overrides = _base_config(args)
    root = Path(args.out)
    runs = {name: _variant(args, name, overrides, root, say) for name in names}
    rows = [_row(name, run) for name, run in runs.items()]
    logs = {name: [json.loads(line) for line in (Path(run["folder"]) / LOG).read_text().splitlines() if line.strip()] for name, run in runs.items()}
    table = pd.DataFrame(rows)
    curves = convergence_table(logs)
    figure2 = convergence_summary(curves)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "ablation.csv", table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(root / "convergence.csv", curves.to_csv(index=False, float_format="%.6g"))
    caption = plots.convergence({n: pd.DataFrame(log) for n, log in logs.items()}, root / "convergence.png")
    atomic_write_text(root / "ablation.md", _markdown(args, base, table, curves, figure2, caption))
    atomic_write_json(root / "ablation.json", {
        "config": args.config, "train": base.to_dict(), "mode": args.mode,
        "variants": {n: VARIANTS[n][2] for n in names}, "rows": rows, "convergence": figure2, "runs": runs,
        "seconds": time.perf_counter() - started, "machine": machine_info(), "commit": git_commit(),
    })
    return BrainGPTAblation(table, to_markdown([("table", table)]), figure2, root, time.perf_counter() - started)
