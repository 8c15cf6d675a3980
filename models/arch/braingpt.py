"""BrainGPT (section 3.1): a dual TTT model, part-of-speech predictions guiding token prediction.

Section 3.1.1 describes two sub-models, "a standard autoregressive language model" and "a model
focused on processing parts of speech", integrated sequentially by "a synapse-like mechanism
where part-of-speech predictions guide the text generation process"; the paper gives no
equations. What is built here, for the tokens x_1..x_t of a sequence:

1. embedding: e_t = SelectiveActivationEmbedding(x_t) (section 3.1.2, ``models/arch/embedding.py``),
   shared by both sub-models and tied to the LM head;
2. the part-of-speech model runs first: ``num_pos_layers`` TTT blocks over e_{1..t}, then a
   norm and a head giving logits over ``POS_TAGS`` (Brown's 12 universal tags + ``<unk>``) for
   the tag of the *next* token, x_{t+1} (morphology before word choice, Khanna et al.);
3. the synapse-like integration: the POS prediction q_t = softmax(POS logits) (SNNSoftmax in the
   spiking modes) reaches every token-model block l through its own synapse S_l (a Synapsis,
   13 -> hidden) and is added to that block's input: h_l <- h_l + S_l(q_t). Gradients of the
   token loss flow through q_t into the POS model, so both learn jointly;
4. the token model: ``num_hidden_layers`` TTT blocks (TTT-Linear with rotary positions, section
   3.1.2), each MLP a MoESynapsis of SwiGLU experts (``models/arch/moe.py``), then the LM head.

Both sub-models are causal, so the integration never looks ahead. Training (``training_loss``):
token cross-entropy + ``pos_loss_weight`` x tag cross-entropy (on tags that are known; ``<unk>``
tags, e.g. every tag of an untagged corpus and the sentence ends, are masked out) +
``balance_loss_weight`` x the mean MoE load-balancing loss. ``forward`` returns token logits
like every model, so BrainGPT is evaluated as a plain LM on any text; the POS branch runs on
any text too (``tag_logits`` gives its predictions). The trainer aligns Brown's tags with the ids
(``models.train.data.tag_streams``).

Ablation switches: ``dual`` (False: the token model alone, no POS model, no integration
synapses), ``moe`` (False: the dense SwiGLU of TTT), ``selective_embedding`` (False: a plain
embedding). Modes: every linear layer, router, synapse and head comes from ``Operators``; the
TTT inner loop stays float in every mode (as in ``ttt.py``) and is counted as ``float_ops``.
The cache is a ``TTTCache`` whose states are the POS model's layers followed by the token model's.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from models.fields import check_fields
from models.spiking import counters

from .base import CausalLM
from .blocks import SwiGLU
from .embedding import SelectiveActivationEmbedding
from .moe import GATINGS, MoESynapsis
from .operators import Operators
from .ttt import TTTBlock, TTTCache, TTTConfig

UNIVERSAL_TAGS = ("NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ", "PRT", "X", ".")
POS_TAGS = UNIVERSAL_TAGS + ("<unk>",)
UNK_TAG = len(UNIVERSAL_TAGS)  # the tag of untagged text and of sentence ends: never a training target
TAG_ID = {tag: i for i, tag in enumerate(POS_TAGS)}
TAGGED_CORPORA = ("brown",)


@dataclass(frozen=True)
class BrainGPTConfig(TTTConfig):
    """TTTConfig's fields (the blocks of both sub-models) and the dual model's, MoE's and the embedding's."""

    architecture: ClassVar[str] = "braingpt"
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # not TTT's
    num_hidden_layers: int = 10  # token model
    num_pos_layers: int = 2  # part-of-speech model
    dual: bool = True
    moe: bool = True
    num_experts: int = 4
    top_k: int = 1
    expert_intermediate_size: int | None = None  # None: intermediate_size (each expert as wide as the dense MLP)
    moe_gating: str = "softmax"
    selective_embedding: bool = True
    embedding_populations: int = 7
    active_fraction: float = 0.14
    pos_loss_weight: float = 0.5
    balance_loss_weight: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()  # the TTT fields' own checks
        check_fields(
            self,
            positive_int=("num_pos_layers", "num_experts", "top_k", "embedding_populations"),
            optional_positive_int=("expert_intermediate_size",),
            fraction=("active_fraction",),
            non_negative=("pos_loss_weight", "balance_loss_weight"),
            flag=("dual", "moe", "selective_embedding", "tie_word_embeddings", "use_gate"),
            choices={"moe_gating": GATINGS},
        )
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) must not exceed num_experts ({self.num_experts})")

    def ttt_config(self) -> TTTConfig:
        """The TTTConfig of the blocks (both sub-models share widths, heads and mini-batch size)."""
        return TTTConfig(**{f.name: getattr(self, f.name) for f in fields(TTTConfig)})


def _mlp(config: BrainGPTConfig, ops: Operators, layer: int) -> nn.Module:
    """A block's MLP: MoESynapsis of SwiGLU experts, or TTT's dense SwiGLU when ``moe`` is off."""
    if not config.moe:
        return SwiGLU(config.hidden_size, config.intermediate_size, ops, layer)
    width = config.expert_intermediate_size or config.intermediate_size
    experts = [SwiGLU(config.hidden_size, width, ops, layer) for _ in range(config.num_experts)]
    return MoESynapsis(config.hidden_size, config.hidden_size, config.num_experts, ops, config.top_k, config.moe_gating, experts)


def _blocks(config: BrainGPTConfig, ops: Operators, n: int) -> nn.ModuleList:
    # SNNSiLU ranges are per layer index; the two stacks share indices and calibration keeps the max of both
    return nn.ModuleList(TTTBlock(config.ttt_config(), ops, i, _mlp(config, ops, i)) for i in range(n))


class BrainGPTModel(nn.Module):
    """The token model: embedding, TTT blocks, the integration synapses (when dual), final norm."""

    def __init__(self, config: BrainGPTConfig, ops: Operators) -> None:
        super().__init__()
        if config.selective_embedding:
            self.embed_tokens = SelectiveActivationEmbedding(
                config.vocab_size, config.hidden_size, ops, config.embedding_populations, config.active_fraction, config.moe_gating
            )
        else:
            self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = _blocks(config, ops, config.num_hidden_layers)
        if config.dual:
            self.pos_synapses = nn.ModuleList(ops.linear(len(POS_TAGS), config.hidden_size, False) for _ in range(config.num_hidden_layers))
        self.norm = ops.norm(config.hidden_size, config.rms_norm_eps)


class PartOfSpeechModel(nn.Module):
    """TTT blocks over the shared embedding, predicting the next token's universal POS tag."""

    def __init__(self, config: BrainGPTConfig, ops: Operators) -> None:
        super().__init__()
        self.layers = _blocks(config, ops, config.num_pos_layers)
        self.norm = ops.norm(config.hidden_size, config.rms_norm_eps)
        self.head = ops.linear(config.hidden_size, len(POS_TAGS), False)
        self.softmax = ops.softmax()


