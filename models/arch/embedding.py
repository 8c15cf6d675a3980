"""SelectiveActivationEmbedding: several embedding matrices, a few active per token (BrainGPT section 3.1.2).

The paper: "multiple embedding matrices, corresponding to diverse neuron populations", with a
selective activation inspired by Jamali et al. (2024), where about 14% of prefrontal neurons
respond selectively to semantic domains. It gives no equations; the mechanism here, for a
token id t:

    b(t) = E[t]                                      the base population: one embedding matrix E (V x D),
                                                     always active, tied to the LM head
    e(t) = b(t) + sum_{p in A(t)} w_p(t) W_p b(t)    A(t): the populations a learned selector activates

- population p's embedding matrix is E W_p^T (V x D), stored factorized: E is shared and each
  population adds one D x D synapse W_p, so P populations cost P D^2 parameters, not P V D;
- the selector is the router of a ``MoESynapsis`` over the base embedding: a Synapsis scoring
  the P populations, the top k = max(1, round(active_fraction P)) active, weights w_p from its
  softmax (see ``moe.py``); with P = 7 and active_fraction = 0.14, k = 1 and exactly 1/7 =
  14.3% of the selective populations fire for every token;
- only the active populations' synapses run (and are counted); the base lookup is float, like
  every embedding lookup here. The selector is a function of the token id alone, so each word
  has a fixed set of populations: a word's "semantic domains".
"""

from __future__ import annotations

import torch
from torch import nn

from models.spiking import counters

from .moe import MoESynapsis
from .operators import Operators


class SelectiveActivationEmbedding(nn.Module):
    """A base embedding plus ``populations`` selective populations, ``top_k`` of them active per token."""

    def __init__(
        self, vocab_size: int, hidden_size: int, ops: Operators, populations: int = 7, active_fraction: float = 0.14, gating: str = "softmax"
    ) -> None:
        super().__init__()
        if isinstance(populations, bool) or not isinstance(populations, int) or populations < 1:
            raise ValueError(f"populations must be a positive integer, got {populations!r}")
        if not isinstance(active_fraction, (int, float)) or not 0 < active_fraction <= 1:
            raise ValueError(f"active_fraction must be in (0, 1], got {active_fraction!r}")
        self.base = nn.Embedding(vocab_size, hidden_size)
        top_k = max(1, round(active_fraction * populations))
        self.populations = MoESynapsis(hidden_size, hidden_size, populations, ops, top_k=top_k, gating=gating)

    @property
    def weight(self) -> nn.Parameter:
        """The base embedding matrix (what a tied LM head shares)."""
        return self.base.weight

    @property
    def active_fraction(self) -> float:
        """Share of the selective populations active for each token: top_k / populations."""
        return self.populations.active_fraction

    def selection(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(active populations (..., k), their weights (..., k)) of each token id."""
        base = self.base(input_ids)
        chosen, weights, _ = self.populations.route(base.reshape(-1, base.shape[-1]))
        return chosen.view(*input_ids.shape, -1), weights.view(*input_ids.shape, -1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        base = self.base(input_ids)
        out = base + self.populations(base)
        if counters.counting():
            counters.record(self, float_ops=base.numel())  # the addition of the populations to the base
        return out
