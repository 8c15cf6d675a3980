"""NeurTransformer end to end (Balaji, Madireddy, Balaprakash 2025), at a size a CPU trains.

For each GPT-2 size of a config file:

(a) train the float GPT-2 on the corpus from scratch (the stage-1 ``Trainer``; no pretrained
    GPT-2 weights are reachable here);
(b) replace every self-attention block by spike-based self-attention (SSA,
    ``models/spiking/ssa.py``) and convert the rest to its SNN equivalent by the normal operator
    swap (linears -> Synapsis, GELU -> SNNGELU, LayerNorm -> SNNLayerNorm, 8-bit EI-IF coding);
    the SSA thresholds and scales are calibrated on the float model's activations;
(c) fine-tune the SSA blocks only, with surrogate gradients (``models/spiking/surrogate.py``),
    against the float model's hidden states (every block's output, normalized MSE) plus the
    language-modelling loss; the converted rest runs in ``qat`` mode, which computes exactly
    what ``snn-fused`` computes and passes straight-through gradients to earlier SSA blocks;
(d) report the paper's measures on the test split (limited tokens): cosine similarity of the
    last hidden states (ln_f output) and of the logits, top-1 next-token agreement and accuracy
    against the data, perplexity ANN vs SNN, and the estimated energy of the SSA blocks vs the
    float attention (ASA) blocks counted on the same text under a 45 nm preset.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.arch.gpt2 import GPT2ForCausalLM
from models.arch.spiking_config import SpikingConfig
from models.spiking.counters import OpCounter, OpStats
from models.spiking.ssa import SpikingSelfAttention
from models.spiking.surrogate import SURROGATES

from .config import TrainConfig, config_path, load_config

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class NeurTransformerConfig:
    """The ``[neurtransformer]`` table: conversion, fine-tuning and evaluation settings."""

    bits: int = 8  # the converted feed-forward part (Synapsis, SNNGELU, SNNLayerNorm)
    ssa_time_steps: int = 8
    surrogate: str = "atan"
    alpha: float | None = None
    ssa_normalize: bool = False
    calibration_batches: int = 4
    calibration_quantile: float = 0.999
    finetune_steps: int = 300
    finetune_lr: float = 2e-3
    finetune_batch_size: int = 16
    hidden_weight: float = 1.0
    lm_weight: float = 1.0
    eval_tokens: int = 8192
    energy_windows: int = 4
    energy_preset: str = "45nm-fp32"
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("bits", "ssa_time_steps", "calibration_batches", "finetune_batch_size", "eval_tokens", "energy_windows"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.finetune_steps, int) or self.finetune_steps < 0:
            raise ValueError(f"finetune_steps must be an integer >= 0, got {self.finetune_steps!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {', '.join(SURROGATES)}, got {self.surrogate!r}")
        for name in ("finetune_lr", "hidden_weight", "lm_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
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
    path = config_path(name_or_path)
    if not path.exists():
        raise ValueError(f"no config {name_or_path!r} ({path} does not exist)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    table = dict(data.get("neurtransformer", {}))
    unknown = sorted(set(table) - {f.name for f in fields(NeurTransformerConfig)})
    if unknown:
        raise ValueError(f"{path}: [neurtransformer] has unknown keys {unknown}")
    table.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        config = NeurTransformerConfig(**table)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None
    names = list(data.get("model", {}))
    if sizes:
        missing = [s for s in sizes if s not in names]
        if missing:
            raise ValueError(f"sizes {missing} are not in {path}; it has {', '.join(names)}")
        names = [n for n in names if n in sizes]
    if not names:
        raise ValueError(f"{path}: has no [model.NAME] tables")
    specs = []
    for name in names:
        train_overrides = dict(train_overrides or {})
        steps = train_overrides.get("max_steps")
        if steps is not None:  # keep the warm-up inside a shortened run
            base = tomllib.loads(path.read_text(encoding="utf-8")).get("train", {})
            train_overrides.setdefault("warmup_steps", min(int(base.get("warmup_steps", 0)), max(0, steps // 10)))
        train, model = load_config(str(path), name, train_overrides)
        specs.append(SizeSpec(name, train, model))
    return config, specs


# ---------------------------------------------------------------- conversion


def causal_mask(length: int) -> torch.Tensor:
    """(1, 1, L, L) causal mask for unpadded windows."""
    index = torch.arange(length)
    return (index[None, :] <= index[:, None])[None, None]


@torch.no_grad()
def gelu_ranges(ann: GPT2ForCausalLM, batches: list[torch.Tensor], margin: float = 1.05, floor: float = 1.0) -> dict[int, float]:
    """Per-layer SNNGELU input range: the largest |x| the float model's GELU sees on ``batches``, with a margin."""
    seen: dict[int, float] = {}
    hooks = []
    for i, block in enumerate(ann.transformer.h):
        def hook(module, args, i=i):
            seen[i] = max(seen.get(i, 0.0), float(args[0].abs().max()))

        hooks.append(block.mlp.act.register_forward_pre_hook(hook))
    try:
        for ids in batches:
            ann(ids)
    finally:
        for h in hooks:
            h.remove()
    return {i: max(floor, v * margin) for i, v in seen.items()}


