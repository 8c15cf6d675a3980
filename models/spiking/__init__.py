"""The spiking core: neurons, quantizers, Synapsis, the spiking operators of BrainGPT's appendix B, op counters.

Every operator takes ``mode``: ``snn`` steps its neurons (``neuron.py``, the reference that
reads as the paper's equations), ``snn-fused`` computes the same spike counts in closed form
(``fast.py``), and the two agree bit for bit; operators with a quantization-aware counterpart
also take ``mode="qat"``. See BrainGPT section 3.2 and appendix B. This package imports nothing
from the rest of the project.
"""

from .checks import CODINGS, coding_steps
from .counters import OpCounter, OpStats, counting
from .differential import DifferentialOp
from .encode import SpikeEncoder
from .fast import spike_count_closed_form
from .gelu import SNNGELU, fit_snn_gelu
from .neuron import EIIFNeuron, IFNeuron, SpikingNeuron, StaircaseNeuron, set_coding
from .norms import SNNLayerNorm, SNNRMSNorm
from .products import SNNMatmul, SNNMultiply, SpikingAttentionValues
from .quant import QuantSpec, Quantizer, naive_quantize, quantize_counts, round_half_away
from .sigmoid import SpikingSigmoid
from .silu import SiLUFit, SNNSiLU, fit_snn_silu
from .softmax import SNNSoftmax
from .synapsis import QSynapsis, Synapsis

__all__ = [
    "CODINGS",
    "DifferentialOp",
    "EIIFNeuron",
    "IFNeuron",
    "OpCounter",
    "OpStats",
    "QSynapsis",
    "QuantSpec",
    "Quantizer",
    "SNNGELU",
    "SNNLayerNorm",
    "SNNMatmul",
    "SNNMultiply",
    "SNNRMSNorm",
    "SNNSiLU",
    "SNNSoftmax",
    "SiLUFit",
    "SpikeEncoder",
    "SpikingAttentionValues",
    "SpikingNeuron",
    "SpikingSigmoid",
    "StaircaseNeuron",
    "Synapsis",
    "coding_steps",
    "counting",
    "fit_snn_gelu",
    "fit_snn_silu",
    "naive_quantize",
    "quantize_counts",
    "round_half_away",
    "set_coding",
    "spike_count_closed_form",
]
