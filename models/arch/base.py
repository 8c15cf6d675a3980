"""What every causal language model in ``models/arch`` shares: init, input checks, padding, greedy decoding.

A model subclasses :class:`CausalLM`, sets ``config`` (with ``vocab_size``) and ``spiking`` (a
:class:`SpikingConfig`) and implements ``run(input_ids, mask, cache) -> (float32 logits, new cache)``;
``forward(input_ids, attention_mask, cache=..., use_cache=...)`` checks the input and calls it,
whatever the cache holds (keys and values, a recurrent state). Which state keys exist only in
some modes comes from the modules' classes (``mode_state_keys``, ``calibrated_keys``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from types import NoneType, UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

import torch
from torch import nn

from models.spiking import counters
from models.spiking.neuron import set_coding

from .operators import Operators
from .spiking_config import SpikingConfig


class Stack(nn.Module):
    """Input embeddings, a list of layers and a final norm, under the attribute names of the architecture's
    checkpoints (``("embed_tokens", "layers", "norm")`` for Llama), registered in that order."""

    def __init__(self, names: tuple[str, str, str], embeddings: nn.Module, layers: list[nn.Module], norm: nn.Module) -> None:
        super().__init__()
        for name, module in zip(names, (embeddings, nn.ModuleList(layers), norm)):
            setattr(self, name, module)


class CausalLM(nn.Module):
    """Base of the decoders: GPT-2-style init (N(0, 0.02), zero biases), id checks, padding, greedy generation."""

    config: object
    spiking: object
    training_streams: ClassVar[tuple[str, ...]] = ("ids",)  # the aligned corpus streams it trains on (BrainGPT adds "tags")

    def __init__(self, config: Any, spiking: SpikingConfig | None = None, init_weights: bool = True) -> None:
        """The architecture's modules from the operator factory (``build``), the language-model head (tied to the
        input embeddings when the config says so), the spike coding of ``spiking`` on every EI-IF neuron, then, with
        ``init_weights``, the init (``_init_weights``, then ``_arch_init``)."""
        super().__init__()
        self.config = config
        self.spiking = spiking or SpikingConfig()
        ops = Operators(self.spiking)
        embeddings = self.build(ops)
        self.lm_head = ops.linear(self.config.hidden_size, self.config.vocab_size, False, kind="lm_head")
        if self.config.tie_word_embeddings:
            self.lm_head.weight = embeddings.weight
        if self.spiking.coding != "rate":
            set_coding(self, self.spiking.coding)
        if init_weights:
            self.apply(self._init_weights)
            self._arch_init()

    def build(self, ops: Operators) -> nn.Module:
        """Create the architecture's modules (before the head); returns the input embeddings (a module with ``weight``)."""
        raise NotImplementedError

    def _arch_init(self) -> None:
        """The architecture's own init after the shared one (e.g. GPT-2's scaled residual projections)."""

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.Embedding) or (isinstance(weight, nn.Parameter) and weight.dim() == 2):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(getattr(module, "bias", None), nn.Parameter):
            nn.init.zeros_(module.bias)

    @property
    def mode(self) -> str:
        return self.spiking.mode

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, cache: Any = None, use_cache: bool = False
    ) -> tuple[torch.Tensor, Any]:
        """(float32 logits (batch, length, vocab), the new cache when ``use_cache`` else None). ``attention_mask``
        marks real tokens (1) and padding (0); padding never changes what real tokens see."""
        logits, new_cache = self.run(input_ids, self._input_mask(input_ids, attention_mask), cache)
        return logits, (new_cache if use_cache else None)

    def run(self, input_ids: torch.Tensor, mask: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """The architecture's forward on checked ids and a bool mask: (float32 logits, the new cache)."""
        raise NotImplementedError

    @staticmethod
    def real_tokens_first(input_ids: torch.Tensor, mask: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(ids, mask, order) with each row's real tokens moved to the front by a stable permutation ``order``
        (None when nothing is padded), so a recurrent layer sees right-padded rows; checks the cache's batch."""
        if cache is not None and cache.batch_size != input_ids.shape[0]:
            raise ValueError(f"cache has batch size {cache.batch_size}, input_ids has {input_ids.shape[0]}")
        if bool(mask.all()):
            return input_ids, mask, None
        order = torch.argsort((~mask).to(torch.int64), dim=1, stable=True)
        return input_ids.gather(1, order), mask.gather(1, order), order

    @staticmethod
    def original_order(x: torch.Tensor, order: torch.Tensor | None) -> torch.Tensor:
        """``x`` (batch, length, ...) put back in the input's order (``real_tokens_first`` undone)."""
        return x if order is None else x.gather(1, torch.argsort(order, dim=1)[..., None].expand_as(x))

    def _input_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Check ``input_ids``; the attention mask as bool, all True when None, of the ids' shape."""
        self._check_ids(input_ids)
        B, L = input_ids.shape
        mask = torch.ones(B, L, dtype=torch.bool, device=input_ids.device) if attention_mask is None else attention_mask.bool()
        if mask.shape != (B, L):
            raise ValueError(f"attention_mask must have shape {(B, L)}, got {tuple(mask.shape)}")
        return mask

    def _check_ids(self, input_ids: torch.Tensor) -> None:
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"input_ids must be a 2-D integer tensor (batch, length), got {input_ids.dtype} of shape {tuple(input_ids.shape)}")
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= self.config.vocab_size):
            raise ValueError(f"input_ids has ids outside the vocabulary [0, {self.config.vocab_size})")

    @torch.no_grad()
    def greedy_decode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        max_new_tokens: int,
        take: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None],
        forward: Callable[[torch.Tensor, torch.Tensor | None, Any], tuple[torch.Tensor, Any]] | None = None,
    ) -> None:
        """The greedy decoding loop (of ``greedy_generate`` and of the lm-eval adapter): one forward over the prompt,
        then up to ``max_new_tokens`` steps. A step gives every sequence's most likely next token and the last logits
        to ``take(next_ids, logits)``, which returns the ids to feed back through the cache, or None to stop.
        ``forward(ids, mask, cache) -> (logits, cache)`` runs the model (default: the model itself)."""
        forward = forward or (lambda ids, mask, cache: self(ids, mask, cache=cache, use_cache=True))
        logits, cache = forward(input_ids, attention_mask, None)
        for _ in range(max_new_tokens):
            last = logits[:, -1]
            fed = take(last.argmax(-1), last)
            if fed is None:
                return
            logits, cache = forward(fed[:, None], None, cache)

    def greedy_generate(
        self, input_ids: torch.Tensor, max_new_tokens: int, stop_ids: tuple[int, ...] = (), attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Greedy continuation through the model's cache; returns (batch, new tokens), padded with the first stop id."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        out: list[torch.Tensor] = []
        pad = stop_ids[0] if stop_ids else 0

        def take(next_ids: torch.Tensor, _: torch.Tensor) -> torch.Tensor | None:
            nonlocal done
            next_ids = torch.where(done, torch.full_like(next_ids, pad), next_ids)
            out.append(next_ids)
            if stop_ids:
                done = done | torch.isin(next_ids, torch.tensor(stop_ids, device=next_ids.device))
                if bool(done.all()):
                    return None
            return next_ids

        self.greedy_decode(input_ids, attention_mask, max_new_tokens, take)
        return torch.stack(out, dim=1)

    def num_parameters(self) -> int:
        """The network's parameters counted once (tied embeddings are one matrix); the quantizers' clips and
        smoothing factors are settings of the coding, not counted."""
        from models.spiking.quant import quantizer_parameters

        coding = {id(p) for p in quantizer_parameters(self)}
        return sum(p.numel() for i, p in {id(p): p for p in self.parameters()}.items() if i not in coding)


def declared_keys(model: nn.Module, attribute: str) -> set[str]:
    """The state-dict keys of ``model`` that its modules' classes list in ``attribute`` (a tuple of own state names)."""
    keys = set(model.state_dict(keep_vars=True))
    return {f"{path}.{name}" if path else name for path, module in model.named_modules() for name in getattr(type(module), attribute, ())} & keys


def mode_state_keys(model: nn.Module) -> set[str]:
    """Keys of the state only the quantized / spiking modes have (``mode_state`` of quantizers, neurons, Synapsis):
    a checkpoint or model of another mode lacks them or has more of them."""
    return declared_keys(model, "mode_state")


def calibrated_keys(model: nn.Module) -> set[str]:
    """Keys of the state stage-2 calibration fits to the float model (``calibrated_state``, e.g. SSA's spike values)."""
    return declared_keys(model, "calibrated_state")


def spiking_coverage(stats: counters.OpStats) -> float:
    """Share of the model's operations that run as spike-driven accumulations: ACs / (ACs + MACs + float ops)."""
    total = stats.Effective_ACs + stats.Effective_MACs + stats.float_ops
    return stats.Effective_ACs / total if total else math.nan


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` (read from JSON or TOML) is of type ``hint``.

    A bool fits only ``bool``; an int fits ``int`` and ``float`` but a bool fits neither; a
    union fits any member (``X | None`` takes None); a list or tuple fits a ``tuple``/``list``
    hint element by element; anything else is an ``isinstance`` check.
    """
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, UnionType):
        return any(_fits(value, member) for member in args)
    if hint in (int, float):
        return isinstance(value, int if hint is int else (int, float)) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(_fits, value, args))
        return all(_fits(v, args[0]) for v in value) if args else True
    return isinstance(value, origin or hint)


def _type_name(hint: Any) -> str:
    """``hint`` as written in the dataclass: ``int``, ``int | None``, ``tuple[str, ...]``."""
    if get_origin(hint) in (Union, UnionType):
        return " | ".join(_type_name(member) for member in get_args(hint))
    if hint is NoneType:
        return "None"
    return hint.__name__ if isinstance(hint, type) and not get_args(hint) else str(hint)


def _as_declared(value: Any, hint: Any) -> Any:
    """``value`` with a JSON list turned into a tuple where the field is a tuple (frozen configs stay hashable)."""
    tuple_field = tuple in (get_origin(hint), *(get_origin(member) for member in get_args(hint)))
    return tuple(value) if tuple_field and isinstance(value, list) else value


class ArchConfig:
    """Mixin of the config dataclasses: a JSON round trip tagged with the architecture's name."""

    architecture: ClassVar[str]
    presets: ClassVar[dict[str, dict[str, Any]]] = {}  # named sizes (``preset``)

    def to_dict(self) -> dict[str, Any]:
        return {"architecture": self.architecture, **asdict(self)}  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The config ``d`` holds (``to_dict``'s output or a TOML table).

        A one-line ValueError when ``d`` is not a mapping, has a key that is not a field, or a
        value not of its field's declared type (see ``_fits``).
        """
        if not isinstance(d, dict):
            raise ValueError(f"{cls.architecture} config must be a mapping of field names to values, got {d!r}")
        d = {k: v for k, v in d.items() if k != "architecture"}
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))  # type: ignore[attr-defined]
        if unknown:
            raise ValueError(f"{cls.architecture} config has unknown keys {unknown}")
        hints = get_type_hints(cls)
        for name, value in d.items():
            if not _fits(value, hints[name]):
                raise ValueError(f"{cls.architecture} config field {name} must be of type {_type_name(hints[name])}, got {value!r}")
        return cls(**{name: _as_declared(value, hints[name]) for name, value in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Any:
        """A named size of ``presets``, with fields overridden (e.g. ``vocab_size`` of your tokenizer)."""
        if name not in cls.presets:
            raise ValueError(f"unknown {cls.architecture} preset {name!r}; known: {', '.join(cls.presets)}")
        return cls(**{**cls.presets[name], **overrides})
