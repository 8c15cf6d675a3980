"""Stage 1: (quantization-aware) pre-training of any architecture in mode ``ann`` or ``qat``.

BrainGPT section 3.2.1 and appendix C.3: AdamW, cosine annealing with warm restarts, gradient
accumulation and clipping. Also: mixed precision on GPUs that have bf16, periodic validation
perplexity, checkpoints with optimizer state and exact resume after a kill (the batch of a step
is a function of the seed and the step only), a progress bar and a JSONL log of loss and
perplexity. Under ``torchrun`` it runs data-parallel (DDP: gloo on CPU, nccl on GPU); the
global batch is the same whatever the number of processes, so the loss curve is too.

The output folder is locked from the Trainer's construction to the end of ``run`` (or ``close``),
so two trainings into one folder are refused; holding the lock, the Trainer first repairs what a
kill left there (a checkpoint swap cut short, temporary files).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from models.arch.registry import architecture
from models.arch.spiking_config import SpikingConfig
from models.spiking.quant import learned_quantizer_parameters
from tasks.files import FolderLock, atomic_write_json, atomic_write_text, remove_temporaries

from .checkpoint import read_trainer_state, recover_checkpoint, restore, save_training_checkpoint
from .config import TrainConfig
from .data import corpus_tokenizer, end_token, eval_windows, global_batches, shard, token_stream, training_streams
from .distributed import distributed
from .errors import TrainingError

LOG = "log.jsonl"
SUMMARY = "summary.json"


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine annealing from lr to min_lr, restarted every cycle (SGDR)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = step - config.warmup_steps
    period = config.restart_period or (config.max_steps - config.warmup_steps)
    while config.restart_period and t >= period:
        t -= period
        period *= config.restart_mult
    progress = min(1.0, t / max(1, period))
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def _log_lines_up_to(text: str, step: int) -> list[str]:
    """The lines of a JSONL training log for steps <= ``step``; a line a kill cut short is dropped."""
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record["step"] <= step:
            kept.append(line)
    return kept


def settings_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``"bits: 8 -> 6"`` for each top-level setting that differs."""
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(f"{k}: {old.get(k, '(unset)')} -> {new.get(k, '(unset)')}" for k in keys[:4])


def _all_mean(value: torch.Tensor, world: int) -> float:
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


@dataclass
class TrainResult:
    out: Path
    steps: int
    test_perplexity: float
    valid_perplexity: float
    tokens_per_second: float
    seconds: float


