"""Stage 1 on a pretrained model: quantization-aware fine-tuning, distilled from the float model it starts from.

BrainTransformers and BrainGPT train the quantized ANN first and convert it afterwards; for a model
pretrained in float (SmolLM2), stage 1 is a fine-tuning. The QAT student starts from the float
weights with stage 2's calibration (``to_qat``: smoothed scales, staircase ranges) and learns under

    loss = d * tau^2 * KL(p_teacher^tau || p_student^tau) + (1 - d) * CE(student, next token)

(Hinton et al. 2015: ``distill`` = d, ``distill_temperature`` = tau), the teacher being the frozen
float model. With ``learn_quantizers`` every dynamic scale's clip and every smoothed input's
per-channel factors learn too (LSQ-style: the gradient reaches the scale through the straight-
through rounding); for the first ``scales_only_steps`` steps only those and the vectors (norms,
biases) learn. Whatever is learned lives in the quantizers, which every mode reads, so the result
converts to the SNN losslessly (stage 2 is an operator swap). Resume, DDP, logging and checkpoints
are the ``Trainer``'s; a resumed run must start from the same model with the same settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from models.arch.spiking_config import SpikingConfig
from models.calibrate import calibration_batches, collect_stats
from models.convert import to_qat
from models.load import LoadedModel
from models.spiking.quant import make_quantizers_learnable

from .config import TrainConfig
from .data import eval_windows, token_stream
from .trainer import Trainer


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, weight: float, temperature: float = 1.0
) -> tuple[torch.Tensor, dict[str, float]]:
    """``weight * tau^2 * KL(teacher || student) + (1 - weight) * CE`` per token, and its two parts (floats).

    ``student``/``teacher``: logits (..., V); ``targets``: next-token ids (...). The KL is summed over the
    vocabulary and averaged over tokens; at tau = 1 it is the excess cross-entropy of the student over the teacher.
    """
    vocab = student.shape[-1]
    s = student.float().reshape(-1, vocab)
    ce = F.cross_entropy(s, targets.reshape(-1))
    kl = torch.zeros((), device=s.device)
    if weight > 0:
        log_s = F.log_softmax(s / temperature, -1)
        log_t = F.log_softmax(teacher.float().reshape(-1, vocab) / temperature, -1)
        kl = F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature**2
    loss = weight * kl + (1 - weight) * ce if weight < 1 else kl
    return loss, {"token": float(ce.detach()), "kl": float(kl.detach())}


class FineTuner(Trainer):
    """A ``Trainer`` whose model is the QAT twin of a pretrained float model and whose loss distils from that model.

    ``init``: the loaded float model (with its tokenizer); ``identity``: what names it (name, path, sha256),
    checked on resume together with the spiking settings.
    """

    def __init__(
        self,
        init: LoadedModel,
        identity: dict[str, Any],
        config: TrainConfig,
        out: Path,
        spiking: SpikingConfig,
        device: str | None = None,
        name: str | None = None,
    ) -> None:
        if init.model.mode != "ann":
            raise ValueError(f"{init.name}: a model in mode {init.model.mode!r}; fine-tune from the float model it was converted from")
        if init.tokenizer is None:
            raise ValueError(f"{init.name}: has no tokenizer to read the training text with")
        self.init, self.init_identity = init, identity
        arch = init.model.config.to_dict()["architecture"]
        super().__init__(arch, "qat", config, init.model.config.to_dict(), out, device=device, spiking=spiking, name=name or f"{init.name}-qat")

    def _build_model(self, model_fields: dict[str, Any], spiking: SpikingConfig | None) -> None:
        """The float model's tokenizer and the training text, the frozen teacher, and its calibrated QAT twin as the student."""
        config = self.config
        self.tokenizer = self.init.tokenizer
        self.model_cls = type(self.init.model)
        self.train_streams = {"ids": token_stream(self.tokenizer, config.data, "train")}
        self.train_stream = self.train_streams["ids"]
        self.valid_stream = token_stream(self.tokenizer, config.data, "valid")[: config.eval_tokens + 1]
        self.teacher = self.init.model.to(self.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        calibration = calibration_batches(self.train_stream[: config.calibration_tokens].tolist(), config.seq_len, 2)
        self.spiking = spiking or SpikingConfig()
        self.model = to_qat(self.teacher, collect_stats(self.teacher, calibration), self.spiking).to(self.device)
        self.model.train()
        if config.learn_quantizers:
            make_quantizers_learnable(self.model)
        self.special = self.init.special_tokens()

    def identity(self) -> dict[str, Any]:
        s = self.spiking
        return {"init": self.init_identity, "bits": s.bits, "time_steps": s.T, "granularity": s.linear_granularity,
                "kind_bits": dict(s.kind_bits), "keep_float": list(s.keep_float)}

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["ids"].to(self.device)
        x, y = ids[:, :-1], ids[:, 1:]
        with self._autocast():
            logits, _ = (self.ddp or self.model)(x)
            with torch.no_grad():
                teacher, _ = self.teacher(x)
        loss, self.last_losses = distillation_loss(logits, teacher, y, self.config.distill, self.config.distill_temperature)
        return loss

    @torch.no_grad()
    def kl_to_teacher(self, stream: torch.Tensor) -> float:
        """Mean KL(teacher || student) per token (nats) over ``stream`` in sliding windows, each token scored once."""
        self.model.eval()
        total, count = 0.0, 0
        for window, scored in eval_windows(stream, self.config.seq_len, self.config.eval_stride):
            x = window[:-1][None].to(self.device)
            student = F.log_softmax(self.model(x)[0][0, -scored:].float(), -1)
            teacher = F.log_softmax(self.teacher(x)[0][0, -scored:].float(), -1)
            total += float(F.kl_div(student, teacher, log_target=True, reduction="sum"))
            count += scored
        self.model.train()
        return total / max(count, 1)

    def summary_extras(self) -> dict[str, Any]:
        return {"init": self.init_identity, "spiking": self.model.spiking.to_dict(), "valid_kl_to_teacher": self.kl_to_teacher(self.valid_stream)}
