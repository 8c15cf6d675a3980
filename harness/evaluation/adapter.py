"""The lm-eval adapter: one ``TemplateLM`` for every snnbench model and execution mode.

Registered as lm-eval model ``snnbench`` when this module is imported. What works (lm-eval 0.4.13):

    snnbench lm-eval --model snnbench --model_args pretrained=smollm2-135m,mode=snn-fused \\
                     --tasks snnbench_arc_easy --limit 2 --output_path out --log_samples

``snnbench lm-eval ARGS...`` is lm-eval's own CLI (``harness/cli/lm_eval_cmd.py``): ARGS go to it
unchanged, with this module imported first and snnbench's ``tasks/`` folder added as
``--include_path`` (unless given); the task data is read from ``$SNNBENCH_DATA`` (default
``~/.cache/snnbench``). In Python: ``import harness.evaluation.adapter`` before
``lm_eval.simple_evaluate(model="snnbench", ...)``. snnbench also declares the entry point
``[project.entry-points."lm_eval.models"] snnbench = "harness.evaluation.adapter:SNNBenchLM"``,
for lm-eval versions that discover model plugins; 0.4.13 does not, so the plain
``lm_eval --model snnbench ...`` there ends with "no model for this name found".

``--model_args``: ``pretrained`` (registry name, checkpoint folder or .gguf), ``mode`` (ann, qat,
snn, snn-fused; a float model is calibrated first, with a progress bar), ``bits``,
``time_steps``, ``granularity``, ``coding``, ``calibration_data``, ``calibration_tokens``,
``max_length``, ``max_gen_toks``. ``--device``: lm-eval's default is ``cuda:0``; without CUDA
the adapter runs on the CPU and says so in one line. ``--batch_size``: an integer (lm-eval's
default is 1: one sequence per forward), or ``auto`` / ``auto:N`` (the same here): on a CPU
8, on CUDA the largest power of two up to ``--max_batch_size`` (default 64) whose forward
over a full context window fits in memory, probed once. Short sequences are batched up to
2048 tokens per forward whenever the batch size is above 1.

- ``_loglikelihood_tokens``: requests sorted longest first by lm-eval's ``Collator``, grouped
  by context so one forward serves all one-token continuations of a context, right-padded
  batches (the models' per-token scales make a sequence's score independent of its batch).
- ``loglikelihood_rolling``: lm-eval's rolling windows (``get_rolling_token_windows`` +
  ``make_disjoint_window``), batched across documents.
- ``generate_until``: greedy decoding with the KV cache (the models' own loop,
  ``CausalLM.greedy_decode``), stopped at the ``until`` strings (and end of text) per sequence.
- Data parallel: ``rank``/``world_size`` from ``torch.distributed`` (gloo on CPU, nccl on GPU),
  so ``accelerate launch`` / ``torchrun`` shard requests the way lm-eval expects.
- Accounting: every model forward is measured by ``Accounting.forward_pass`` (energy meters
  and op counters) and attributed to the requests' tasks by token count.

The adapter runs the model it is given, in the mode it is in: it never converts. lm-eval's own
CLI builds it through ``create_from_arg_string`` / ``create_from_arg_obj``, which load
``pretrained`` and convert it to ``mode`` through ``models.convert.in_mode`` first.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import Collator
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window, simple_parse_args_string
from tqdm.auto import tqdm

from models.arch.spiking_config import MODES, SpikingConfig
from models.calibrate import corpus_batches
from models.convert import in_mode
from models.load import LoadedModel, load_model
from models.train.distributed import distributed

from ..allocator import tune_allocator
from .accounting import Accounting
from .options import CALIBRATION, CALIBRATION_BATCH
from .placement import AUTO_BATCH_MAX, DEFAULT_BATCH, auto_batch_size, parse_batch_size, pick_device  # noqa: F401 (re-exported)

UNKNOWN_TASK = "unknown"
SHARED_CONTEXT_MIN = 256  # tokens: a shorter context shared by several answers is cheaper recomputed in a large batch than run alone
TOKEN_BUDGET = 2048  # tokens per forward for short sequences: more of them per batch, never fewer than batch_size
CONVERSION_ARGS = ("mode", "bits", "time_steps", "granularity", "coding", "calibration_data", "calibration_tokens")
MODEL_ARGS = {"pretrained", "model", "device", "batch_size", "max_batch_size", "max_length", "max_gen_toks", *CONVERSION_ARGS}


class TokenBudget:
    """Batch sizes for lm-eval's ``Collator.get_batched(batch_fn=...)`` over requests sorted longest first:
    as many sequences as fit ``budget`` tokens beside the longest one of the batch, never fewer than ``floor``.
    Counted operations include a batch's right-padding positions (few on length-sorted requests);
    ``--batch-size 1`` turns the budget off and counts every sequence alone."""

    def __init__(self, floor: int, budget: int, max_length: int) -> None:
        self.floor, self.budget, self.max_length = floor, budget, max_length
        self.start, self.size = 0, 0

    def __call__(self, i: int, requests: tuple) -> int:
        if i == 0 or i == self.start + self.size:  # a batch begins here: its first request is its longest
            _, context, continuation = requests[i]
            self.start, self.size = i, max(self.floor, self.budget // max(1, min(len(context) + len(continuation), self.max_length)))
        return self.size


def check_mode(mode: str | None) -> str | None:
    """``mode`` of ``--model_args`` (None: the model's own), or a one-line error naming the modes."""
    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def unique_requests(requests: list) -> tuple[list, list[int]]:
    """Requests without repeats of the same object, and where each original request sits among them.

    lm-eval pads the shorter rank of a data-parallel run with copies of its last request (the
    same ``Instance`` object); computing each object once gives the same answers and keeps the
    padding's cost out of the accounting.
    """
    position: dict[int, int] = {}
    unique, where = [], []
    for request in requests:
        if id(request) not in position:
            position[id(request)] = len(unique)
            unique.append(request)
        where.append(position[id(request)])
    return unique, where


class NonFiniteOutput(ValueError):
    """The model produced NaN or inf scores; the message names the mode and the task."""


def check_finite_scores(values: list[float], mode: str, tasks: list[str], what: str) -> None:
    bad = [task for value, task in zip(values, tasks) if not math.isfinite(value)]
    if bad:
        raise NonFiniteOutput(
            f"mode {mode}: {len(bad)} {what} score(s) are NaN or infinite (first on task {bad[0]}); the weights were checked "
            "finite when loaded, so the model or its conversion overflows: not a result"
        )


def _with_tokenizer(loaded: LoadedModel) -> LoadedModel:
    if loaded.tokenizer is None:
        raise ValueError(f"model {loaded.name!r} has no tokenizer; lm-eval needs one")
    return loaded


@register_model("snnbench")
class SNNBenchLM(TemplateLM):
    """The lm-eval adapter around a ready model: ``model`` (a ``models.load.LoadedModel``, as ``snnbench eval``
    gives it), or ``pretrained`` (registry name, checkpoint folder or .gguf) loaded as it is, in its own mode.

    To run a float model in another mode (ann, qat, snn, snn-fused), convert it first
    (``models.convert.in_mode``), or build the adapter with ``create_from_arg_string("pretrained=...,mode=...")``
    as lm-eval's CLI does.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        batch_size: int | str = 8,
        max_length: int | None = None,
        max_gen_toks: int = 256,
        device: str | None = None,
        model: LoadedModel | None = None,
        accounting: Accounting | None = None,
        max_batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        requested = parse_batch_size(batch_size)  # a bad value fails before any work
        tune_allocator()  # lm-eval's own CLI builds the adapter without going through snnbench's
        if model is None:
            if pretrained is None:
                raise ValueError("give pretrained=<registry name, checkpoint folder or .gguf file>")
            model = load_model(str(pretrained))
        self.loaded = _with_tokenizer(model)
        if kwargs.get("mode") not in (None, model.model.mode):
            raise ValueError(f"model {model.name!r} is in mode {model.model.mode!r}; the adapter runs a model as it is given: convert it first "
                             "(models.convert.in_mode) or build the adapter with SNNBenchLM.create_from_arg_string('pretrained=...,mode=...')")
        self._rank, self._world_size = distributed()
        self._device = pick_device(device, self._world_size)
        self.model = model.model.to(self._device).eval()
        self.tokenizer = model.tokenizer
        self.use_context_window(max_length)
        self.batch_size = requested if isinstance(requested, int) else auto_batch_size(self._device, self._probe, max_batch_size)
        if requested == "auto":
            self.batch_sizes = {0: self.batch_size}  # lm-eval reports it: "batch_size: auto (8)"
        self.max_gen_toks = int(max_gen_toks)
        self.mode_name = self.model.mode
        self.accounting = accounting or Accounting(self.model, meters=[], count_ops=False)
        self._task_of: list[str] = []

    def use_context_window(self, max_length: int | None) -> None:
        """Score and generate within the last ``max_length`` tokens (None: the model's own window)."""
        self.max_length = int(max_length or self.model.config.max_position_embeddings)

    @torch.no_grad()
    def _probe(self, size: int) -> None:
        """One unaccounted forward of ``size`` sequences of a full context window (``batch_size=auto``)."""
        self.model(torch.zeros(size, self.max_length, dtype=torch.long, device=self._device))

    # ---------------------------------------------------------------- built by lm-eval: load, convert, wrap

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> "SNNBenchLM":
        """lm-eval's hook for ``--model_args pretrained=...,mode=...[,bits=,time_steps=,granularity=,coding=,calibration_data=,calibration_tokens=]``
        (``coding``: the spike coding of a spiking mode, default the model's own)."""
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None) -> "SNNBenchLM":
        """Load ``pretrained`` (unless ``model`` is given), convert it to ``mode`` through ``models.convert.in_mode``
        (a float model is calibrated on ``calibration_tokens`` of ``calibration_data``), then wrap the ready model."""
        unknown = sorted(set(arg_dict) - MODEL_ARGS)
        if unknown:  # a misspelt key would otherwise be ignored, and the run made with other settings than asked
            raise ValueError(f"model_args: unknown {', '.join(map(repr, unknown))}; known: {', '.join(sorted(MODEL_ARGS))}")
        args = {**arg_dict, **{k: v for k, v in (additional_config or {}).items() if v is not None}}
        conversion = {k: args.pop(k) for k in CONVERSION_ARGS if k in args}
        parse_batch_size(args.get("batch_size"))  # the cheap checks first: nothing is loaded for a bad value
        mode = check_mode(conversion.get("mode"))
        loaded = args.pop("model", None)
        pretrained = args.pop("pretrained", None)
        if loaded is None and pretrained is None:
            raise ValueError("give pretrained=<registry name, checkpoint folder or .gguf file>")
        rank, world = distributed()
        device = pick_device(args.pop("device", None), world)  # said once, before loading: converted (calibrated) where it will run
        loaded = _with_tokenizer(loaded if loaded is not None else load_model(str(pretrained)))
        ignored = sorted(set(conversion) - {"mode", "coding"}) if loaded.model.mode != "ann" else []
        if ignored:
            raise ValueError(f"model_args {', '.join(ignored)}: {loaded.name} is already a {loaded.model.mode} model, and these set a float "
                             "model's conversion; leave them out, or give the float model as pretrained")
        loaded.model.to(device)
        time_steps = conversion.get("time_steps")
        granularity = conversion.get("granularity", "smoothed")
        spiking = SpikingConfig(bits=int(conversion.get("bits", 8)), time_steps=None if time_steps in (None, "None") else int(time_steps),
                                linear_granularity=granularity, norm_granularity=granularity,
                                coding=conversion.get("coding", loaded.model.spiking.coding))
        data, tokens = conversion.get("calibration_data", CALIBRATION["data"]), int(conversion.get("calibration_tokens", CALIBRATION["tokens"]))
        calibration = corpus_batches(loaded.tokenizer, data, tokens, CALIBRATION["window"], CALIBRATION_BATCH)
        calibrates = mode not in (None, "ann") and loaded.model.mode == "ann"
        if calibrates and rank == 0:
            print(f"snnbench: converting {loaded.name} to {mode} ({spiking.bits} bits): calibrating on {tokens} tokens of {data}",
                  file=sys.stderr, flush=True)
        ready = in_mode(loaded, mode, spiking, calibration, progress=calibrates and rank == 0)
        return cls(model=ready, device=str(device), **args)

    # ---------------------------------------------------------------- model and tokenizer

    @property
    def eot_token_id(self) -> int:
        return self.loaded.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self.loaded.bos_id if self.loaded.bos_id is not None else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        return self.loaded.name

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return self.tokenizer.encode(string, add_special_tokens=False).ids

    def tok_decode(self, tokens: Iterable[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=False)

    # ---------------------------------------------------------------- distributed primitives

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor
        parts = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return torch.stack(parts) if tensor.dim() == 0 else torch.cat(parts)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, out, dst=dst)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    # ---------------------------------------------------------------- forwards, each accounted

    def _forward(self, batch: list[list[int]], tasks: list[str]) -> torch.Tensor:
        """Log-softmax of a right-padded batch of token lists, in one accounted forward."""
        width = max(len(t) for t in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for i, tokens in enumerate(batch):
            ids[i, : len(tokens)] = torch.tensor(tokens)
            mask[i, : len(tokens)] = 1
        with self.accounting.forward_pass(tasks, [len(t) for t in batch]), torch.no_grad():
            logits, _ = self.model(ids.to(self._device), mask.to(self._device))
        return F.log_softmax(logits.float(), dim=-1).cpu()

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        unique, where = unique_requests(requests)
        self._task_of = [getattr(r, "task_name", None) or UNKNOWN_TASK for r in unique]
        answers = super().loglikelihood(unique, disable_tqdm=disable_tqdm)
        check_finite_scores([a[0] for a in answers], self.mode_name, self._task_of, "log-likelihood")
        return [answers[i] for i in where]

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        """Contexts shared by several requests are run once and their continuations scored from the
        KV cache (multiple choice: one context, k answers); the rest in right-padded batches."""
        tasks = self._task_of if len(self._task_of) == len(requests) else [UNKNOWN_TASK] * len(requests)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (_, context, continuation) in enumerate(requests):
            if len(context) + len(continuation) <= self.max_length:
                groups.setdefault(tuple(context), []).append(i)
        groups = {context: members for context, members in groups.items() if len(members) > 1 and len(context) >= SHARED_CONTEXT_MIN}
        shared = {i for members in groups.values() for i in members}
        bar = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc="loglikelihood")
        for context, members in sorted(groups.items(), key=lambda g: -len(g[0])):
            for i, answer in zip(members, self._score_shared_context(list(context), [requests[i][2] for i in members], tasks[members[0]])):
                results[i] = answer
                self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
            bar.update(len(members))
        rest = [i for i in range(len(requests)) if i not in shared]
        for i, answer in zip(rest, self._score_batched([requests[i] for i in rest], [tasks[i] for i in rest], bar)):
            results[i] = answer
        bar.close()
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def _score_shared_context(self, context: list[int], continuations: list[list[int]], task: str) -> list[tuple[float, bool]]:
        """One forward for the context, then every continuation from its KV cache."""
        with self.accounting.forward_pass([task], [len(context)]):
            logits, cache = self.model(torch.tensor([context], device=self._device), use_cache=True)
        first = F.log_softmax(logits[0, -1].float(), -1).cpu()  # predicts each continuation's first token
        answers: list[tuple[float, bool]] = []
        for start in range(0, len(continuations), self.batch_size):
            chunk = continuations[start : start + self.batch_size]
            tails = [c[:-1] for c in chunk]
            width = max(len(t) for t in tails)
            rest = None
            if width:
                ids = torch.zeros(len(chunk), width, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for j, tail in enumerate(tails):
                    ids[j, : len(tail)] = torch.tensor(tail, dtype=torch.long)
                    mask[j, : len(tail)] = 1
                expanded = cache.expand(len(chunk))
                with self.accounting.forward_pass([task] * len(chunk), [len(t) for t in tails]):
                    tail_logits, _ = self.model(ids.to(self._device), mask.to(self._device), cache=expanded)
                rest = F.log_softmax(tail_logits.float(), -1).cpu()
            for j, continuation in enumerate(chunk):
                rows = [first] + ([rest[j, k] for k in range(len(continuation) - 1)] if rest is not None else [])
                lp = torch.stack(rows)
                target = torch.tensor(continuation, dtype=torch.long)
                answers.append((float(lp.gather(-1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all())))
        return answers

    def _score_batched(self, requests, tasks: list[str], bar) -> list[tuple[float, bool]]:
        """Right-padded batches, longest first (lm-eval's Collator), one forward per batch."""
        if not requests:
            return []
        task_of = {id(request): task for request, task in zip(requests, tasks)}
        collator = Collator(
            requests,
            sort_fn=lambda r: (-len(r[1] + r[2]), tuple(r[1] + r[2])),
            group_by="contexts",
            group_fn=lambda r: r[1] + r[2][:-1],
        )
        results: list[tuple[float, bool]] = []
        # batch size 1 stays one padding-free sequence per forward (counted ops then include no padding positions)
        budget = TokenBudget(self.batch_size, TOKEN_BUDGET, self.max_length) if self.batch_size > 1 else None
        for chunk in collator.get_batched(n=self.batch_size, batch_fn=budget):
            inputs = [(context + continuation)[-(self.max_length + 1) :][:-1] for _, context, continuation in chunk]
            logprobs = self._forward(inputs, [task_of.get(id(request), UNKNOWN_TASK) for request in chunk])
            for (request_strings, context, continuation), tokens, lp in zip(chunk, inputs, logprobs):
                cont_lp = lp[len(tokens) - len(continuation) : len(tokens)].unsqueeze(0)  # (1, continuation, vocab)
                greedy_tokens = cont_lp.argmax(-1)
                for strings, cont_toks, logits in collator.get_cache(
                    req_str=request_strings, cxt_toks=context, cont_toks=continuation, logits=cont_lp
                ):
                    target = torch.tensor(cont_toks, dtype=torch.long)[None]
                    greedy = bool((greedy_tokens[:, -target.shape[1] :] == target).all())
                    chosen = logits[:, -target.shape[1] :].gather(2, target[..., None])
                    answer = (float(chosen.sum()), greedy)
                    results.append(answer)
                    self.cache_hook.add_partial("loglikelihood", strings, answer)
                    bar.update(1)
        return collator.get_original(results)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        unique, where = unique_requests(requests)
        totals = self._rolling(unique, disable_tqdm)
        check_finite_scores(totals, self.mode_name, [getattr(r, "task_name", None) or UNKNOWN_TASK for r in unique], "rolling log-likelihood")
        return [totals[i] for i in where]

    def _rolling(self, requests, disable_tqdm: bool) -> list[float]:
        windows: list[tuple[int, list[int], list[int], str]] = []
        for i, request in enumerate(requests):
            tokens = self.tok_encode(request.args[0])
            for context, target in map(
                make_disjoint_window,
                get_rolling_token_windows(tokens, self.prefix_token_id, self.max_length, context_len=1),
            ):
                windows.append((i, context, target, getattr(request, "task_name", None) or UNKNOWN_TASK))
        totals = [0.0] * len(requests)
        order = sorted(range(len(windows)), key=lambda w: -len(windows[w][1]) - len(windows[w][2]))
        bar = tqdm(total=len(windows), disable=disable_tqdm or self.rank != 0, desc="loglikelihood_rolling")
        for start in range(0, len(order), self.batch_size):
            chunk = [windows[w] for w in order[start : start + self.batch_size]]
            inputs = [(context + target)[:-1] for _, context, target, _ in chunk]
            logprobs = self._forward(inputs, [task for *_, task in chunk])
            for (i, context, target, _), tokens, lp in zip(chunk, inputs, logprobs):
                end = len(tokens)
                rows = lp[end - len(target) : end]
                totals[i] += float(rows.gather(-1, torch.tensor(target)[:, None]).sum())
            bar.update(len(chunk))
        bar.close()
        for request, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", request.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        unique, where = unique_requests(requests)
        texts = self._generate_all(unique, disable_tqdm)
        return [texts[i] for i in where]

    def _generate_all(self, requests, disable_tqdm: bool) -> list[str]:
        items = [(r.args[0], dict(r.args[1]), getattr(r, "task_name", None) or UNKNOWN_TASK) for r in requests]
        collator = Collator(items, sort_fn=lambda x: (-len(self.tok_encode(x[0])), x[0]), group_by="gen_kwargs", group_fn=lambda x: tuple(sorted((k, str(v)) for k, v in x[1].items())))
        results: list[str] = []
        bar = tqdm(total=len(items), disable=disable_tqdm or self.rank != 0, desc="generate_until")
        for chunk in collator.get_batched(n=self.batch_size):
            kwargs = chunk[0][1]
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            eos_text = self.tok_decode([self.eot_token_id])
            if eos_text not in until:
                until.append(eos_text)
            max_new = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            texts = self._generate([c for c, _, _ in chunk], until, max_new, [t for *_, t in chunk])
            for (context, kw, _), text in zip(chunk, texts):
                results.append(text)
                self.cache_hook.add_partial("generate_until", (context, kw), text)
            bar.update(len(chunk))
        bar.close()
        return collator.get_original(results)

    @torch.no_grad()
    def _generate(self, contexts: list[str], until: list[str], max_new: int, tasks: list[str]) -> list[str]:
        """Greedy decoding of a left-padded batch with the KV cache; each text cut at its first stop string."""
        encoded = [self.tok_encode(c)[-(self.max_length - max_new):] or [self.prefix_token_id] for c in contexts]
        width = max(len(e) for e in encoded)
        ids = torch.zeros(len(encoded), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, tokens in enumerate(encoded):
            ids[i, width - len(tokens):] = torch.tensor(tokens)
            mask[i, width - len(tokens):] = 1
        generated: list[list[int]] = [[] for _ in contexts]
        done = [False] * len(contexts)

        def forward(step_ids: torch.Tensor, step_mask: torch.Tensor | None, cache: Any) -> tuple[torch.Tensor, Any]:
            tokens = [len(e) for e in encoded] if cache is None else [0 if d else 1 for d in done]
            with self.accounting.forward_pass(tasks, tokens):
                return self.model(step_ids.to(self._device), None if step_mask is None else step_mask.to(self._device), cache=cache, use_cache=True)

        def take(next_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
            if not bool(torch.isfinite(logits).all()):
                raise NonFiniteOutput(f"mode {self.mode_name}: NaN or infinite logits while generating for task {tasks[0]}; not a result")
            for i, token in enumerate(next_ids.tolist()):
                if not done[i]:
                    generated[i].append(token)
                    text = self.tok_decode(generated[i])
                    done[i] = token == self.eot_token_id or any(s and s in text for s in until)
            return None if all(done) else next_ids

        self.model.greedy_decode(ids, mask, max_new, take, forward)
        texts = []
        for tokens in generated:
            text = self.tok_decode(tokens)
            cut = min((text.index(s) for s in until if s and s in text), default=len(text))
            texts.append(text[:cut])
        return texts
