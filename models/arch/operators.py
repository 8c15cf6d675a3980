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

from .float_ops import CountedLinear, FloatGELU, FloatMatmul, FloatMultiply, FloatSiLU, FloatSoftmax, LayerNorm, RMSNorm
from .spiking_config import SpikingConfig


class FloatAttentionValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.matmul = FloatMatmul()

    def forward(self, probs, v):
        return self.matmul(probs, v)


class Operators:
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

    def softmax(self) -> nn.Module:
        mode = self.config.op_mode("softmax")
        return FloatSoftmax(-1) if mode == "ann" else SNNSoftmax(-1, input_spec=None, mode=mode)

    def silu(self, layer: int) -> nn.Module:
        mode = self.config.op_mode("silu")
        if mode == "ann":
            return FloatSiLU()
        x_max = self.config.silu_x_max_per_layer.get(layer, self.config.silu_x_max)
        return SNNSiLU(self.config.steps_for("silu"), x_max, mode=mode)

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
            return FloatGELU(approximate)
        x_max = self.config.gelu_x_max_per_layer.get(layer, self.config.gelu_x_max)
        return SNNGELU(self.config.steps_for("gelu"), x_max, approximate, mode=mode)