class BrainGPTForCausalLM(CausalLM):
    """The dual model with its LM head; ``forward`` returns float32 token logits and the inner-loop state as the cache.

    It trains on the token ids and their next-token POS tags (``training_streams``: the trainer aligns them).
    """

    training_streams = ("ids", "tags")

    def build(self, ops: Operators) -> nn.Module:
        self.model = BrainGPTModel(self.config, ops)
        self.pos_model = PartOfSpeechModel(self.config, ops) if self.config.dual else None
        self.last_losses: dict[str, float] = {}
        return self.model.embed_tokens

    def _run(self, input_ids: torch.Tensor, mask: torch.Tensor, cache: TTTCache | None) -> tuple[torch.Tensor, torch.Tensor | None, TTTCache]:
        """(token logits, POS logits or None, the new cache), both logits in the input's order."""
        input_ids, mask, order = self.real_tokens_first(input_ids, mask, cache)  # real tokens first, as in TTTForCausalLM
        count = cache.count if cache is not None else mask.new_zeros(mask.shape[0], dtype=torch.int64)
        old = iter(cache.states) if cache is not None else None
        states = []

        def run_block(layer: TTTBlock, h: torch.Tensor) -> torch.Tensor:
            state = next(old) if old is not None else layer.seq_modeling_block.initial_state(mask.shape[0])
            h, state = layer(h, mask, state, count)
            states.append(state)
            return h

        x = self.model.embed_tokens(input_ids)
        pos_logits = guide = None
        if self.pos_model is not None:
            h = x
            for layer in self.pos_model.layers:
                h = run_block(layer, h)
            pos_logits = self.pos_model.head(self.pos_model.norm(h))
            guide = self.pos_model.softmax(pos_logits)  # q_t: the predicted distribution of the next tag
        for i, layer in enumerate(self.model.layers):
            if guide is not None:
                x = x + self.model.pos_synapses[i](guide)
                if counters.counting():
                    counters.record(self.model, float_ops=x.numel())  # the integration's addition
            x = run_block(layer, x)
        logits = self.original_order(self.lm_head(self.model.norm(x)).float(), order)
        if pos_logits is not None:
            pos_logits = self.original_order(pos_logits, order).float()
        return logits, pos_logits, TTTCache(states, (count + mask.sum(1)) % self.config.mini_batch_size)

    def run(self, input_ids: torch.Tensor, mask: torch.Tensor, cache: TTTCache | None) -> tuple[torch.Tensor, TTTCache]:
        logits, _, new_cache = self._run(input_ids, mask, cache)
        return logits, new_cache

    def forward(
        self,
        input_ids: torch.Tensor | dict[str, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache: TTTCache | None = None,
        use_cache: bool = False,
        training_loss: bool = False,
    ) -> tuple[torch.Tensor, TTTCache | None] | torch.Tensor:
        """Token logits and the cache; with ``training_loss=True`` (the trainer under DDP) ``input_ids`` is a batch and the joint loss is returned."""
        if training_loss:
            return self.training_loss(input_ids)
        return super().forward(input_ids, attention_mask, cache, use_cache)

    def tag_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits over ``POS_TAGS`` at each position for the tag of the next token."""
        if self.pos_model is None:
            raise ValueError("this BrainGPT has no part-of-speech model (dual = false)")
        return self._run(input_ids, self._input_mask(input_ids, attention_mask), None)[1]

    def balance_loss(self) -> torch.Tensor | None:
        """Mean load-balancing loss of the MoESynapsis modules of the last training forward, or None."""
        losses = [m.balance_loss for m in self.modules() if isinstance(m, MoESynapsis) and m.balance_loss is not None]
        return torch.stack(losses).mean() if losses else None

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token CE + pos_loss_weight x tag CE (known tags only) + balance_loss_weight x MoE balance (section 3.1.1, 3.1.2)."""
        ids = batch["ids"]
        logits, pos_logits, _ = self._run(ids[:, :-1], self._input_mask(ids[:, :-1], None), None)
        token_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss = token_loss
        parts = {"token": float(token_loss.detach())}
        if pos_logits is not None:
            tags = batch.get("tags")
            target = tags[:, 1:] if tags is not None else torch.full_like(ids[:, 1:], UNK_TAG)
            nll = F.cross_entropy(pos_logits.reshape(-1, len(POS_TAGS)), target.reshape(-1), ignore_index=UNK_TAG, reduction="sum")
            known = int((target != UNK_TAG).sum())
            pos_loss = nll / max(1, known)  # 0 (still in the graph) when no tag is known
            loss = loss + self.config.pos_loss_weight * pos_loss
            parts["pos"] = float(pos_loss.detach())
            parts["tagged"] = known
        balance = self.balance_loss()
        if balance is not None:
            loss = loss + self.config.balance_loss_weight * balance
            parts["balance"] = float(balance.detach())
        self.last_losses = parts
        return loss


@torch.no_grad()
def tag_accuracy(model: BrainGPTForCausalLM, streams: dict[str, torch.Tensor], context_window: int, max_tokens: int, batch_size: int = 16) -> float:
    """Share of known next-token tags the POS model predicts right, over consecutive windows of the streams."""
    if model.pos_model is None:
        raise ValueError("tag accuracy needs the part-of-speech model (dual = true)")
    ids, tags = streams["ids"][: max_tokens + 1], streams["tags"][: max_tokens + 1]
    starts = list(range(0, max(1, len(ids) - 1), context_window))
    right = known = 0
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    for i in range(0, len(starts), batch_size):
        chunk = [(ids[s : s + context_window + 1], tags[s : s + context_window + 1]) for s in starts[i : i + batch_size]]
        width = max(len(c[0]) for c in chunk) - 1
        x = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(x)
        target = torch.full_like(x, UNK_TAG)
        for j, (w, t) in enumerate(chunk):
            n = len(w) - 1
            x[j, :n], mask[j, :n], target[j, :n] = w[:-1], 1, t[1:]
        predicted = model.tag_logits(x.to(device), mask.to(device)).argmax(-1).cpu()
        scored = (target != UNK_TAG) & mask.bool()
        right += int((predicted == target)[scored].sum())
        known += int(scored.sum())
    model.train(was_training)
    return right / known if known else float("nan")
