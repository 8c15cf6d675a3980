"""The table of ``snnbench neurtransformer``: one row per GPT-2 size, the paper's measures, and its notes.

``write_table`` writes ``table.csv``, ``table.md`` and ``neurtransformer.json`` (rows, the full
per-size results and the notes), each atomically.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from tasks.files import atomic_write_json, atomic_write_text

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
    """One row of ``COLUMNS`` per size's ``result.json``."""
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
    rows = table_rows(results)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[key for key, _ in COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    md = ["| " + " | ".join(label for _, label in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    md += ["| " + " | ".join(_fmt(row[key]) for key, _ in COLUMNS) + " |" for row in rows]
    md += [""] + [f"- {n}" for n in notes]
    return {
        "csv": atomic_write_text(out / "table.csv", buffer.getvalue()),
        "md": atomic_write_text(out / "table.md", "\n".join(md) + "\n"),
        "json": atomic_write_json(out / "neurtransformer.json", {"rows": rows, "results": results, "notes": notes}),
    }


def table_notes(config: Any, specs: list[Any]) -> list[str]:
    """What the table's numbers are: the training, the SNN, the fine-tuning, the measures and the energy estimate."""
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
