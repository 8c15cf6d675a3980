"""The operator factory: one architecture, operators looked up by mode (DESIGN.md).

| kind      | ann            | qat                          | snn / snn-fused                   |
|-----------|----------------|------------------------------|-----------------------------------|
| linear    | nn.Linear      | QSynapsis                    | Synapsis                          |
| lm_head   | nn.Linear      | QSynapsis                    | Synapsis                          |
| attention | a @ b          | SNNMatmul (qat), P.V folded  | SNNMatmul, SpikingAttentionValues |
| softmax   | softmax        | SNNSoftmax (qat)             | SNNSoftmax                        |
| silu      | SiLU           | SNNSiLU (staircase, SiLU')   | SNNSiLU                           |
| multiply  | a * b          | SNNMultiply (qat)            | SNNMultiply                       |
| norm      | RMSNorm        | SNNRMSNorm (qat)             | SNNRMSNorm                        |
| layernorm | LayerNorm      | SNNLayerNorm (qat)           | SNNLayerNorm                      |
| gelu      | GELU           | SNNGELU (staircase, GELU')   | SNNGELU                           |

Linear layers have no post-synaptic quantizer: the operator that consumes their output
spike-codes it (its pre-synaptic neurons are the post-synaptic neurons of eq. 4).

Adding an operator kind: its float and spiking classes, a method here and its name in
``OPERATOR_KINDS``. The rest of the project reads what it needs from the classes: the audit
reports every ``SpikeCoding`` operator (``coding_steps``), calibration reads ``observe_channels``
/ ``range_kind`` on the float class and ``calibrated_input`` / ``calibrated_state`` on the
converted one, checkpoints and operator swaps read ``mode_state``.
"""

from __future__ import annotations

from torch import nn

from models.spiking import (
    SNNGELU,
    QSynapsis,
    SNNLayerNorm,
    SNNMatmul,
    SNNMultiply,
    SNNRMSNorm,
    SNNSiLU,
    SNNSoftmax,
    SpikingAttentionValues,
    Synapsis,
)

from .float_ops import (
    CountedLinear,
    FloatAttentionValues,
    FloatGELU,
    FloatMatmul,
    FloatMultiply,
    FloatSiLU,
    FloatSoftmax,
    LayerNorm,
    RMSNorm,
)
from .spiking_config import SpikingConfig


class Operators:
    """Every operator an architecture uses, built for the mode its kind runs in (``SpikingConfig.op_mode``)."""

    def __init__(self, config: SpikingConfig) -> None:
        self.config = config

    def linear(self, in_features: int, out_features: int, bias: bool, kind: str = "linear") -> nn.Module:
        mode = self.config.op_mode(kind)
        if mode == "ann":
            return CountedLinear(in_features, out_features, bias=bias)
        spec = self.config.spec(self.config.linear_granularity, kind)
        if mode == "qat":
            return QSynapsis(in_features, out_features, bias=bias, pre=spec, post=None)
        return Synapsis(in_features, out_features, bias=bias, pre=spec, post=None, mode=mode)

    def attention_scores(self) -> nn.Module:
        mode = self.config.op_mode("attention")
        spec = self.config.spec(kind="attention")
        return FloatMatmul() if mode == "ann" else SNNMatmul(spec, spec, mode=mode)

    def attention_values(self) -> nn.Module:
        mode = self.config.op_mode("attention")
        return FloatAttentionValues() if mode == "ann" else SpikingAttentionValues(self.config.spec(kind="attention"), mode=mode)

    def coded_attention_cache(self) -> bool:
        """Keys and values spike-coded in closed form (``snn-fused``): a decoder may keep each token's code in its cache."""
        return self.config.op_mode("attention") == "snn-fused"

    def fused_float_attention(self) -> bool:
        """Scores, softmax and P.V all float: one fused kernel (scaled_dot_product_attention) may compute them."""
        return self.config.op_mode("attention") == "ann" and self.config.op_mode("softmax") == "ann"

    def stepped_attention(self) -> bool:
        """Scores and softmax both time-stepped (``snn``): the softmax integrates the scores' steps as they come (B.3)."""
        return self.config.op_mode("attention") == "snn" and self.config.op_mode("softmax") == "snn"

    def softmax(self) -> nn.Module:
        mode = self.config.op_mode("softmax")
        return FloatSoftmax(-1) if mode == "ann" else SNNSoftmax(-1, input_spec=None, mode=mode)

    def silu(self, layer: int) -> nn.Module:
        mode = self.config.op_mode("silu")
        if mode == "ann":
            return FloatSiLU(layer)
        return SNNSiLU(self.config.steps_for("silu"), self.config.x_max("silu", layer), mode=mode)

    def multiply(self) -> nn.Module:
        mode = self.config.op_mode("multiply")
        spec = self.config.spec(kind="multiply")
        return FloatMultiply() if mode == "ann" else SNNMultiply(spec, spec, mode=mode)

    def norm(self, dim: int, eps: float) -> nn.Module:
        mode = self.config.op_mode("norm")
        if mode == "ann":
            return RMSNorm(dim, eps)
        return SNNRMSNorm(dim, eps, input_spec=self.config.spec(self.config.norm_granularity, "norm"), mode=mode)

    def layer_norm(self, dim: int, eps: float) -> nn.Module:
        mode = self.config.op_mode("layernorm")
        if mode == "ann":
            return LayerNorm(dim, eps)
        return SNNLayerNorm(dim, eps, input_spec=self.config.spec(self.config.norm_granularity, "layernorm"), mode=mode)

    def gelu(self, layer: int, approximate: str = "none") -> nn.Module:
        mode = self.config.op_mode("gelu")
        if mode == "ann":
            return FloatGELU(approximate, layer)
        return SNNGELU(self.config.steps_for("gelu"), self.config.x_max("gelu", layer), approximate, mode=mode)