class Trainer:
    def __init__(
        self,
        arch: str,
        mode: str,
        config: TrainConfig,
        model_fields: dict[str, Any],
        out: Path,
        device: str | None = None,
        spiking: SpikingConfig | None = None,
        name: str | None = None,
    ) -> None:
        if mode not in ("ann", "qat"):
            raise ValueError(f"training runs in mode ann or qat (the spiking modes come from conversion), got {mode!r}")
        self.arch, self.mode, self.config, self.out = arch, mode, config, Path(out)
        self.name = name or f"{arch}-{mode}"
        self.rank, self.world = distributed()
        if (config.batch_size // config.grad_accum) % self.world:
            raise ValueError(f"batch_size / grad_accum ({config.batch_size // config.grad_accum}) must divide over {self.world} processes")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", self.rank % torch.cuda.device_count())
        # rank 0 holds the lock and repairs the folder; the other ranks wait for it at the tokenizer barrier
        self.lock = FolderLock(self.out, f"training run {self.out}", advice="wait for it or use another --out").acquire() if self.rank == 0 else None
        try:
            if self.lock is not None:
                self._repair()
            self._build(model_fields, spiking)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ setup

    def _repair(self) -> None:
        """Undo what a kill left in the output folder: finish or roll back a checkpoint swap, delete temporary files."""
        recover_checkpoint(self.out)
        remove_temporaries(self.out)

    def close(self) -> None:
        """Release the output folder's lock (``run`` does it when it ends); safe to call twice."""
        if self.lock is not None:
            self.lock.release()

    def _build(self, model_fields: dict[str, Any], spiking: SpikingConfig | None) -> None:
        """Tokenizer, token streams and model (``_build_model``), then optimizer, counters and (under torchrun) the DDP wrapper."""
        self._build_model(model_fields, spiking)
        self.optimizer = self._optimizer()
        self.step = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.ddp = None
        if self.world > 1:
            self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _build_model(self, model_fields: dict[str, Any], spiking: SpikingConfig | None) -> None:
        """Tokenizer, token streams, the model to train and its special tokens."""
        arch, mode, config = self.arch, self.mode, self.config
        self.tokenizer = self._tokenizer()
        config_cls, model_cls = architecture(arch)
        self.model_cls = model_cls
        self.train_streams = training_streams(self.tokenizer, config.data, "train", model_cls.training_streams)
        self.train_stream = self.train_streams["ids"]
        self.valid_stream = token_stream(self.tokenizer, config.data, "valid")[: config.eval_tokens + 1]
        fields = {**model_fields, "vocab_size": self.tokenizer.get_vocab_size()}
        fields.setdefault("max_position_embeddings", max(config.seq_len, 64))
        try:
            model_config = config_cls.from_dict(fields)
        except (TypeError, ValueError) as err:
            raise ValueError(f"model config for {arch}: {err}") from None
        torch.manual_seed(config.seed)
        spiking = (spiking or SpikingConfig()).with_mode(mode)
        self.model = model_cls(model_config, spiking).to(self.device)
        self.special = {"eos_id": end_token(self.tokenizer), "bos_id": None}

    def _tokenizer(self):
        folder = self.out
        if self.world > 1 and self.rank != 0:
            dist.barrier()  # rank 0 trains and saves the tokenizer first
            return corpus_tokenizer(self.config.data, self.config.tokenizer, self.config.vocab_size, folder)
        tokenizer = corpus_tokenizer(self.config.data, self.config.tokenizer, self.config.vocab_size, folder)
        if self.world > 1:
            dist.barrier()
        return tokenizer

    def _optimizer(self) -> torch.optim.Optimizer:
        """AdamW: matrices with weight decay, vectors without, learned quantizer parameters (when any) in a
        group of their own at ``quantizer_lr`` (``lr_scale`` times the schedule's lr)."""
        decay, no_decay, quantizer = [], [], []
        learned = {id(p) for p in learned_quantizer_parameters(self.model)}
        seen = set()
        for name, p in self.model.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (quantizer if id(p) in learned else decay if p.dim() >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if quantizer:
            scale = (self.config.quantizer_lr or self.config.lr) / self.config.lr
            groups.append({"params": quantizer, "weight_decay": 0.0, "lr_scale": scale})
        self.matrices = decay  # what a scales-only phase keeps still
        return torch.optim.AdamW(groups, lr=self.config.lr, betas=(self.config.beta1, self.config.beta2))

    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the checkpoint beyond architecture and mode (a fine-tuning: its starting model)."""
        return {}

    def _autocast(self):
        use_bf16 = self.config.precision == "bf16" or (
            self.config.precision == "auto" and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        )
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # ------------------------------------------------------------------ loop

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        model = self.ddp or self.model
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self._autocast():
            if hasattr(self.model, "training_loss"):
                if self.ddp is not None:  # DDP hooks run on forward: route the custom loss through it
                    return self.ddp(batch, training_loss=True)
                return self.model.training_loss(batch)
            x, y = batch["ids"][:, :-1], batch["ids"][:, 1:]
            logits, _ = model(x)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))

    def train_step(self) -> float:
        config = self.config
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, self.step) * group.get("lr_scale", 1.0)
        windows = global_batches(self.train_streams, config.seq_len, config.batch_size, config.seed, self.step)
        batch = {name: shard(w, self.rank, self.world) for name, w in windows.items()}
        micro = batch["ids"].shape[0] // config.grad_accum
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros(())
        for i in range(config.grad_accum):
            part = {name: w[i * micro : (i + 1) * micro] for name, w in batch.items()}
            last = i == config.grad_accum - 1
            context = self.ddp.no_sync() if (self.ddp is not None and not last) else nullcontext()
            with context:
                loss = self._loss(part) / config.grad_accum
                loss.backward()
            total += loss.detach().cpu()
        if self.step < config.scales_only_steps:
            for p in self.matrices:  # AdamW skips a parameter without a gradient: no update, no decay
                p.grad = None
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.step += 1
        self.tokens_seen += config.batch_size * config.seq_len
        return _all_mean(total, self.world)

    @torch.no_grad()
    def perplexity(self, stream: torch.Tensor, batch_size: int = 32) -> float:
        """Perplexity of ``stream`` with sliding windows (each scored token has >= seq_len - stride context)."""
        self.model.eval()
        nll, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        windows = eval_windows(stream, self.config.seq_len, self.config.eval_stride)[self.rank :: self.world]
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            width = max(len(w) for w, _ in chunk) - 1
            x = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros_like(x)
            for j, (window, _) in enumerate(chunk):
                x[j, : len(window) - 1] = window[:-1]
                mask[j, : len(window) - 1] = 1
            logits, _ = self.model(x.to(self.device), mask.to(self.device))
            logprobs = F.log_softmax(logits.float(), -1).cpu()
            for j, (window, scored) in enumerate(chunk):
                n = len(window) - 1
                target = window[1:][-scored:]
                nll -= logprobs[j, n - scored : n].gather(-1, target[:, None]).sum().double()
                count += scored
        if self.world > 1:
            both = torch.stack([nll, count])
            dist.all_reduce(both)
            nll, count = both
        self.model.train()
        return math.exp(float(nll / count))

    def summary_extras(self) -> dict[str, Any]:
        """More of summary.json (a fine-tuning: its starting model and the KL to it)."""
        return {}

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.out / LOG, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    def _checkpoint(self) -> None:
        if self.rank == 0:
            save_training_checkpoint(
                self.out, self.model, self.tokenizer, self.special, self.optimizer,
                {"name": self.name, "arch": self.arch, "mode": self.mode, "step": self.step, "tokens_seen": self.tokens_seen,
                 "elapsed": self.elapsed, "config": self.config.to_dict(), "world_size": self.world, "identity": self.identity()},
            )
        if self.world > 1:
            dist.barrier()

    def _resume(self, fresh: bool) -> None:
        state = None if fresh else read_trainer_state(self.out)
        if state is None:
            if self.rank == 0:
                (self.out / LOG).unlink(missing_ok=True)
            return
        if state.get("arch") != self.arch or state.get("mode") != self.mode:
            raise ValueError(
                f"{self.out}: its checkpoint is a {state.get('arch')} model in mode {state.get('mode')}, "
                f"this run trains {self.arch} in mode {self.mode}; use another --out or --fresh"
            )
        if state.get("identity", {}) != self.identity():
            raise ValueError(
                f"{self.out}: its checkpoint was trained with other settings ({settings_change(state.get('identity', {}), self.identity())}); "
                "use another --out, or --fresh to start over"
            )
        restore(self.out, self.model, self.optimizer)
        self.step, self.tokens_seen, self.elapsed = state["step"], state["tokens_seen"], state["elapsed"]
        if self.rank == 0 and (self.out / LOG).exists():  # drop log lines written after the checkpoint
            kept = _log_lines_up_to((self.out / LOG).read_text(), self.step)
            atomic_write_text(self.out / LOG, "".join(line + "\n" for line in kept))

    def run(self, fresh: bool = False, progress: bool = True) -> TrainResult:
        """Train to ``max_steps`` (resuming the checkpoint unless ``fresh``) and evaluate; releases the folder's lock."""
        try:
            return self._run(fresh, progress)
        finally:
            self.close()

    def _run(self, fresh: bool, progress: bool) -> TrainResult:
        config = self.config
        self._resume(fresh)
        self.model.train()
        bar = tqdm(total=config.max_steps, initial=self.step, disable=not progress or self.rank != 0, desc=f"train {self.name}", unit="step")
        last_good = self.step
        valid = "-"  # the last validation perplexity, shown until the next evaluation
        while self.step < config.max_steps:
            started = time.perf_counter()
            loss = self.train_step()
            self.elapsed += time.perf_counter() - started
            if not math.isfinite(loss):
                raise TrainingError(
                    f"the loss became {loss} at step {self.step}; stopped. The last good checkpoint (step {last_good}) "
                    f"is kept in {self.out / 'checkpoint'}; lower lr or raise grad_clip and resume"
                )
            record = {"step": self.step, "loss": loss, "lr": learning_rate(config, self.step - 1), "tokens": self.tokens_seen,
                      "elapsed": self.elapsed, "tokens_per_s": self.tokens_seen / self.elapsed if self.elapsed else None}
            # the token cross-entropy on its own (BrainGPT's objective adds POS and balance terms; its last micro-batch's parts)
            parts = getattr(self, "last_losses", None) or getattr(getattr(self.model, "module", self.model), "last_losses", None) or {"token": loss}
            record.update({f"{k}_loss": v for k, v in parts.items() if k in ("token", "pos", "balance", "kl")})
            if self.step % config.eval_interval == 0 or self.step == config.max_steps:
                record["valid_perplexity"] = self.perplexity(self.valid_stream)
                valid = f"{record['valid_perplexity']:.1f}"
            self._log(record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", valid_ppl=valid)
            if self.step % config.checkpoint_interval == 0 or self.step == config.max_steps:
                self._checkpoint()
                last_good = self.step
        bar.close()
        return self.finish()

    def test_stream(self) -> torch.Tensor:
        """The test split's tokens the final perplexity reads: ``test_tokens`` of them (0: all)."""
        stream = token_stream(self.tokenizer, self.config.data, "test")
        return stream[: self.config.test_tokens + 1] if self.config.test_tokens else stream

    def finish(self) -> TrainResult:
        test = self.perplexity(self.test_stream())
        valid = self.perplexity(self.valid_stream)
        result = TrainResult(self.out, self.step, test, valid, self.tokens_seen / self.elapsed if self.elapsed else float("nan"), self.elapsed)
        if self.rank == 0:
            atomic_write_json(self.out / SUMMARY, {
                "name": self.name, "arch": self.arch, "mode": self.mode, "steps": self.step, "tokens_seen": self.tokens_seen,
                "parameters": self.model.num_parameters(), "test_perplexity": test, "valid_perplexity": valid,
                "train_seconds": self.elapsed, "tokens_per_second": result.tokens_per_second, "world_size": self.world,
                "config": self.config.to_dict(), "model": self.model.config.to_dict(),
                "eval": f"sliding windows of {self.config.seq_len} tokens, stride {self.config.eval_stride}, <eos> counted as a token",
                **self.summary_extras(),
            })
        return result

