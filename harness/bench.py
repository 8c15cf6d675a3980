"""``snnbench bench``: performance benchmarks (not tests). Every figure is a ratio of two sides
timed in the same process, interleaved, ``repeats`` times, with min / median / max of each side
and of the per-repeat ratio.

| # | what | ours | reference | ratio |
|---|------|------|-----------|-------|
| 1 | evaluation throughput: (a) ARC-like loglikelihood, (b) rolling perplexity | adapter, ``ann`` | lm-eval's ``HFLM`` on the same weights | speed ours / reference |
| 2 | the cost of being spiking in simulation, same requests | adapter, ``snn-fused`` | adapter, ``ann`` | speed |
| 3 | what exact simulation costs, per operator kind, same inputs | ``snn`` (time-stepped) | ``snn-fused`` | time snn / snn-fused |
| 4 | instrumentation overhead (counters + the usable per-batch meters) | adapter with ``Accounting(count_ops=True, meters)`` | no counters, no meters | time on / off - 1 |
| 5 | model FLOP utilization of the ``ann`` forward on long sequences | analytic FLOPs / time | fp32 matmul peak measured in the run | MFU |
| 6 | training step time, tiny Llama | ``qat`` | ``ann`` | time qat / ann |
| 7 | the spiking core | ``EIIFNeuron`` | SpikingJelly ``IFNode(step_mode='m')`` (optional) | speed |

Results go to ``<out>/bench.json`` (rows, machine, versions) and ``<out>/bench.md`` (a table
benchmark | ours | reference | ratio (median, min-max) | goal | met?), written atomically.
Benchmarks 1, 2, 4 and 5 need SmolLM2 (``snnbench data fetch smollm2-135m``); with ``--quick``
they fall back to a tiny random Llama and the table says so (goals are then not judged).
The requests are synthetic text of a fixed seed with the shapes of the real tasks (their
content does not change the work of a dense model); FLOPs are counted analytically.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

BENCHMARKS = {
    1: "evaluation throughput, adapter ann vs lm-eval HFLM",
    2: "snn-fused vs ann throughput of the adapter",
    3: "snn (time-stepped) vs snn-fused per operator kind",
    4: "instrumentation overhead (counters and energy meters)",
    5: "model FLOP utilization of the ann forward",
    6: "training step time, qat vs ann",
    7: "spiking core vs SpikingJelly's multi-step IF neuron",
}
NEEDS_MODEL = (1, 2, 4, 5)
TINY_MODEL = "tiny-random"


# ---------------------------------------------------------------------------- statistics


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """min / median / max of a sample (and the sample itself)."""
    if not values:
        raise ValueError("summarize needs at least one value")
    vals = [float(v) for v in values]
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals), "values": vals}


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Per-repeat ratios n_i / d_i of two sides timed in the same repeat."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f"paired_ratios needs two samples of the same nonzero length, got {len(numerators)} and {len(denominators)}")
    return [n / d if d else math.inf for n, d in zip(numerators, denominators)]


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """A timer: calls ``fn`` once and returns its wall seconds."""

    def run() -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    return run


def per_call(fn: Callable[[], Any], min_seconds: float, max_calls: int = 1_000_000) -> Callable[[], float]:
    """A timer: calls ``fn`` until ``min_seconds`` have passed (at least once); returns seconds per call."""

    def run() -> float:
        calls, started = 0, time.perf_counter()
        while True:
            fn()
            calls += 1
            elapsed = time.perf_counter() - started
            if elapsed >= min_seconds or calls >= max_calls:
                return elapsed / calls

    return run


def paired_times(ours: Callable[[], float], reference: Callable[[], float], repeats: int, warmup: bool = True) -> tuple[list[float], list[float]]:
    """Run two timers ``repeats`` times, interleaved, alternating which goes first (drift and
    caches hit both sides alike); one untimed warm-up call of each first."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup:
        ours()
        reference()
    a: list[float] = []
    b: list[float] = []
    for r in range(repeats):
        if r % 2 == 0:
            a.append(ours())
            b.append(reference())
        else:
            b.append(reference())
            a.append(ours())
    return a, b


# ---------------------------------------------------------------------------- rows and goals


@dataclass(frozen=True)
class Goal:
    op: str  # ">=" or "<="
    value: float
    text: str
    stretch: float | None = None  # a second, more ambitious value (reported, not required)

    def met(self, ratio: float) -> str:
        ok = ratio >= self.value if self.op == ">=" else ratio <= self.value
        if not ok:
            return "no"
        if self.stretch is None:
            return "yes"
        stretch = ratio >= self.stretch if self.op == ">=" else ratio <= self.stretch
        return "yes" if stretch else f"yes (stretch {self.stretch:g}x not met)"


@dataclass
class Side:
    label: str
    unit: str  # "tok/s", "ms/call", "ms/step", "GFLOP/s", "s"
    stats: dict[str, Any] | None  # summarize(...) of the values in ``unit``; None when not measured
    note: str | None = None  # why it was not measured


