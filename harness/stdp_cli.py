"""``snnbench stdp``: stage 3 on a trained (QAT) or converted checkpoint: per-layer T before and after,
perplexity before and after, estimated energy before and after (BrainGPT's Table 3 at our scale)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .data_cli import use_data_dir
from .runs import atomic_write_json, atomic_write_text


def run_stdp(args) -> int:
    from harness.energy import estimate, load_presets
    from models.convert import swap_mode
    from models.load import load_checkpoint, save_checkpoint
    from models.perplexity import token_perplexity
    from models.spiking.counters import OpCounter
    from models.train.data import global_batch, token_stream
    from models.train.stdp import STDPConfig, mean_window, optimize_time_steps, report_table, reports_as_dicts

    use_data_dir(args.data_dir)
    started = time.perf_counter()
    loaded = load_checkpoint(args.checkpoint)
    model = loaded.model
    if model.mode == "ann":
        raise ValueError(f"{args.checkpoint}: an ANN checkpoint; train in qat mode or convert it first (snnbench convert)")
    if model.mode != "snn-fused":
        model = swap_mode(model, model.spiking.with_mode("snn-fused"))
    if loaded.tokenizer is None:
        raise ValueError(f"{args.checkpoint}: has no tokenizer.json to read the corpus with")
    import json

    training = json.loads((Path(args.checkpoint) / "config.json").read_text()).get("training", {}).get("config", {})
    data = args.data or training.get("data")
    if data is None:
        raise ValueError("the checkpoint does not say which corpus it was trained on; give --data")
    window = args.window or training.get("seq_len", 64)
    test = token_stream(loaded.tokenizer, data, "test")[: args.eval_tokens].tolist()
    train = token_stream(loaded.tokenizer, data, "train")
    batches = [global_batch(train, window, 16, args.seed, s)[:, :-1] for s in range(args.batches)]
    preset = load_presets()[args.energy_preset]

    def energy(m) -> dict:
        with OpCounter(m) as counter, torch.no_grad():
            m(torch.tensor(test[: window * 4]).view(4, window))
        e = estimate(counter.total(), preset)
        tokens = 4 * window
        return {"joules_per_token": e.joules / tokens, "source": e.source, "spikes_per_token": counter.total().spikes / tokens}

    def measure(m) -> tuple[float, dict]:
        return token_perplexity(m, test, window=window, batch_size=16)["perplexity"], energy(m)

    energy_qat = energy(swap_mode(model, model.spiking.with_mode("qat")))  # the QAT ANN: MACs on quantized values
    ppl_before, energy_before = measure(model)
    config = STDPConfig(steps=args.steps, target_fraction=args.target_fraction, lambda_T=args.lambda_t, lambda_C=args.lambda_c)
    reports = optimize_time_steps(model, batches, config)
    ppl_after, energy_after = measure(model)
    out = Path(args.out or Path(args.checkpoint).parent / "stdp")
    save_checkpoint(model, out / "model", loaded.tokenizer, extra={"name": f"{loaded.name}-stdp", "stage3": config.__dict__}, special_tokens=loaded.special_tokens())
    summary = {
        "checkpoint": str(args.checkpoint),
        "data": data,
        "config": config.__dict__,
        "mean_T": {"before": mean_window(reports, False), "after": mean_window(reports, True)},
        "max_T": {"before": max(r.window_before for r in reports), "after": max(r.window_after for r in reports)},
        "perplexity": {"before": ppl_before, "after": ppl_after, "change": ppl_after / ppl_before - 1},
        "estimated_energy": {"before": energy_before, "after": energy_after, "qat_ann": energy_qat, "kind": "estimated"},
        "layers": reports_as_dicts(reports),
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(out / "stdp.json", summary)
    table = report_table(reports)
    atomic_write_text(out / "stdp.txt", table + "\n")
    print(table)
    print(f"\nperplexity {ppl_before:.3f} -> {ppl_after:.3f} ({100 * summary['perplexity']['change']:+.2f}%)")
    print(f"estimated energy ({energy_before['source']}) {energy_before['joules_per_token']:.3e} -> {energy_after['joules_per_token']:.3e} J/token; "
          f"spikes/token {energy_before['spikes_per_token']:.0f} -> {energy_after['spikes_per_token']:.0f}")
    print(f"the QAT ANN of the same weights (MACs): {energy_qat['joules_per_token']:.3e} J/token")
    print(f"wrote {out}/model, {out}/stdp.json, {out}/stdp.txt in {summary['seconds']:.0f} s")
    return 0


def add_parser(commands) -> None:
    p = commands.add_parser("stdp", help="stage 3: STDP-inspired time-step optimization of a QAT or SNN checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (from snnbench train --mode qat or snnbench convert)")
    p.add_argument("--data", default=None, help="corpus (default: the one the checkpoint was trained on)")
    p.add_argument("--steps", type=int, default=60, help="optimization steps per layer")
    p.add_argument("--target-fraction", type=float, default=0.5, help="T_target as a fraction of the current window")
    p.add_argument("--lambda-t", type=float, default=1.0)
    p.add_argument("--lambda-c", type=float, default=20.0)
    p.add_argument("--batches", type=int, default=2, help="calibration batches of 16 windows from the train split")
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--eval-tokens", type=int, default=4096)
    p.add_argument("--energy-preset", default="45nm-int8")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--data-dir", default=None)
