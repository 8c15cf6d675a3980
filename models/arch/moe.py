"""MoESynapsis: a spiking mixture of experts (BrainGPT section 3.1.2).

The paper introduces MoESynapsis, "a mixture of experts system using spiking neurons" that
models the selective activation of neuronal populations, without equations. The mechanism
implemented here, per token x (a row of the input):

    r(x) = R x                                   the router: a Synapsis with one output per expert
    p(x) = softmax(r(x))                         expert probabilities (SNNSoftmax in the spiking modes)
    E(x) = the k experts with the largest r(x)   top-k selection, k = ``top_k``
    w_i(x) = p_i(x)                              gating="softmax": the chosen probabilities as they are
                                                 (Switch Transformer; with k = 1 the router still learns)
    w_i(x) = p_i(x) / sum_{j in E(x)} p_j(x)     gating="normalized": renormalized over the chosen
                                                 (GShard's top-2, Mixtral)
    y(x) = sum_{i in E(x)} w_i(x) F_i(x)         F_i: expert i, a Synapsis or a small Synapsis MLP

Tokens are dispatched: expert i runs only on the tokens that chose it, so the operation
counters (``models.spiking.counters``) see only the chosen experts' work and the sparsity
shows in SynOps. There is no capacity limit: no token is ever dropped, and with per-token
scales a token's output does not depend on the rest of the batch.

Load balancing (training only): ``balance_loss`` = N sum_i f_i P_i, with f_i the share of
the token-to-expert assignments that went to expert i and P_i its mean router probability
(Fedus et al. 2022, eq. 4-6; Lepikhin et al. 2021). It is 1 for a uniform router; the model
adds it to its loss with a small weight.

Every mode works through the operator factory: ``ann`` float Linear experts, ``qat``
QSynapsis, ``snn``/``snn-fused`` Synapsis (equal bit for bit, so they route alike). The gate
products and the scatter-add are float work, counted as ``float_ops``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from models.spiking import counters

from .operators import Operators

GATINGS = ("softmax", "normalized")


class MoESynapsis(nn.Module):
    """A router Synapsis choosing ``top_k`` of ``num_experts`` experts per token (see the module docstring).

    ``experts``: modules mapping ``in_features`` to ``out_features`` (default: one Synapsis each,
    ``ops.linear``). After a forward in training mode ``balance_loss`` holds the load-balancing
    loss (else None) and ``load`` the number of tokens each expert received.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_experts: int,
        ops: Operators,
        top_k: int = 1,
        gating: str = "softmax",
        experts: Sequence[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be a positive integer, got {num_experts!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_experts:
            raise ValueError(f"top_k must be an integer in 1..num_experts ({num_experts}), got {top_k!r}")
        if gating not in GATINGS:
            raise ValueError(f"gating must be one of {', '.join(GATINGS)}, got {gating!r}")
        if experts is not None and len(experts) != num_experts:
            raise ValueError(f"experts must hold num_experts ({num_experts}) modules, got {len(experts)}")
        self.in_features, self.out_features = in_features, out_features
        self.num_experts, self.top_k, self.gating = num_experts, top_k, gating
        self.router = ops.linear(in_features, num_experts, False)
        self.softmax = ops.softmax()
        self.experts = nn.ModuleList(experts if experts is not None else (ops.linear(in_features, out_features, False) for _ in range(num_experts)))
        self.balance_loss: torch.Tensor | None = None
        self.load: torch.Tensor | None = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(chosen experts (tokens, k), their gate weights (tokens, k), router probabilities (tokens, N)) of the rows of ``x``."""
        scores = self.router(x)
        probs = self.softmax(scores)
        chosen = scores.topk(self.top_k, dim=-1).indices
        weights = probs.gather(-1, chosen)
        if self.gating == "normalized":
            weights = weights / weights.sum(-1, keepdim=True)
        return chosen, weights, probs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"x must have last dimension {self.in_features} (in_features), got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        tokens = flat.shape[0]
        if tokens == 0:
            return x.new_zeros(*lead, self.out_features)
        chosen, weights, probs = self.route(flat)
        keep_graph = self.training and torch.is_grad_enabled()  # every expert joins the graph (DDP needs all parameters used)
        out = None
        load = []
        for e, expert in enumerate(self.experts):
            token, slot = (chosen == e).nonzero(as_tuple=True)
            load.append(token.numel())
            if token.numel() == 0 and not keep_graph:
                continue
            y = expert(flat[token]) * weights[token, slot, None]
            out = y.new_zeros(tokens, self.out_features) if out is None else out
            out = out.index_add(0, token, y.to(out.dtype))
        self.load = torch.tensor(load)
        if keep_graph:
            assigned = self.load.to(probs.device, probs.dtype) / (tokens * self.top_k)  # f_i
            self.balance_loss = self.num_experts * (assigned * probs.float().mean(0)).sum()
        else:
            self.balance_loss = None
        if counters.counting():
            k = self.top_k
            counters.record(self, float_ops=tokens * (self.num_experts + k * (2 * self.out_features + (2 if self.gating == "normalized" else 0))))
        return out.view(*lead, self.out_features)

    @property
    def active_fraction(self) -> float:
        """Share of the experts each token activates: top_k / num_experts."""
        return self.top_k / self.num_experts

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, num_experts={self.num_experts}, top_k={self.top_k}, gating={self.gating}"
