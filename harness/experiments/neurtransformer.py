"""``snnbench neurtransformer``: NeurTransformer end to end (Balaji, Madireddy, Balaprakash 2025), at a size a CPU trains.

For each GPT-2 size of a config file:

(a) train the float GPT-2 on the corpus from scratch (the stage-1 ``Trainer``; no pretrained
    GPT-2 weights are reachable here);
(b) convert it through the shared stage 2 (``models.convert.convert``): the same weights with every
    self-attention block replaced by spike-based self-attention (GPT-2's ``attention="ssa"``,
    ``models/spiking/ssa.py``, its spike values calibrated on the float attention's activations)
    and the rest swapped to spiking operators (Synapsis, SNNGELU, SNNLayerNorm, 8-bit EI-IF coding);
(c) fine-tune the SSA blocks with surrogate gradients (``models.train.surrogate``);
(d) report the paper's measures on the test split (limited tokens): cosine similarity of the
    last hidden states (ln_f output) and of the logits, top-1 next-token agreement and accuracy
    against the data, perplexity ANN vs SNN, and the estimated energy of the SSA blocks vs the
    float attention (ASA) blocks counted on the same text under a 45 nm preset.

Writes ``<out>/<size>/`` (the float model's checkpoint, ``finetune.jsonl``, ``result.json``) and
the table (``neurtransformer_table.py``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.arch.gpt2 import GPT2ForCausalLM
from models.arch.spiking_config import SpikingConfig
from models.convert import convert, swap_mode
from models.fields import check_fields
from models.spiking.counters import OpCounter, OpStats
from models.spiking.surrogate import SURROGATES
from models.train.config import TrainConfig, load_config, read_toml, table_config
from models.train.data import global_batch, token_stream
from models.train.surrogate import FinetuneConfig, finetune_ssa
from models.train.trainer import Trainer
from tasks.files import atomic_write_json

from ..energy.counting import OpCost, price
from ..energy.synops import load_presets
from ..runs import read_json
from .neurtransformer_table import table_notes, write_table


@dataclass(frozen=True)
class NeurTransformerConfig(FinetuneConfig):
    """The ``[neurtransformer]`` table: the fine-tuning settings (``FinetuneConfig``), conversion and evaluation."""

    bits: int = 8  # the converted feed-forward part (Synapsis, SNNGELU, SNNLayerNorm)
    ssa_time_steps: int = 8
    surrogate: str = "atan"
    alpha: float | None = None
    ssa_normalize: bool = False
    calibration_batches: int = 4
    calibration_quantile: float = 0.999
    eval_tokens: int = 8192
    energy_windows: int = 4
    energy_preset: str = "45nm-fp32"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, positive_int=("bits", "ssa_time_steps", "calibration_batches", "eval_tokens", "energy_windows"), choices={"surrogate": SURROGATES})
        if not 0.5 <= self.calibration_quantile <= 1:
            raise ValueError(f"calibration_quantile must be in [0.5, 1], got {self.calibration_quantile}")


@dataclass
class SizeSpec:
    name: str
    train: TrainConfig
    model: dict[str, Any]


def load_neurtransformer_config(
    name_or_path: str, train_overrides: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None, sizes: list[str] | None = None
) -> tuple[NeurTransformerConfig, list[SizeSpec]]:
    """The [neurtransformer] settings and, per [model.NAME] table, its training config and model fields."""
    path, data = read_toml(name_or_path)
    config = table_config(NeurTransformerConfig, data, "neurtransformer", path, overrides)
    names = list(data.get("model", {}))
    if sizes:
        missing = [s for s in sizes if s not in names]
        if missing:
            raise ValueError(f"sizes {missing} are not in {path}; it has {', '.join(names)}")
        names = [n for n in names if n in sizes]
    if not names:
        raise ValueError(f"{path}: has no [model.NAME] tables")
    train_overrides = dict(train_overrides or {})
    steps = train_overrides.get("max_steps")
    if steps is not None:  # keep the warm-up inside a shortened run
        train_overrides.setdefault("warmup_steps", min(int(data.get("train", {}).get("warmup_steps", 0)), max(0, steps // 10)))
    return config, [SizeSpec(name, *load_config(str(path), name, train_overrides)) for name in names]


# ---------------------------------------------------------------- measures


@torch.no_grad()
def compare(ann: GPT2ForCausalLM, snn: GPT2ForCausalLM, windows: torch.Tensor, batch_size: int = 8) -> dict[str, float]:
    """Paper measures on ``windows`` (N, L) of test text: perplexities, cosine similarities, top-1 agreement and accuracies."""
    totals = {"nll_ann": 0.0, "nll_snn": 0.0, "cos_hidden": 0.0, "cos_logits": 0.0, "agree": 0, "acc_ann": 0, "acc_snn": 0}
    tokens = 0
    positions = 0
    for start in range(0, len(windows), batch_size):
        x = windows[start : start + batch_size]
        la, ha, _ = ann.forward_hidden(x)
        ls, hs, _ = snn.forward_hidden(x)
        totals["cos_hidden"] += float(F.cosine_similarity(hs[-1], ha[-1], dim=-1).sum())
        totals["cos_logits"] += float(F.cosine_similarity(ls, la, dim=-1).sum())
        positions += x.numel()
        target = x[:, 1:]
        pa, ps = la[:, :-1], ls[:, :-1]
        totals["nll_ann"] -= float(torch.log_softmax(pa, -1).gather(-1, target[..., None]).sum())
        totals["nll_snn"] -= float(torch.log_softmax(ps, -1).gather(-1, target[..., None]).sum())
        totals["agree"] += int((pa.argmax(-1) == ps.argmax(-1)).sum())
        totals["acc_ann"] += int((pa.argmax(-1) == target).sum())
        totals["acc_snn"] += int((ps.argmax(-1) == target).sum())
        tokens += target.numel()
    return {
        "ppl_ann": math.exp(totals["nll_ann"] / tokens),
        "ppl_snn": math.exp(totals["nll_snn"] / tokens),
        "cos_hidden": totals["cos_hidden"] / positions,
        "cos_logits": totals["cos_logits"] / positions,
        "top1_agreement": totals["agree"] / tokens,
        "acc_ann": totals["acc_ann"] / tokens,
        "acc_snn": totals["acc_snn"] / tokens,
        "scored_tokens": tokens,
    }


def attention_costs(model: GPT2ForCausalLM, windows: torch.Tensor, presets: tuple = ()) -> tuple[OpCost, OpCost]:
    """(the attention blocks' cost, the whole model's cost): operations counted on ``windows``, priced under ``presets``."""
    inside = {id(m) for block in model.attention_blocks() for m in block.modules()}
    paths = {path for path, m in model.named_modules() if id(m) in inside}
    with OpCounter(model) as counter, torch.no_grad():
        model(windows)
    attention = sum((stats for name, stats in counter.totals.items() if name in paths), OpStats())
    return price(attention, windows.numel(), presets), price(counter.total(), windows.numel(), presets)


def energy_comparison(ann: GPT2ForCausalLM, snn: GPT2ForCausalLM, windows: torch.Tensor, preset_names: tuple[str, ...]) -> dict[str, Any]:
    """Estimated energy of the ASA blocks (float model) and SSA blocks (SNN) on the same text, per preset."""
    known = load_presets()
    unknown = [name for name in preset_names if name not in known]
    if unknown:
        raise ValueError(f"unknown energy preset {unknown[0]!r}; known: {', '.join(known)}")
    presets = tuple(known[name] for name in preset_names)
    asa, ann_total = attention_costs(ann, windows, presets)
    ssa, snn_total = attention_costs(snn, windows, presets)
    tokens = asa.tokens
    out: dict[str, Any] = {"tokens": tokens, "asa_ops": asa.ops.as_dict(), "ssa_ops": ssa.ops.as_dict(), "presets": {}}
    for i, p in enumerate(presets):
        e_asa, e_ssa = asa.estimates[i], ssa.estimates[i]
        out["presets"][p.name] = {
            "asa_joules_per_token": e_asa.joules / tokens,
            "ssa_joules_per_token": e_ssa.joules / tokens,
            "reduction": 1 - e_ssa.joules / e_asa.joules if e_asa.joules else math.nan,
            "asa": e_asa.as_dict(),
            "ssa": e_ssa.as_dict(),
            "ann_model_joules_per_token": ann_total.estimates[i].joules / tokens,
            "snn_model_joules_per_token": snn_total.estimates[i].joules / tokens,
            "citation": p.citation,
            "kind": "estimated",
        }
    return out


# ---------------------------------------------------------------- one size, end to end


def _finetune_log(path: Path, name: str, every: int, say: Callable[[str], None]) -> tuple[Any, Callable[[dict[str, Any]], None]]:
    """An open JSONL file for the fine-tuning records and a logger writing each record there (every ``every``-th to ``say``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w", encoding="utf-8")

    def log(record: dict[str, Any]) -> None:
        handle.write(json.dumps(record) + "\n")
        if record["step"] % every == 0:
            say(f"{name}:     step {record['step']}: loss {record['loss']:.3f} (ce {record['ce']:.3f}, hidden {record['hidden_mse']:.3f})")

    return handle, log


def run_size(
    spec: SizeSpec,
    config: NeurTransformerConfig,
    out: Path,
    device: str = "cpu",
    fresh: bool = False,
    progress: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Steps (a)-(d) for one size; writes ``out/<size>/`` (ANN checkpoint, fine-tuning log, result.json)."""
    folder = out / spec.name
    result_path = folder / "result.json"
    if result_path.exists() and not fresh:
        say(f"{spec.name}: reusing {result_path} (--fresh to redo)")
        return read_json(result_path)
    started = time.perf_counter()
    trainer = Trainer("gpt2", "ann", spec.train, spec.model, folder / "ann", device=device, name=f"neurtransformer-{spec.name}")
    ann = trainer.model
    say(f"{spec.name}: (a) training the float GPT-2 ({ann.num_parameters():,} parameters, {spec.train.max_steps} steps) on {spec.train.data}")
    trained = trainer.run(fresh=fresh, progress=progress)
    train_seconds = time.perf_counter() - started
    ann.eval()
    seq_len, train_stream = spec.train.seq_len, trainer.train_stream
    calibration = [global_batch(train_stream, seq_len, 8, config.seed + 1000, i)[:, :-1] for i in range(config.calibration_batches)]
    test = token_stream(trainer.tokenizer, spec.train.data, "test")
    n_windows = max(1, min(config.eval_tokens, len(test)) // seq_len)
    windows = test[: n_windows * seq_len].view(n_windows, seq_len).to(ann.lm_head.weight.device)

    say(f"{spec.name}: (b) SSA in, feed-forward converted ({config.bits}-bit), SSA calibrated on {sum(b.numel() for b in calibration):,} tokens")
    t0 = time.perf_counter()
    ssa = replace(ann.config, attention="ssa", ssa_time_steps=config.ssa_time_steps, ssa_surrogate=config.surrogate, ssa_alpha=config.alpha,
                  ssa_normalize=config.ssa_normalize)
    conversion = convert(ann, calibration, SpikingConfig(bits=config.bits), config=ssa, quantile=config.calibration_quantile)
    snn_qat = conversion.qat
    before = compare(ann, conversion.snn, windows)
    say(f"{spec.name}:     before fine-tuning: ppl SNN {before['ppl_snn']:.1f} (ANN {before['ppl_ann']:.1f}), cos {before['cos_hidden']:.3f}")
    say(f"{spec.name}: (c) fine-tuning the SSA blocks ({sum(p.numel() for p in snn_qat.ssa_parameters()):,} parameters) "
        f"for {config.finetune_steps} steps, surrogate {config.surrogate}")
    handle, log = _finetune_log(folder / "finetune.jsonl", spec.name, max(1, config.finetune_steps // 5), say)
    with handle:
        history = finetune_ssa(snn_qat, ann, train_stream, seq_len, config, log)
    finetune_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    snn = swap_mode(snn_qat, snn_qat.spiking.with_mode("snn-fused"))
    after = compare(ann, snn, windows)
    with torch.no_grad():
        probe = windows[:2]
        snn_equals_qat = bool(torch.equal(snn(probe)[0], snn_qat(probe)[0]))
    energy = energy_comparison(ann, snn, windows[: config.energy_windows], tuple(dict.fromkeys([config.energy_preset, "45nm-int8"])))
    eval_seconds = time.perf_counter() - t0
    main = energy["presets"][config.energy_preset]
    result = {
        "size": spec.name,
        "layers": ann.config.num_hidden_layers,
        "hidden_size": ann.config.hidden_size,
        "heads": ann.config.num_attention_heads,
        "parameters": ann.num_parameters(),
        "ssa_parameters": sum(p.numel() for p in snn.ssa_parameters()),
        "train_steps": trained.steps,
        "finetune_steps": config.finetune_steps,
        "ssa_time_steps": config.ssa_time_steps,
        "surrogate": config.surrogate,
        "bits": config.bits,
        "before_finetuning": before,
        "after_finetuning": after,
        "snn_equals_qat": snn_equals_qat,
        "energy": energy,
        "energy_preset": config.energy_preset,
        "asa_nj_per_token": main["asa_joules_per_token"] * 1e9,
        "ssa_nj_per_token": main["ssa_joules_per_token"] * 1e9,
        "energy_reduction": main["reduction"],
        "finetune_loss": {"first": history[0]["loss"] if history else None, "last": history[-1]["loss"] if history else None},
        "seconds": {"train": train_seconds, "finetune": finetune_seconds, "evaluate": eval_seconds},
        "config": asdict(config),
        "train_config": spec.train.to_dict(),
        "model": ann.config.to_dict(),
    }
    atomic_write_json(result_path, result)
    say(f"{spec.name}: ppl ANN {after['ppl_ann']:.1f} SNN {after['ppl_snn']:.1f}, cos {after['cos_hidden']:.3f}, "
        f"top-1 agreement {after['top1_agreement']:.3f}, SSA energy {100 * main['reduction']:.1f}% below ASA ({config.energy_preset})")
    return result


def run_neurtransformer(
    config_name: str,
    out: Path,
    train_overrides: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    sizes: list[str] | None = None,
    device: str = "cpu",
    fresh: bool = False,
    progress: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every size of the config, then the table; returns {'results', 'paths', 'seconds'}."""
    started = time.perf_counter()
    config, specs = load_neurtransformer_config(config_name, train_overrides, overrides, sizes)
    torch.manual_seed(config.seed)
    results = [run_size(spec, config, Path(out), device, fresh, progress, say) for spec in specs]
    paths = write_table(results, Path(out), table_notes(config, specs))
    return {"results": results, "paths": paths, "seconds": time.perf_counter() - started}