def convert_to_ssa(ann: GPT2ForCausalLM, batches: list[torch.Tensor], config: NeurTransformerConfig, mode: str = "qat") -> GPT2ForCausalLM:
    """Steps (1)-(2): the same weights with SSA attention and the converted rest in ``mode``; SSA calibrated on ``batches``."""
    if ann.mode != "ann" or ann.config.attention != "softmax":
        raise ValueError("convert_to_ssa needs the float GPT-2 (mode ann, softmax attention)")
    model_config = type(ann.config)(**{
        **{f.name: getattr(ann.config, f.name) for f in fields(ann.config)},
        "attention": "ssa", "ssa_time_steps": config.ssa_time_steps, "ssa_surrogate": config.surrogate,
        "ssa_alpha": config.alpha, "ssa_normalize": config.ssa_normalize,
    })
    spiking = SpikingConfig(mode=mode, bits=config.bits, gelu_x_max_per_layer=gelu_ranges(ann, batches))
    snn = GPT2ForCausalLM(model_config, spiking, init_weights=False)
    missing, unexpected = snn.load_state_dict(ann.state_dict(), strict=False)
    ssa_state = (".log_theta_q", ".log_theta_k", ".log_theta_v", ".log_theta_o", ".log_scale")
    from models.load import SPIKING_STATE

    bad = [k for k in missing if not k.endswith(SPIKING_STATE + ssa_state)] + list(unexpected)
    if bad:
        raise ValueError(f"the float model's weights do not fit the SSA model: {bad[:4]}")
    snn = snn.to(next(ann.parameters()).device)
    calibrate_ssa(snn, ann, batches, config.calibration_quantile)
    return snn


@torch.no_grad()
def calibrate_ssa(snn: GPT2ForCausalLM, ann: GPT2ForCausalLM, batches: list[torch.Tensor], quantile: float = 0.999) -> None:
    """Set every SSA block's spike values and scale from the float attention's activations on the same text.

    theta_q, theta_k (per head) and theta_v (per channel) = the ``quantile`` of |Q|, |K|, |V| / T, so a
    neuron's T spikes cover its value range; s_h = rms(float attention output) / rms(SSA product) per
    head; theta_o (per channel) = the quantile of the float attention output / T. Layer by layer,
    each SSA block seeing its own (already converted) inputs.
    """
    ids = torch.cat(batches)
    L = ids.shape[1]
    mask = causal_mask(L).to(ids.device)
    float_acts: dict[int, dict[str, torch.Tensor]] = {}
    hooks = []
    for i, block in enumerate(ann.transformer.h):
        acts = float_acts.setdefault(i, {})
        hooks.append(block.attn.c_attn.register_forward_hook(lambda m, a, out, acts=acts: acts.__setitem__("qkv", out)))
        hooks.append(block.attn.c_proj.register_forward_pre_hook(lambda m, a, acts=acts: acts.__setitem__("o", a[0])))
    try:
        ann(ids)
    finally:
        for h in hooks:
            h.remove()

    for i, block in enumerate(snn.transformer.h):
        ssa: SpikingSelfAttention = block.attn
        T, H, d, D = ssa.T, ssa.num_heads, ssa.head_dim, ssa.hidden_size
        qkv, o = float_acts[i]["qkv"], float_acts[i]["o"]
        q, k, v = qkv.split(D, dim=-1)
        per_head = lambda t: torch.quantile(t.abs().reshape(-1, H, d).transpose(0, 1).reshape(H, -1).float(), quantile, dim=1)  # noqa: E731
        per_channel = lambda t: torch.quantile(t.abs().reshape(-1, D).float(), quantile, dim=0)  # noqa: E731
        tiny = 1e-6
        ssa.log_theta_q.copy_((per_head(q) / T).clamp_min(tiny).log())
        ssa.log_theta_k.copy_((per_head(k) / T).clamp_min(tiny).log())
        ssa.log_theta_v.copy_((per_channel(v) / T).clamp_min(tiny).log())
        ssa.log_scale.zero_()
        captured = {}
        handle = ssa.register_forward_pre_hook(lambda m, a: captured.__setitem__("x", a[0]))
        try:
            snn(ids)
        finally:
            handle.remove()
        raw = ssa.raw_attention(captured["x"], mask)
        rms = lambda t: t.reshape(-1, H, d).pow(2).mean((0, 2)).sqrt()  # noqa: E731
        ssa.log_scale.copy_((rms(o) / rms(raw).clamp_min(tiny)).clamp_min(tiny).log())
        ssa.log_theta_o.copy_((per_channel(o) / T).clamp_min(tiny).log())