@dataclass
class Row:
    id: str
    benchmark: str
    ours: Side
    reference: Side
    ratio: dict[str, Any] | None
    ratio_kind: str  # speed (x, ours/reference speed), slowdown (x, time ours/reference), overhead (+%), fraction (%)
    ratio_meaning: str
    goal: Goal | None = None
    met: str = "-"
    notes: list[str] = field(default_factory=list)

    def judge(self, tiny_model: bool = False) -> None:
        if self.goal is None or self.ratio is None:
            self.met = "-"
        elif tiny_model:
            self.met = "n/a (tiny model)"
        else:
            self.met = self.goal.met(self.ratio["median"])

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["goal"] = asdict(self.goal) if self.goal else None
        return d


def _fmt_value(value: float, unit: str) -> str:
    if unit == "tok/s":
        return f"{value:,.0f}"
    if unit in ("ms/call", "ms/step", "ms"):
        return f"{value:.3g}" if value < 100 else f"{value:,.0f}"
    if unit == "GFLOP/s":
        return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"
    return f"{value:.3g}"


def format_side(side: Side) -> str:
    if side.stats is None:
        return f"{side.label}: {side.note or 'not measured'}"
    s = side.stats
    return (f"{side.label}: {_fmt_value(s['median'], side.unit)} {side.unit} "
            f"({_fmt_value(s['min'], side.unit)}-{_fmt_value(s['max'], side.unit)})")


def format_ratio(ratio: dict[str, Any] | None, kind: str) -> str:
    if ratio is None:
        return "-"
    lo, med, hi = ratio["min"], ratio["median"], ratio["max"]
    if kind == "overhead":
        return f"{(med - 1) * 100:+.1f}% ({(lo - 1) * 100:+.1f} to {(hi - 1) * 100:+.1f}%)"
    if kind == "fraction":
        return f"{med * 100:.1f}% ({lo * 100:.1f}-{hi * 100:.1f}%)"
    def x(v: float) -> str:
        return f"{v:,.0f}" if v >= 100 else (f"{v:.1f}" if v >= 10 else f"{v:.3g}")

    return f"{x(med)}x ({x(lo)}-{x(hi)}x)"


