"""Tiny models of every architecture of ``models.arch.registry`` for the tests, and the same weights in another mode."""

from __future__ import annotations

import torch

from models.arch.base import CausalLM
from models.arch.registry import architecture
from models.arch.spiking_config import SpikingConfig

TINY = {
    "llama": dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
    "gpt2": dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32),
    "mamba2": dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, state_size=8, head_dim=16, chunk_size=4),
    "ttt": dict(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2, mini_batch_size=4),
    "braingpt": dict(
        vocab_size=61, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_pos_layers=1, num_attention_heads=2,
        mini_batch_size=4, max_position_embeddings=64, num_experts=3, top_k=2, expert_intermediate_size=8, embedding_populations=7,
    ),
}

# the TTT layer's inner model: W_0, b_0, its LN, the averaging offsets and the learning-rate gate
INNER_MODEL = ("W1", "b1", "ttt_norm_weight", "ttt_norm_bias", "learnable_token_idx")


def randomize_inner_model(module: torch.nn.Module, seed: int = 0) -> None:
    """Move the TTT inner model's parameters off their initial values, so a test sees them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.split(".")[-1] in INNER_MODEL or "lr_proj" in name:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


def tiny_model(arch: str, mode: str = "ann", seed: int = 0, **config) -> CausalLM:
    """A tiny model of ``arch`` in ``mode``, initialized from ``seed`` (TTT's inner model moved off its init), in eval mode."""
    config_cls, model_cls = architecture(arch)
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{**TINY[arch], **config}), SpikingConfig(mode=mode))
    if arch == "ttt":
        randomize_inner_model(model, seed)
    return model.eval()


def same_weights(model: CausalLM, mode: str, **spiking) -> CausalLM:
    """The same architecture and weights with operators for ``mode`` (and the other SpikingConfig settings given)."""
    other = type(model)(model.config, SpikingConfig(mode=mode, **spiking), init_weights=False)
    other.load_state_dict(model.state_dict(), strict=False)
    return other.eval()
