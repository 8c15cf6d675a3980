"""Surrogate-gradient fine-tuning of spike-based self-attention (NeurTransformer, step 3).

After conversion (``models.convert.convert`` with GPT-2's ``attention="ssa"``) only the SSA
blocks train: the spike function is a Heaviside step whose backward is a surrogate derivative
(``models/spiking/surrogate.py``: ATan or sigmoid), so the blocks learn by back-propagation
through their T time steps. The loss per batch of next-token windows x, y is

    loss = lm_weight * CE(SNN logits, y) + hidden_weight * (1/N) sum_b ||h_b^SNN - h_b^ANN||^2 / ||h_b^ANN||^2

over the N blocks' outputs h_b (the float model's are the targets). The converted rest runs in
``qat`` mode, which computes exactly what ``snn-fused`` computes and passes straight-through
gradients to earlier SSA blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from models.arch.gpt2 import GPT2ForCausalLM
from models.fields import check_fields

from .data import global_batch


@dataclass(frozen=True)
class FinetuneConfig:
    """Steps, learning rate (5% linear warm-up, then cosine to lr/10), batch, loss weights and the batches' seed."""

    finetune_steps: int = 300
    finetune_lr: float = 2e-3
    finetune_batch_size: int = 16
    hidden_weight: float = 1.0
    lm_weight: float = 1.0
    seed: int = 1

    def __post_init__(self) -> None:
        check_fields(
            self, non_negative_int=("finetune_steps",), positive_int=("finetune_batch_size",), non_negative=("finetune_lr", "hidden_weight", "lm_weight")
        )

    def learning_rate(self, step: int) -> float:
        lr, steps, warmup = self.finetune_lr, self.finetune_steps, max(1, self.finetune_steps // 20)
        return lr * ((step + 1) / warmup if step < warmup else 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))


def hidden_state_loss(hidden: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the blocks of ||h - t||^2 / ||t||^2 per token (every block's output; ln_f's, last, follows from them)."""
    blocks = len(hidden) - 1
    return sum(((h - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp_min(1e-12)).mean() for h, t in zip(hidden[:blocks], target[:blocks])) / blocks


def finetune_ssa(
    snn: GPT2ForCausalLM,
    ann: GPT2ForCausalLM,
    stream: torch.Tensor,
    seq_len: int,
    config: FinetuneConfig,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, float]]:
    """Train the SSA parameters of ``snn`` (mode qat) only, against ``ann`` on windows of ``stream``; returns the per-step losses."""
    if snn.mode != "qat":
        raise ValueError(f"fine-tune the SSA model in mode qat (its forward equals snn-fused), got {snn.mode!r}")
    params = snn.ssa_parameters()
    for p in snn.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.finetune_lr, weight_decay=0.0)
    history = []
    snn.train()
    ann.eval()
    for step in range(config.finetune_steps):
        lr = config.learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = global_batch(stream, seq_len, config.finetune_batch_size, config.seed, step)
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.no_grad():
            _, target, _ = ann.forward_hidden(x, with_logits=False)
        logits, hidden, _ = snn.forward_hidden(x, with_logits=config.lm_weight > 0)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) if logits is not None else torch.zeros(())
        mse = hidden_state_loss(hidden, target)
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