def markdown_table(rows: Sequence[Row]) -> str:
    """The table: benchmark | ours | reference | ratio (median, min-max) | goal | met?"""
    lines = [
        "| benchmark | ours | reference | ratio (median, min-max) | goal | met? |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{row.id}. {row.benchmark} ({row.ratio_meaning})",
            format_side(row.ours),
            format_side(row.reference),
            format_ratio(row.ratio, row.ratio_kind),
            row.goal.text if row.goal else "-",
            row.met,
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(report: dict[str, Any], rows: Sequence[Row]) -> str:
    machine = report["machine"]
    head = [
        "# snnbench bench",
        "",
        f"{report['started_at']}, {machine.get('cpu_model') or machine.get('processor')}, {machine.get('cpu_count')} cores, "
        f"{report['threads']} torch thread(s), {'quick sizes' if report['quick'] else 'full sizes'}, "
        f"{report['repeats']} repeats (ratio per repeat, sides interleaved), model: {report['model']['name']}"
        + (f" ({report['model']['fallback']})" if report["model"].get("fallback") else ""),
        f"torch {report['versions'].get('torch')}, lm_eval {report['versions'].get('lm_eval')}, "
        f"transformers {report['versions'].get('transformers')}, spikingjelly {report['versions'].get('spikingjelly')}; "
        f"commit {report.get('git_commit')}; allocator: {report.get('allocator', 'system default')}",
        "",
        markdown_table(rows),
    ]
    notes = [f"- {row.id}: {note}" for row in rows for note in row.notes] + [f"- {n}" for n in report.get("notes", [])]
    if notes:
        head += ["Notes:", "", *notes, ""]
    return "\n".join(head)


# ---------------------------------------------------------------------------- FLOPs


def llama_matmul_params(config) -> int:
    """Weights that multiply activations in a Llama forward: the 7 projections of every layer and
    the language-model head (the embedding is a lookup, norms and biases are not matmuls)."""
    d, f, hd = config.hidden_size, config.intermediate_size, config.dims_per_head
    q_out, kv_out = config.num_attention_heads * hd, config.num_key_value_heads * hd
    per_layer = d * q_out + 2 * d * kv_out + q_out * d + 3 * d * f
    return config.num_hidden_layers * per_layer + d * config.vocab_size


def llama_forward_flops(config, batch: int, seq_len: int) -> dict[str, int]:
    """Analytic FLOPs of one forward over ``batch`` sequences of ``seq_len`` tokens (no cache):
    2 x params-in-matmuls x tokens, plus attention 4 x L^2 x (heads x head_dim) per layer
    (QK^T and P.V, 2 FLOPs per multiply-add, the full L x L square as is customary)."""
    tokens = batch * seq_len
    dense = 2 * llama_matmul_params(config) * tokens
    attention = config.num_hidden_layers * 4 * batch * seq_len**2 * config.num_attention_heads * config.dims_per_head
    return {"dense": dense, "attention": attention, "total": dense + attention}


def matmul_peak_timer(n: int, min_seconds: float) -> Callable[[], float]:
    """A timer returning the fp32 GFLOP/s of an n x n torch.matmul loop (the machine's practical peak)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    seconds = per_call(lambda: torch.matmul(a, b, out=out), min_seconds)
    return lambda: 2 * n**3 / seconds() / 1e9


# ---------------------------------------------------------------------------- sizes and text


@dataclass(frozen=True)
class Sizes:
    arc_questions: int
    arc_shots: int
    docs: int
    doc_words: int
    max_length: int
    mfu_lengths: tuple[int, ...]
    peak_n: int
    op_tokens: int
    op_min_seconds: float
    train_batch: int | None  # None: the config's
    train_seq: int | None
    neuron_T: int
    neuron_N: int


FULL = Sizes(arc_questions=4, arc_shots=25, docs=3, doc_words=1500, max_length=1024, mfu_lengths=(1024, 2048), peak_n=2048,
             op_tokens=64, op_min_seconds=0.5, train_batch=None, train_seq=None, neuron_T=127, neuron_N=16384)
QUICK = Sizes(arc_questions=2, arc_shots=5, docs=2, doc_words=200, max_length=256, mfu_lengths=(128, 256), peak_n=256,
              op_tokens=8, op_min_seconds=0.02, train_batch=4, train_seq=32, neuron_T=31, neuron_N=1024)

WORDS = (
    "the of and to in is was that for on with as by at from his her they were which this have had are one their not but "
    "all can there been has when who will more no out into so what up time only new some could these two may first then "
    "do any like my now over such our man me even most made after also did many before must through back years where much "
    "your way well down should because each just those people how too little state good very make world still own see men "
    "work long get here between both life being under never day same another know while last might us great old year off "
    "come since against go came right used take three water plant energy light heat animal rock earth moon sun cell force "
    "motion weather season change food seed grow measure mass volume gas liquid solid metal magnet electric circuit sound"
).split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def arc_like_requests(questions: int, shots: int, seed: int = 0) -> list[tuple[str, str]]:
    """(context, continuation) pairs shaped like ARC-Challenge 25-shot: a few-shot prompt of
    "Question: ...\\nAnswer: ..." blocks shared by 4 multi-token answers per question."""
    rng = random.Random(seed)
    prefix = "".join(f"Question: {_sentence(rng, rng.randint(12, 22))}?\nAnswer: {_sentence(rng, rng.randint(1, 5))}\n\n" for _ in range(shots))
    pairs = []
    for _ in range(questions):
        context = prefix + f"Question: {_sentence(rng, rng.randint(12, 22))}?\nAnswer:"
        pairs += [(context, " " + _sentence(rng, rng.randint(1, 6))) for _ in range(4)]
    return pairs


def documents(count: int, words: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        sentences, n = [], 0
        while n < words:
            k = rng.randint(8, 24)
            sentences.append(_sentence(rng, k).capitalize() + ".")
            n += k
        docs.append(" ".join(sentences))
    return docs


def instances(kind: str, args: list[tuple], task: str) -> list:
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i, metadata=(task, i, 1)) for i, a in enumerate(args)]


# ---------------------------------------------------------------------------- models


def tiny_random_model(seed: int = 0):
    """A tiny random Llama with a byte-level BPE trained on the benchmark's own text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from models.arch.llama import LlamaConfig, LlamaForCausalLM
    from models.load import LoadedModel

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>", "<|bos|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(documents(4, 400, seed=99), trainer)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(model, tok, TINY_MODEL, "random", eos_id=tok.token_to_id("<|endoftext|>"), bos_id=tok.token_to_id("<|bos|>"))


def transformers_twin(loaded):
    """transformers' LlamaForCausalLM (float32) with our float model's weights, and a
    PreTrainedTokenizerFast over a copy of our tokenizer: the HFLM side of benchmark 1."""
    from tokenizers import Tokenizer
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM as HFLlama
    from transformers import PreTrainedTokenizerFast

    c = loaded.model.config
    hf_config = HFConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, head_dim=c.dims_per_head, rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta, max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=c.tie_word_embeddings, attention_bias=c.attention_bias, mlp_bias=c.mlp_bias,
        bos_token_id=loaded.bos_id, eos_token_id=loaded.eos_id,
    )
    hf = HFLlama(hf_config).float().eval()
    missing, unexpected = hf.load_state_dict(loaded.model.state_dict(), strict=False)
    missing = [k for k in missing if not (c.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"transformers Llama does not take our weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
    tokenizer = Tokenizer.from_str(loaded.tokenizer.to_str())
    special = {"eos_token": tokenizer.id_to_token(loaded.eos_id)}
    if loaded.bos_id is not None:
        special["bos_token"] = tokenizer.id_to_token(loaded.bos_id)
    return hf, PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


def spiking_twin(loaded, fallback_text: str):
    """(the snn-fused model, how it was calibrated): the adapter's own conversion (8 bits,
    smoothed scales, 1,024 webtext tokens) when webtext is fetched, else the same on benchmark text."""
    from models.load import LoadedModel
    from tasks.loader import DataNotFoundError

    from .lm import SNNBenchLM

    try:
        model = SNNBenchLM._in_mode(loaded, "snn-fused", 8, None, "smoothed", "webtext", 1024)
        how = "adapter conversion: 8 bits, smoothed scales, calibrated on 1,024 webtext tokens"
    except DataNotFoundError:
        from models.arch.spiking_config import SpikingConfig
        from models.convert import convert

        from .convert_cli import windows

        ids = loaded.tokenizer.encode(fallback_text).ids[:1024]
        spiking = SpikingConfig(bits=8, linear_granularity="smoothed", norm_granularity="smoothed")
        model = convert(loaded.model, windows(ids, min(256, len(ids)), 2), spiking, path="snn-fused").snn
        how = f"8 bits, smoothed scales, calibrated on {len(ids)} tokens of benchmark text (webtext not fetched)"
    return LoadedModel(model.eval(), loaded.tokenizer, f"{loaded.name}-snn-fused", loaded.source, loaded.eos_id, loaded.bos_id), how


@dataclass
class Context:
    sizes: Sizes
    repeats: int
    batch_size: int
    seed: int
    loaded: Any = None  # LoadedModel or None
    fallback: str | None = None
    notes: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def tiny(self) -> bool:
        return self.fallback is not None

    def requests(self) -> dict[str, list]:
        if "requests" not in self._cache:
            s = self.sizes
            self._cache["requests"] = {
                "arc": instances("loglikelihood", arc_like_requests(s.arc_questions, s.arc_shots, self.seed), "bench_arc_like"),
                "rolling": instances("loglikelihood_rolling", [(d,) for d in documents(s.docs, s.doc_words, self.seed + 1)], "bench_rolling"),
            }
        return self._cache["requests"]

    def request_tokens(self, lm, kind: str) -> int:
        """Tokens the requests hold (context + continuation, or the document): the throughput numerator."""
        key = f"tokens_{kind}"
        if key not in self._cache:
            reqs = self.requests()[kind]
            if kind == "arc":
                self._cache[key] = sum(len(lm.tok_encode(r.args[0])) + len(lm.tok_encode(r.args[1])) for r in reqs)
            else:
                self._cache[key] = sum(len(lm.tok_encode(r.args[0])) for r in reqs)
        return self._cache[key]

    def adapter(self, mode: str = "ann"):
        key = f"adapter_{mode}"
        if key not in self._cache:
            from .lm import SNNBenchLM

            loaded = self.loaded
            if mode == "snn-fused":
                loaded, how = spiking_twin(self.loaded, " ".join(documents(2, 1200, self.seed + 7)))
                self._cache["spiking_calibration"] = how
            self._cache[key] = SNNBenchLM(model=loaded, batch_size=self.batch_size, max_length=self.sizes.max_length, device="cpu")
        return self._cache[key]

    def hflm(self):
        if "hflm" not in self._cache:
            from lm_eval.models.huggingface import HFLM

            hf, tokenizer = transformers_twin(self.loaded)
            self._cache["hf_attention"] = getattr(hf.config, "_attn_implementation", None)
            self._cache["hflm"] = HFLM(pretrained=hf, tokenizer=tokenizer, batch_size=self.batch_size, max_length=self.sizes.max_length,
                                       device="cpu", dtype="float32")
        return self._cache["hflm"]


def _run_requests(lm, kind: str, reqs: list) -> list:
    if kind == "arc":
        return lm.loglikelihood(reqs, disable_tqdm=True)
    return lm.loglikelihood_rolling(reqs, disable_tqdm=True)


def _max_diff(a: list, b: list) -> float:
    fa = [x[0] if isinstance(x, tuple) else x for x in a]
    fb = [x[0] if isinstance(x, tuple) else x for x in b]
    return max(abs(x - y) for x, y in zip(fa, fb))


KIND_LABEL = {"arc": "ARC-like loglikelihood", "rolling": "rolling perplexity"}


def _throughput_row(ctx: Context, row_id: str, title: str, kind: str, ours_lm, ours_label: str, ref_lm, ref_label: str,
                    goal: Goal | None) -> Row:
    reqs = ctx.requests()[kind]
    tokens = ctx.request_tokens(ours_lm, kind)
    results: dict[str, list] = {}

    def side(lm, name):
        def run():
            results[name] = _run_requests(lm, kind, reqs)
        return timed(run)

    t_ours, t_ref = paired_times(side(ours_lm, "ours"), side(ref_lm, "ref"), ctx.repeats)
    row = Row(row_id, f"{title}, {KIND_LABEL[kind]}", Side(ours_label, "tok/s", summarize([tokens / t for t in t_ours])),
              Side(ref_label, "tok/s", summarize([tokens / t for t in t_ref])), summarize(paired_ratios(t_ref, t_ours)),
              "speed", "speed ratio", goal)
    row.notes.append(f"{len(reqs)} requests, {tokens:,} request tokens, batch size {ctx.batch_size}, max length {ctx.sizes.max_length}; "
                     f"max |log-likelihood difference| {_max_diff(results['ours'], results['ref']):.3g}")
    return row


# ---------------------------------------------------------------------------- benchmarks


def bench_1(ctx: Context) -> list[Row]:
    ours, hflm = ctx.adapter("ann"), ctx.hflm()
    goal = Goal(">=", 1.0, ">= 1.0x (goal 1.3x)", stretch=1.3)
    rows = [_throughput_row(ctx, f"1{s}", "adapter ann vs HFLM", kind, ours, "adapter ann", hflm, "HFLM", goal)
            for s, kind in (("a", "arc"), ("b", "rolling"))]
    rows[0].notes.append(f"HFLM: transformers LlamaForCausalLM float32, attention {ctx._cache.get('hf_attention')}, same weights")
    return rows


def bench_2(ctx: Context) -> list[Row]:
    ann, fused = ctx.adapter("ann"), ctx.adapter("snn-fused")
    goal = Goal(">=", 0.8, ">= 0.8x")
    rows = [_throughput_row(ctx, f"2{s}", "adapter snn-fused vs ann", kind, fused, "snn-fused", ann, "ann", goal)
            for s, kind in (("a", "arc"), ("b", "rolling"))]
    for row in rows:
        row.notes[-1] = row.notes[-1].split("; max |")[0] + "; log-likelihoods differ by design (quantized model)"
    rows[0].notes.append(f"snn-fused model: {ctx._cache.get('spiking_calibration')}")
    return rows


class _KeepOpen:
    """A meter whose close() is deferred, so one meter serves many Accounting objects."""

    def __init__(self, meter) -> None:
        self.meter = meter
        self.name, self.kind = meter.name, meter.kind

    def start(self) -> None:
        self.meter.start()

    def stop(self):
        return self.meter.stop()

    def close(self) -> None:
        pass


def bench_4(ctx: Context) -> list[Row]:
    from models.spiking import counters

    from .accounting import Accounting
    from .energy import estimate
    from .eval_cli import energy_setup

    per_batch, per_task, presets, meter_notes = energy_setup("auto", "cpu", "45nm-fp32,45nm-int8", None)
    rows = []
    reqs = ctx.requests()["arc"]
    try:
        for suffix, mode in (("a", "ann"), ("b", "snn-fused")):
            lm = ctx.adapter(mode)
            plain = lm.accounting
            tokens = ctx.request_tokens(lm, "arc")

            def on() -> None:
                accounting = Accounting(lm.model, meters=[_KeepOpen(m) for m in per_batch], count_ops=True)
                lm.accounting = accounting
                try:
                    lm.loglikelihood(reqs, disable_tqdm=True)
                    total = accounting.totals()
                    for preset in presets:
                        estimate(total.ops, preset)
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
                      Goal("<=", 1.05, "<= +5%"))
            meters = ", ".join(m.source for m in per_batch) or "none usable here"
            row.notes.append(f"per-batch meters: {meters}; op counters on; estimates under {len(presets)} presets")
            rows.append(row)
        for meter in per_task:
            seconds = timed(lambda: (meter.start(), meter.stop()))()
            rows[0].notes.append(f"per-task meter {meter.name} (read once per task by snnbench eval, not per batch): "
                                 f"{seconds:.2f} s fixed cost per task, not in the ratio")
        for note in meter_notes:
            rows[0].notes.append(f"meter not usable: {note}")
    finally:
        for meter in per_batch + per_task:
            meter.close()
    return rows


def bench_5(ctx: Context) -> list[Row]:
    model = ctx.loaded.model
    config = model.config
    if model.mode != "ann":
        raise ValueError(f"MFU is measured on the ann forward; the model is in mode {model.mode!r}")
    peak = matmul_peak_timer(ctx.sizes.peak_n, max(ctx.sizes.op_min_seconds, 0.2))
    rows = []
    for i, length in enumerate(ctx.sizes.mfu_lengths):
        if length > config.max_position_embeddings:
            ctx.notes.append(f"5: {length} tokens skipped, beyond the model's {config.max_position_embeddings} positions")
            continue
        gen = torch.Generator().manual_seed(ctx.seed + length)
        ids = torch.randint(0, config.vocab_size, (1, length), generator=gen)
        flops = llama_forward_flops(config, 1, length)

        def forward() -> None:
            with torch.no_grad():
                model(ids)

        forward_timer = timed(forward)
        forward_timer()  # warm-up
        peak()
        achieved, peaks = [], []
        for _ in range(ctx.repeats):
            peaks.append(peak())
            achieved.append(flops["total"] / forward_timer() / 1e9)
        row = Row(f"5{'abcdefgh'[i]}", f"MFU of the ann forward, 1 x {length} tokens",
                  Side("achieved", "GFLOP/s", summarize(achieved)), Side(f"fp32 matmul peak (n={ctx.sizes.peak_n})", "GFLOP/s", summarize(peaks)),
                  summarize(paired_ratios(achieved, peaks)), "fraction", "MFU = achieved / peak", Goal(">=", 0.40, ">= 40%"))
        row.notes.append(f"{flops['total'] / 1e9:.4g} GFLOP per forward ({flops['dense'] / 1e9:.4g} in dense matmuls incl. lm_head, "
                         f"{flops['attention'] / 1e9:.4g} in attention)")
        rows.append(row)
    return rows


# ---- 3: per operator kind


def _operator_pairs(sizes: Sizes, tiny: bool) -> list[tuple[str, Callable[[str], torch.nn.Module], tuple[torch.Tensor, ...]]]:
    """(kind, factory(path), inputs) at SmolLM2-135M's dimensions (or tiny ones with --quick)."""
    from models.arch.spiking_config import SpikingConfig
    from models.spiking import SNNMatmul, SNNRMSNorm, SNNSiLU, SNNSoftmax, Synapsis
    from models.spiking.product import SNNMultiply

    d, f, heads, hd = (576, 1536, 9, 64) if not tiny else (64, 128, 2, 32)
    L = sizes.op_tokens
    spiking = SpikingConfig(bits=8)
    spec = spiking.spec("token", "linear")
    gen = torch.Generator().manual_seed(0)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    weights = torch.randn(f, d, generator=gen) * d**-0.5
    norm_weight = 1 + 0.1 * torch.randn(d, generator=gen)

    def synapsis(path: str) -> torch.nn.Module:
        s = Synapsis(d, f, bias=False, pre=spec, post=None, path=path)
        s.weight.data.copy_(weights)
        return s

    def norm(path: str) -> torch.nn.Module:
        n = SNNRMSNorm(d, 1e-5, input_spec=spec, path=path)
        n.weight.data.copy_(norm_weight)
        return n

    return [
        (f"Synapsis {d}->{f}", synapsis, (randn(1, L, d),)),
        (f"SNNMatmul QK^T {heads}x{L}x{hd}", lambda p: SNNMatmul(spec, spec, path=p), (randn(1, heads, L, hd), randn(1, heads, hd, L))),
        (f"SNNSoftmax {heads}x{L}x{L}", lambda p: SNNSoftmax(-1, input_spec=spec, path=p), (randn(1, heads, L, L, scale=3.0),)),
        (f"SNNSiLU {L}x{f}", lambda p: SNNSiLU(spiking.T, 8.0, path=p), (randn(1, L, f, scale=3.0),)),
        (f"SNNMultiply {L}x{f}", lambda p: SNNMultiply(spec, spec, path=p), (randn(1, L, f), randn(1, L, f))),
        (f"SNNRMSNorm {d}", norm, (randn(1, L, d, scale=2.0),)),
    ]


def bench_3(ctx: Context) -> list[Row]:
    from models.arch.spiking_config import SpikingConfig

    T = SpikingConfig(bits=8).T
    rows = []
    for i, (kind, factory, inputs) in enumerate(_operator_pairs(ctx.sizes, ctx.tiny or ctx.sizes is QUICK)):
        stepped, fused = factory("snn").eval(), factory("snn-fused").eval()
        with torch.no_grad():
            equal = torch.equal(stepped(*inputs), fused(*inputs))

        def call(op):
            def run():
                with torch.no_grad():
                    op(*inputs)
            return per_call(run, ctx.sizes.op_min_seconds)

        t_snn, t_fused = paired_times(call(stepped), call(fused), ctx.repeats)
        row = Row(f"3{'abcdefgh'[i]}", f"{kind}, T={T}", Side("snn", "ms/call", summarize([t * 1e3 for t in t_snn])),
                  Side("snn-fused", "ms/call", summarize([t * 1e3 for t in t_fused])), summarize(paired_ratios(t_snn, t_fused)),
                  "slowdown", "time snn / snn-fused")
        row.notes.append(f"outputs of the two paths {'bit-identical' if equal else 'DIFFERENT'}; inputs {', '.join(str(tuple(x.shape)) for x in inputs)}")
        rows.append(row)
    return rows


# ---- 6: training step


def bench_6(ctx: Context) -> list[Row]:
    import torch.nn.functional as F

    from models.arch.llama import LlamaConfig, LlamaForCausalLM
    from models.arch.spiking_config import SpikingConfig
    from models.train.config import load_config

    train, fields = load_config("tiny", "llama")
    batch = ctx.sizes.train_batch or train.batch_size
    seq = ctx.sizes.train_seq or train.seq_len
    vocab = 10_000  # PTB's word vocabulary, what the tiny config trains on
    config = LlamaConfig(**{**fields, "vocab_size": vocab})
    torch.manual_seed(ctx.seed)
    ann = LlamaForCausalLM(config, SpikingConfig(mode="ann"))
    qat = LlamaForCausalLM(config, SpikingConfig(mode="qat"), init_weights=False)
    qat.load_state_dict(ann.state_dict(), strict=False)
    ids = torch.randint(0, vocab, (batch, seq + 1), generator=torch.Generator().manual_seed(ctx.seed))

    def stepper(model):
        model.train()
        decay = [p for p in {id(p): p for p in model.parameters()}.values() if p.dim() >= 2]
        no_decay = [p for p in {id(p): p for p in model.parameters()}.values() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=train.lr, betas=(train.beta1, train.beta2))

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            logits, _ = model(ids[:, :-1])
            loss = F.cross_entropy(logits.float().reshape(-1, vocab), ids[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            opt.step()

        return timed(step)

    t_qat, t_ann = paired_times(stepper(qat), stepper(ann), ctx.repeats)
    row = Row("6", f"training step, tiny Llama ({ann.num_parameters():,} parameters), {batch} x {seq} tokens",
              Side("qat", "ms/step", summarize([t * 1e3 for t in t_qat])), Side("ann", "ms/step", summarize([t * 1e3 for t in t_ann])),
              summarize(paired_ratios(t_qat, t_ann)), "slowdown", "time qat / ann")
    row.notes.append("forward + backward + gradient clipping + AdamW step, as Trainer.train_step, on one fixed random batch "
                     f"(vocabulary {vocab:,}); no data set needed")
    return [row]


# ---- 7: spiking core vs SpikingJelly


def spikingjelly_if() -> tuple[Any, str]:
    """(a factory of SpikingJelly's multi-step IF neuron, its version) or (None, why not)."""
    try:
        import importlib.metadata as metadata

        from spikingjelly.activation_based import neuron
    except Exception as err:  # noqa: BLE001 - any import failure is a reason to report
        return None, f"spikingjelly not importable ({type(err).__name__}: {err}); `pip install spikingjelly` to compare"
    try:
        version = metadata.version("spikingjelly")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return (lambda: neuron.IFNode(step_mode="m")), version


def bench_7(ctx: Context) -> list[Row]:
    from models.spiking import EIIFNeuron

    T, N = ctx.sizes.neuron_T, ctx.sizes.neuron_N
    gen = torch.Generator().manual_seed(ctx.seed)
    currents = torch.randn(T, N, generator=gen)
    constant = torch.randn(N, generator=gen) * (T / 4)
    constant_seq = constant.expand(T, N).contiguous()
    ours = EIIFNeuron()
    factory, version = spikingjelly_if()

    def ours_multi() -> None:
        ours.reset()
        ours.multi_step(currents)

    def ours_constant() -> None:
        ours.reset()
        ours.run_constant(constant, T)

    def ours_closed() -> None:
        ours.count_closed_form(constant, T)

    cases = [("a", "multi_step on [T, N] currents", ours_multi, currents),
             ("b", "run_constant (T steps of a constant current)", ours_constant, constant_seq),
             ("c", "count_closed_form (spike counts of a constant current)", ours_closed, constant_seq)]
    rows = []
    for suffix, what, ours_fn, sj_input in cases:
        title = f"EIIFNeuron {what}, T={T}, N={N:,}"
        ours_timer = per_call(lambda f=ours_fn: _no_grad(f), ctx.sizes.op_min_seconds)
        if factory is None:
            t = [ours_timer() for _ in range(ctx.repeats)]
            rows.append(Row(f"7{suffix}", title, Side("EIIFNeuron", "ms/call", summarize([x * 1e3 for x in t])),
                            Side("SpikingJelly IFNode", "ms/call", None, note=version), None, "speed", "speed ours / SpikingJelly"))
            continue
        node = factory()

        def sj(node=node, x=sj_input) -> None:
            node.reset()
            node(x)

        t_ours, t_sj = paired_times(ours_timer, per_call(lambda: _no_grad(sj), ctx.sizes.op_min_seconds), ctx.repeats)
        row = Row(f"7{suffix}", title, Side("EIIFNeuron", "ms/call", summarize([x * 1e3 for x in t_ours])),
                  Side("SpikingJelly IFNode(step_mode='m')", "ms/call", summarize([x * 1e3 for x in t_sj])),
                  summarize(paired_ratios(t_sj, t_ours)), "speed", "speed ours / SpikingJelly")
        rows.append(row)
    if factory is not None:
        rows[0].notes.append(f"spikingjelly {version}, torch CPU implementation (cupy/triton absent), hard reset, threshold 1: "
                             "binary spikes, while EI-IF is ternary with an adaptive threshold; same tensors, same T")
    else:
        rows[0].notes.append(version)
    return rows


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None


def _installed_version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _no_grad(fn: Callable[[], Any]) -> None:
    with torch.no_grad():
        fn()


RUNNERS: dict[int, Callable[[Context], list[Row]]] = {1: bench_1, 2: bench_2, 3: bench_3, 4: bench_4, 5: bench_5, 6: bench_6, 7: bench_7}


# ---------------------------------------------------------------------------- driver


def parse_only(text: str | None) -> list[int]:
    if text is None or not text.strip():
        return sorted(BENCHMARKS)
    chosen = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) not in BENCHMARKS:
            raise ValueError(f"--only takes benchmark numbers 1..{len(BENCHMARKS)} separated by commas, got {text!r}")
        chosen.append(int(part))
    return sorted(set(chosen))


def resolve_model(name: str, chosen: list[int], quick: bool) -> tuple[Any, str | None]:
    """(LoadedModel, fallback reason or None); a one-line ValueError when SmolLM2 is needed and absent."""
    from models.load import load_model

    if not any(b in NEEDS_MODEL for b in chosen):
        return None, None
    if name == TINY_MODEL:
        if not quick:
            raise ValueError(f"--model {TINY_MODEL} is for smoke runs; add --quick")
        return tiny_random_model(), "tiny random Llama asked for; not SmolLM2, goals not judged"
    try:
        loaded = load_model(name)
    except ValueError as err:
        needing = [str(b) for b in chosen if b in NEEDS_MODEL]
        needs = f"benchmarks {', '.join(needing)} need" if len(needing) > 1 else f"benchmark {needing[0]} needs"
        if not quick:
            raise ValueError(f"{needs} the model: {err} (or use --quick for a tiny random Llama, "
                             f"or leave {', '.join(needing)} out of --only)") from None
        return tiny_random_model(), f"tiny random Llama: {name} not available ({err}); goals not judged"
    if loaded.model.mode != "ann":
        raise ValueError(f"benchmarks 1, 2, 4, 5 need a float (ann) model; {name} is in mode {loaded.model.mode!r}")
    return loaded, None


def run_bench(options: dict[str, Any]) -> int:
    """Run the chosen benchmarks and write ``bench.json`` and ``bench.md`` into ``options['out']``."""
    import traceback

    from .allocator import tune_allocator
    from .runs import atomic_write_json, atomic_write_text, git_commit, machine_info, versions

    chosen = parse_only(options.get("only"))
    quick = bool(options.get("quick"))
    repeats = int(options.get("repeats") or 3)
    if repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {repeats}")
    threads = options.get("threads")
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(int(threads))
    batch_size = int(options.get("batch_size") or 8)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    out = Path(options.get("out") or "results/bench")
    loaded, fallback = resolve_model(options.get("model") or "smollm2-135m", chosen, quick)
    ctx = Context(QUICK if quick else FULL, repeats, batch_size, int(options.get("seed") or 0), loaded, fallback)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    commit = git_commit()  # the code that runs is the code at the start (commits may land during a long run)
    started = time.perf_counter()
    rows: list[Row] = []
    errors: list[dict[str, str]] = []
    for number in chosen:
        print(f"benchmark {number}: {BENCHMARKS[number]} ...", flush=True)
        t0 = time.perf_counter()
        try:
            new = RUNNERS[number](ctx)
        except Exception as err:  # one benchmark's failure must not lose the others
            errors.append({"benchmark": str(number), "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
            print(f"  failed: {type(err).__name__}: {err}", flush=True)
            continue
        for row in new:
            row.judge(tiny_model=ctx.tiny and number in NEEDS_MODEL)
            if ctx.tiny and number in NEEDS_MODEL:
                row.benchmark += f" [{TINY_MODEL}, not SmolLM2]"
        rows.extend(new)
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)
    all_versions = {**versions(), "spikingjelly": _installed_version("spikingjelly")}
    model_info = {"name": loaded.name if loaded is not None else None, "source": loaded.source if loaded is not None else None,
                  "fallback": fallback, "parameters": loaded.model.num_parameters() if loaded is not None else None}
    if loaded is None:
        model_info["name"] = "none needed"
    report = {
        "command": {k: v for k, v in options.items()},
        "benchmarks": {str(n): BENCHMARKS[n] for n in chosen},
        "quick": quick,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "sizes": asdict(ctx.sizes),
        "model": model_info,
        "machine": {**machine_info(), "cpu_model": _cpu_model()},
        "versions": all_versions,
        "git_commit": commit,
        "started_at": started_at,
        "seconds": time.perf_counter() - started,
        "noise": "ratios are per repeat with the two sides interleaved; figures on a shared machine are noisy",
        "allocator": "glibc malloc without mmap, freed blocks kept (harness/allocator.py), both sides alike" if tune_allocator() else "system default",
        "rows": [r.as_dict() for r in rows],
        "errors": errors,
        "notes": ctx.notes + [f"benchmark {e['benchmark']} failed: {e['error']}" for e in errors],
    }
    atomic_write_json(out / "bench.json", report)
    markdown = render_markdown(report, rows)
    atomic_write_text(out / "bench.md", markdown)
    print()
    print(markdown)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'} in {report['seconds']:.0f} s")
    return 1 if errors else 0
