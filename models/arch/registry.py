"""Architectures by name: their config class and model class (``snnbench train --arch NAME``).

Every model class follows the same interface as ``LlamaForCausalLM``:

- ``__init__(config, spiking: SpikingConfig | None = None, init_weights: bool = True)``;
- ``forward(input_ids, attention_mask=None, cache=None, use_cache=False) -> (float32 logits, cache or None)``,
  where ``attention_mask`` marks real tokens (1) and padding (0) and padding never changes what
  real tokens see; the cache object has ``expand(batch)`` (a batch-1 cache shared by ``batch`` rows);
- ``config`` (a frozen dataclass with ``to_dict``/``from_dict``, ``vocab_size`` and
  ``max_position_embeddings``), ``spiking``, ``mode``, ``num_parameters()``, ``greedy_generate``.
"""

from __future__ import annotations

import importlib

ARCHITECTURES: dict[str, tuple[str, str, str]] = {
    # name: (module, config class, model class)
    "llama": ("models.arch.llama", "LlamaConfig", "LlamaForCausalLM"),
    "mamba2": ("models.arch.mamba2", "Mamba2Config", "Mamba2ForCausalLM"),
    "ttt": ("models.arch.ttt", "TTTConfig", "TTTForCausalLM"),
    "gpt2": ("models.arch.gpt2", "GPT2Config", "GPT2ForCausalLM"),
    "braingpt": ("models.arch.braingpt", "BrainGPTConfig", "BrainGPTForCausalLM"),
}


def architecture(name: str) -> tuple[type, type]:
    """(config class, model class) of architecture ``name``; one-line error for unknown names."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    module, config_cls, model_cls = ARCHITECTURES[name]
    mod = importlib.import_module(module)
    return getattr(mod, config_cls), getattr(mod, model_cls)