# ---------------------------------------------------------------- fine-tuning


def finetune_ssa(
    snn: GPT2ForCausalLM,
    ann: GPT2ForCausalLM,
    stream: torch.Tensor,
    seq_len: int,
    config: NeurTransformerConfig,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, float]]:
    """Step (3): train the SSA parameters only, surrogate gradients through the spikes, for ``finetune_steps`` steps.

    loss = lm_weight * CE(next token) + hidden_weight * mean over blocks of ||h_snn - h_ann||^2 / ||h_ann||^2.
    Learning rate: 5% linear warm-up, then cosine to lr/10. Returns the per-step losses.
    """
    from .data import global_batch

    if snn.mode != "qat":
        raise ValueError(f"fine-tune the SSA model in mode qat (its forward equals snn-fused), got {snn.mode!r}")
    params = snn.ssa_parameters()
    for p in snn.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.finetune_lr, weight_decay=0.0)
    steps = config.finetune_steps
    warmup = max(1, steps // 20)
    history = []
    snn.train()
    ann.eval()
    for step in range(steps):
        lr = config.finetune_lr * ((step + 1) / warmup if step < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = global_batch(stream, seq_len, config.finetune_batch_size, config.seed, step)
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.no_grad():
            _, target, _ = ann.forward_hidden(x, with_logits=False)
        logits, hidden, _ = snn.forward_hidden(x, with_logits=config.lm_weight > 0)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) if logits is not None else torch.zeros(())
        blocks = len(hidden) - 1  # every block's output (the last entry, ln_f's output, follows from it)
        mse = sum(((h - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp_min(1e-12)).mean() for h, t in zip(hidden[:blocks], target[:blocks])) / blocks
        loss = config.lm_weight * ce + config.hidden_weight * mse
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        record = {"step": step + 1, "loss": float(loss.detach()), "ce": float(ce.detach()), "hidden_mse": float(mse.detach()), "lr": lr}
        history.append(record)
        if log is not None:
            log(record)
    snn.eval()
    for p in snn.parameters():
        p.requires_grad_(True)
    return history


# ---------------------------------------------------------------- evaluation


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


def attention_stats(model: GPT2ForCausalLM, windows: torch.Tensor) -> tuple[OpStats, OpStats, int]:
    """(attention blocks' OpStats, whole model's OpStats, tokens) counted on ``windows``."""
    with OpCounter(model) as counter, torch.no_grad():
        model(windows)
    attn = OpStats()
    for name, stats in counter.totals.items():
        parts = name.split(".")
        if len(parts) >= 4 and parts[:2] == ["transformer", "h"] and parts[3] == "attn":
            attn = attn + stats
    return attn, counter.total(), windows.numel()


def energy_comparison(ann: GPT2ForCausalLM, snn: GPT2ForCausalLM, windows: torch.Tensor, preset_names: tuple[str, ...]) -> dict[str, Any]:
    """Estimated energy of the ASA blocks (float model) and SSA blocks (SNN) on the same text, per preset."""
    from harness.energy.synops import estimate, load_presets

    presets = load_presets()
    asa, ann_total, tokens = attention_stats(ann, windows)
    ssa, snn_total, _ = attention_stats(snn, windows)
    out: dict[str, Any] = {"tokens": tokens, "asa_ops": asa.as_dict(), "ssa_ops": ssa.as_dict(), "presets": {}}
    for name in preset_names:
        if name not in presets:
            raise ValueError(f"unknown energy preset {name!r}; known: {', '.join(presets)}")
        p = presets[name]
        e_asa, e_ssa = estimate(asa, p), estimate(ssa, p)
        e_ann, e_snn = estimate(ann_total, p), estimate(snn_total, p)
        out["presets"][name] = {
            "asa_joules_per_token": e_asa.joules / tokens,
            "ssa_joules_per_token": e_ssa.joules / tokens,
            "reduction": 1 - e_ssa.joules / e_asa.joules if e_asa.joules else math.nan,
            "asa": e_asa.as_dict(),
            "ssa": e_ssa.as_dict(),
            "ann_model_joules_per_token": e_ann.joules / tokens,
            "snn_model_joules_per_token": e_snn.joules / tokens,
            "citation": p.citation,
            "kind": "estimated",
        }
    return out


# ---------------------------------------------------------------- one size, end to end


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
    from harness.runs import atomic_write_json, read_json

    from .data import global_batch, token_stream
    from .qat import Trainer

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
    tokenizer, seq_len = trainer.tokenizer, spec.train.seq_len
    train_stream = trainer.train_stream
    calibration = [global_batch(train_stream, seq_len, 8, config.seed + 1000, i)[:, :-1] for i in range(config.calibration_batches)]
    test = token_stream(tokenizer, spec.train.data, "test")
    n_windows = max(1, min(config.eval_tokens, len(test)) // seq_len)
    windows = test[: n_windows * seq_len].view(n_windows, seq_len).to(ann.lm_head.weight.device)

    say(f"{spec.name}: (b) SSA in, feed-forward converted ({config.bits}-bit), SSA calibrated on {sum(b.numel() for b in calibration):,} tokens")
    t0 = time.perf_counter()
    snn_qat = convert_to_ssa(ann, calibration, config, mode="qat")
    from models.convert import swap_mode

    before = compare(ann, swap_mode(snn_qat, snn_qat.spiking.with_mode("snn-fused")), windows)
    say(f"{spec.name}:     before fine-tuning: ppl SNN {before['ppl_snn']:.1f} (ANN {before['ppl_ann']:.1f}), cos {before['cos_hidden']:.3f}")
    log_path = folder / "finetune.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as handle:
        import json

        def log(record: dict[str, Any]) -> None:
            handle.write(json.dumps(record) + "\n")
            if record["step"] % max(1, config.finetune_steps // 5) == 0:
                say(f"{spec.name}:     step {record['step']}: loss {record['loss']:.3f} (ce {record['ce']:.3f}, hidden {record['hidden_mse']:.3f})")

        say(f"{spec.name}: (c) fine-tuning the SSA blocks ({sum(p.numel() for p in snn_qat.ssa_parameters()):,} parameters) "
            f"for {config.finetune_steps} steps, surrogate {config.surrogate}")
        history = finetune_ssa(snn_qat, ann, train_stream, seq_len, config, log)
    finetune_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    snn = swap_mode(snn_qat, snn_qat.spiking.with_mode("snn-fused"))
    after = compare(ann, snn, windows)
    with torch.no_grad():
        probe = windows[:2]
        snn_equals_qat = bool(torch.equal(snn(probe)[0], snn_qat(probe)[0]))
    presets = tuple(dict.fromkeys([config.energy_preset, "45nm-int8"]))
    energy = energy_comparison(ann, snn, windows[: config.energy_windows], presets)
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


# ---------------------------------------------------------------- the table

COLUMNS = (
    ("model", "model"),
    ("layers", "layers"),
    ("hidden", "hidden"),
    ("parameters", "parameters"),
    ("ppl_ann", "PPL ANN"),
    ("ppl_snn_before", "PPL SNN before FT"),
    ("ppl_snn", "PPL SNN"),
    ("ppl_change_pct", "PPL change %"),
    ("cos_hidden_before", "cos hidden before FT"),
    ("cos_hidden", "cos hidden"),
    ("cos_logits", "cos logits"),
    ("top1_agreement", "top-1 agreement"),
    ("acc_ann", "accuracy ANN"),
    ("acc_snn", "accuracy SNN"),
    ("asa_nj_per_token", "ASA nJ/token"),
    ("ssa_nj_per_token", "SSA nJ/token"),
    ("energy_reduction_pct", "SSA energy reduction %"),
    ("energy_preset", "preset"),
    ("time_steps", "T (SSA)"),
)


def table_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        a, b = r["after_finetuning"], r["before_finetuning"]
        rows.append({
            "model": r["size"], "layers": r["layers"], "hidden": r["hidden_size"], "parameters": r["parameters"],
            "ppl_ann": a["ppl_ann"], "ppl_snn_before": b["ppl_snn"], "ppl_snn": a["ppl_snn"],
            "ppl_change_pct": 100 * (a["ppl_snn"] / a["ppl_ann"] - 1),
            "cos_hidden_before": b["cos_hidden"], "cos_hidden": a["cos_hidden"], "cos_logits": a["cos_logits"],
            "top1_agreement": a["top1_agreement"], "acc_ann": a["acc_ann"], "acc_snn": a["acc_snn"],
            "asa_nj_per_token": r["asa_nj_per_token"], "ssa_nj_per_token": r["ssa_nj_per_token"],
            "energy_reduction_pct": 100 * r["energy_reduction"], "energy_preset": r["energy_preset"], "time_steps": r["ssa_time_steps"],
        })
    return rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_table(results: list[dict[str, Any]], out: Path, notes: list[str]) -> dict[str, Path]:
    """table.csv, table.md and neurtransformer.json in ``out``, each written atomically."""
    import csv
    import io

    from harness.runs import atomic_write_json, atomic_write_text

    rows = table_rows(results)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[key for key, _ in COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    md = ["| " + " | ".join(label for _, label in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_fmt(row[key]) for key, _ in COLUMNS) + " |" for row in rows]
    md += [""] + [f"- {n}" for n in notes]
    paths = {
        "csv": atomic_write_text(out / "table.csv", buffer.getvalue()),
        "md": atomic_write_text(out / "table.md", "\n".join(md) + "\n"),
        "json": atomic_write_json(out / "neurtransformer.json", {"rows": rows, "results": results, "notes": notes}),
    }
    return paths


def table_notes(config: NeurTransformerConfig, specs: list[SizeSpec]) -> list[str]:
    train = specs[0].train
    return [
        f"GPT-2 trained from scratch on {train.data} ({train.tokenizer} tokenizer, {train.max_steps} steps of {train.batch_size} x {train.seq_len} tokens); "
        "no pretrained GPT-2 weights are reachable here, so the sizes are tiny stand-ins for the paper's GPT-2 variants.",
        f"SNN = spike-based self-attention (T = {config.ssa_time_steps}, ternary IF neurons, surrogate {config.surrogate}) + the rest converted "
        f"to {config.bits}-bit spiking operators (Synapsis, SNNGELU, SNNLayerNorm), evaluated in snn-fused mode (equal to its qat twin).",
        f"SSA blocks fine-tuned {config.finetune_steps} steps (batch {config.finetune_batch_size}) on hidden-state MSE x {config.hidden_weight} "
        f"+ LM loss x {config.lm_weight}; 'before FT' = after calibration only.",
        f"Test measures on the first {config.eval_tokens} tokens of the {train.data} test split in windows of {train.seq_len}: perplexity, "
        "cosine similarity of the ln_f outputs and of the logits (mean over tokens), top-1 next-token agreement, accuracy against the data.",
        f"Energy: estimated (not measured), operations counted on {config.energy_windows} test windows, priced with the {config.energy_preset} "
        "preset (Horowitz, ISSCC 2014: AC 0.9 pJ, MAC 4.6 pJ, float op 4.6 pJ); 45nm-int8 figures are in the JSON. ASA = the float "
        "attention block (c_attn, QK^T, softmax, P.V, c_proj) with QK^T and P.V counted over the full L x L square, as a dense kernel computes "
        "them; SSA = its spike-driven accumulations (c_attn, c_proj, both products) plus its float work; neuron updates are not priced.",
    ]


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
