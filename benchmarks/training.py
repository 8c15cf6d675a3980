"""Benchmark 6: a training step of the tiny Llama in ``qat`` mode against the same step in ``ann`` mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.arch.llama import LlamaConfig, LlamaForCausalLM
from models.arch.spiking_config import SpikingConfig
from models.train.config import load_config

from .table import Row, Side
from .timing import paired_ratios, paired_times, summarize, timed
from .workload import Context


def training_step(ctx: Context) -> list[Row]:
    """6: one training step of the tiny Llama in qat mode against the same step in ann mode."""
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

    def stepper(model: LlamaForCausalLM):
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
