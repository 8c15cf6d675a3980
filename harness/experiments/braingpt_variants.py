"""The runs of ``snnbench braingpt-ablate``: each variant's architecture, the switches over its config table, and what it is."""

from __future__ import annotations

from typing import Any

VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    # name: (architecture, switches over its config table, what it is)
    "braingpt": ("braingpt", {}, "dual + MoE + selective embedding"),
    "single": ("braingpt", {"dual": False}, "dual off (token model alone)"),
    "dense": ("braingpt", {"moe": False}, "MoE off (dense SwiGLU)"),
    "plain-embedding": ("braingpt", {"selective_embedding": False}, "selective embedding off"),
    "ttt": ("ttt", {}, "original TTT-Linear"),
    "llama": ("llama", {}, "the tiny Llama (attention) at the same budget"),
    "mamba2": ("mamba2", {}, "the tiny Mamba-2 (state space) at the same budget"),
}
