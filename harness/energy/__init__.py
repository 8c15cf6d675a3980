"""Energy: measured meters (NVML, RAPL, CodeCarbon) and the synaptic-operation estimate.

Measured and estimated figures are kept apart: every ``EnergyReading`` and
``SynOpsEstimate`` carries ``kind`` ("measured" or "estimated") and a ``source``.

    meters, notes = select_meters("cuda:0")
    with measure(meters) as readings:
        model(batch)
    readings["nvml:gpu0"].joules
    estimate(counter.total(), load_presets()["45nm-fp32"]).joules
    count_forwards(model, [ids], [load_presets()["45nm-int8"]]).joules_per_token

    meter.py     the meter interface and ``measure``      select.py    which meters a device gets
    nvml.py, rapl.py, codecarbon_meter.py: the meters   synops.py    presets and the estimate
    counting.py  operations counted over a few forwards, priced under presets
    memory.py    the memory-aware estimate: arithmetic + weights, caches, membranes, spikes and activations moved,
                 per memory preset (memory.toml) as a low-high range, for an ANN at fp32/fp16/int-b or an SNN
    breakeven.py the window T and spike rate at which an SNN costs what an ANN does
"""

from .codecarbon_meter import CodeCarbonMeter
from .counting import OpCost, count_forwards, first_sequences, price
from .meter import ESTIMATED, KINDS, MEASURED, EnergyMeter, EnergyReading, measure
from .nvml import NvmlMeter
from .rapl import RaplMeter
from .select import select_meters
from .synops import (
    EnergyPreset,
    PresetError,
    SynOpsEstimate,
    breakdown,
    estimate,
    get_preset,
    load_presets,
    operator_kind,
)

__all__ = [
    "CodeCarbonMeter",
    "ESTIMATED",
    "EnergyMeter",
    "EnergyPreset",
    "EnergyReading",
    "KINDS",
    "MEASURED",
    "NvmlMeter",
    "OpCost",
    "PresetError",
    "RaplMeter",
    "SynOpsEstimate",
    "breakdown",
    "count_forwards",
    "first_sequences",
    "estimate",
    "get_preset",
    "load_presets",
    "measure",
    "operator_kind",
    "price",
    "select_meters",
]
