"""The memory-aware energy estimate (harness/energy/memory.py) and the break-even (breakeven.py), against figures
computed by hand: a 2-layer spiking MLP, one attention block in prefill and in one decode step, a toy break-even."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from harness.energy.breakeven import Linear, crossing, curve, linear, verdict
from harness.energy.memory import (
    PresetError,
    Variant,
    load_memory_presets,
    memory_estimate,
    on_chip_price,
    precision,
    sram_price,
)
from harness.energy.counting import Counted
from harness.experiments.energy_analysis import price_variants
from models.spiking import OpCounter
from models.spiking.counters import OpStats
from models.spiking.quant import QuantSpec
from models.spiking.synapsis import Synapsis
from tests.tiny_models import tiny_model

PJ = 1e-12


def preset_file(tmp_path, name="toy", **fields) -> str:
    """A memory preset with round numbers: SRAM 1 pJ up to 16 B, 3 pJ up to 64 B; DRAM 50-100 pJ; 8-bit accesses."""
    values = dict(on_chip_bytes=16, sram="[[16, 1.0], [64, 3.0]]", dram_pj="[50.0, 100.0]", bank_bytes=0, local_bytes=16, access_bits=8,
                  write_factor=2.0, dataflow='"per_token"', spike_format='"aer"', aer_bits=8, membrane_bits=8,
                  citation='"by hand"')
    values.update(fields)
    path = tmp_path / f"{name}.toml"
    path.write_text("[[memory]]\n" + f'name = "{name}"\n' + "".join(f"{k} = {v}\n" for k, v in values.items()))
    return str(path)


def toy_preset(tmp_path, **fields):
    return load_memory_presets(preset_file(tmp_path, **fields))["toy"]


def mlp() -> nn.Sequential:
    """Two Synapsis layers 4 -> 3 (bias) -> 2 (no bias), static scale 1, T = 7: integer inputs are their own counts."""
    spec = QuantSpec(bits=4, granularity="tensor")
    first, second = Synapsis(4, 3, bias=True, pre=spec, post=None), Synapsis(3, 2, bias=False, pre=spec, post=None)
    with torch.no_grad():
        for layer in (first, second):
            layer.pre.calibrated.fill_(True)
            layer.weight.fill_(0.5)
        first.bias.zero_()
    return nn.Sequential(first, second).eval()


X = torch.tensor([[1.0, -2.0, 0.0, 3.0], [0.0, 0.0, 5.0, -1.0]])  # counts 1,-2,0,3 | 0,0,5,-1: 12 spikes; layer-1 output 1,1,1 | 2,2,2


def count(model: nn.Module, x: torch.Tensor) -> dict[str, OpStats]:
    with OpCounter(model) as counter, torch.no_grad():
        model(x)
    return dict(counter.totals)


def test_mlp_traffic_by_hand():
    stats = count(mlp(), X)
    first, second = stats["0"], stats["1"]
    # layer 1: 2 tokens x (12 weights + 3 biases) read, 8 values in, 6 out, 7 steps x 8 neurons, |1|+|-2|+|3|+|5|+|-1| spikes
    assert (first.weight_reads, first.step_reads, first.act_reads, first.act_writes) == (30, 210, 8, 6)
    assert (first.neuron_steps, first.spikes, first.Effective_ACs) == (56, 12, 36)
    # layer 2 sees 1,1,1 and 2,2,2: 9 spikes into 2 outputs
    assert (second.weight_reads, second.step_reads, second.act_reads, second.act_writes) == (12, 84, 6, 4)
    assert (second.neuron_steps, second.spikes, second.Effective_ACs) == (42, 9, 18)


def test_mlp_energy_by_hand_per_operator(tmp_path):
    stats = count(mlp(), X)
    snn = Variant("SNN int4", precision("int4"), spiking=True)
    e = memory_estimate(stats, toy_preset(tmp_path), snn, parameters=21, tokens=2)
    # 21 weights x 4 bits = 10.5 B <= 16 B on chip: 1 pJ per 8-bit access; every small buffer also 1 pJ
    assert e.where.weights_where == "on chip"
    first, second = stats["0"], stats["1"]
    for name, s, weights, membrane, values in (("0", first, 30, 56, (8, 6)), ("1", second, 12, 42, (6, 4))):
        assert e.component("weights", name) == pytest.approx((weights * 4 / 8 * PJ,) * 2)
        assert e.component("membrane", name) == pytest.approx((membrane * 8 / 8 * 3 * PJ,) * 2)  # read + write x2
        assert e.component("spikes", name) == pytest.approx((s.spikes * 8 / 8 * 3 * PJ,) * 2)  # 8-bit address events
        act = (values[0] * 4 / 8 + values[1] * 4 / 8 * 2) * PJ
        assert e.component("activations", name) == pytest.approx((act, act))
        arithmetic = s.Effective_ACs * 0.03 + s.float_ops * (0.2 * 0.25 + 0.03 * 0.5)  # ACs into int8, float ops as int4 MACs
        assert e.component("arithmetic", name) == pytest.approx((arithmetic * PJ,) * 2)
    assert e.low == pytest.approx(sum(e.component(c)[0] for c in ("arithmetic", "weights", "membrane", "spikes", "activations")))


@pytest.mark.parametrize("dataflow, elements", [("per_token", (30, 12)), ("per_step", (210, 84)), ("per_spike", (36, 18))])
def test_mlp_weight_reads_follow_the_dataflow(tmp_path, dataflow, elements):
    stats = count(mlp(), X)
    e = memory_estimate(stats, toy_preset(tmp_path, dataflow=f'"{dataflow}"'), Variant("s", precision("int4"), spiking=True), 21, 2)
    assert (e.count("weights", "0"), e.count("weights", "1")) == elements
    ann = memory_estimate(stats, toy_preset(tmp_path, dataflow=f'"{dataflow}"'), Variant("a", precision("int4")), 21, 2)
    assert (ann.count("weights", "0"), ann.count("weights", "1")) == (30, 12)  # an ANN reads once per token whatever the SNN does


def test_codings_move_the_same_weights_over_fewer_steps():
    from models.spiking import set_coding

    model = mlp()
    stats = {coding: (set_coding(model, coding), count(model, X))[1] for coding in ("rate", "bitwise", "multilevel")}
    # T = 7: rate 7 steps, bitwise 3, multilevel 1; weights read per token alike, per step K times
    assert [stats[c]["0"].step_reads for c in ("rate", "bitwise", "multilevel")] == [210, 90, 30]
    assert [stats[c]["0"].neuron_steps for c in ("rate", "bitwise", "multilevel")] == [56, 24, 8]
    assert {stats[c]["0"].weight_reads for c in stats} == {30}
    # spikes of 1,-2,0,3 | 0,0,5,-1: rate 12; bitwise popcounts 1+1+0+2 + 0+0+2+1 = 7; multilevel 5 nonzero
    assert [stats[c]["0"].spikes for c in ("rate", "bitwise", "multilevel")] == [12, 7, 5]
    assert (stats["multilevel"]["0"].Effective_ACs, stats["multilevel"]["0"].Effective_MACs) == (0, 15)  # graded spikes multiply


def test_weights_off_chip_and_bitmap_spikes(tmp_path):
    stats = count(mlp(), X)
    e = memory_estimate(stats, toy_preset(tmp_path, on_chip_bytes=8, spike_format='"bitmap"'), Variant("s", precision("int4"), spiking=True), 21, 2)
    assert e.where.weights_where == "DRAM"
    assert e.component("weights", "0") == pytest.approx((15 * 50 * PJ, 15 * 100 * PJ))
    assert e.component("spikes", "0") == pytest.approx((56 * 2 / 8 * 3 * PJ,) * 2)  # 2 bits per neuron step, written and read


def test_sram_brackets_and_banks(tmp_path):
    preset = toy_preset(tmp_path)
    assert sram_price(preset, 10) == (1.0, 1.0)
    assert sram_price(preset, 40) == (1.0, 3.0)  # between the arrays: bracketed
    assert sram_price(preset, 64) == (3.0, 3.0)
    assert sram_price(preset, 256) == (3.0, 6.0)  # beyond the largest: sqrt(256 / 64) x 3
    banked = toy_preset(tmp_path, bank_bytes="[16, 64]")
    assert on_chip_price(banked, 1000) == (1.0, 3.0)
    assert on_chip_price(banked, 10) == (1.0, 1.0)


def test_attention_block_prefill_and_decode_by_hand(tmp_path):
    """One Llama layer (4 heads of 16, 2 kv heads) in snn-fused: 5 tokens of prefill, then one decoded token."""
    model = tiny_model("llama", "snn-fused", num_hidden_layers=1)
    hidden, heads, kv, hd = 64, 4, 2, 16
    with OpCounter(model) as counter, torch.no_grad():
        _, cache = model(torch.randint(0, 97, (1, 5)), use_cache=True)
        prefill = counter.snapshot()
        model(torch.randint(0, 97, (1, 1)), cache=cache, use_cache=True)
        decode = counter.since(prefill)
    attn = "model.layers.0.self_attn."
    T = 127
    # prefill: query i sees keys 0..i (15 pairs); decode: the new query sees all 6
    for phase, tokens, keys, pairs in ((prefill, 5, 5, 15), (decode, 1, 6, 6)):
        assert phase[attn + "q_proj"].weight_reads == tokens * hidden * heads * hd
        assert phase[attn + "k_proj"].weight_reads == tokens * hidden * kv * hd
        assert phase[attn + "o_proj"].weight_reads == tokens * heads * hd * hidden
        # per allowed (query, key) pair one key and one value row of each kv head (its query heads share it), T times per step
        assert phase[attn[:-1]].cache_reads == 2 * kv * hd * pairs
        assert phase[attn[:-1]].step_reads == T * 2 * kv * hd * pairs
        assert phase[attn + "scores"].cache_reads == 0 and phase[attn + "weighted_values.matmul"].cache_reads == 0
        assert phase[attn + "scores"].act_writes == heads * tokens * keys
        assert phase[attn + "weighted_values.matmul"].act_writes == heads * tokens * hd
    assert decode[attn + "weighted_values.values"].act_reads == 0  # decoding reads the cached codes (cache_reads), not values

    preset = toy_preset(tmp_path, on_chip_bytes=1e9, sram="[[1e9, 2.0]]")  # everything 2 pJ per 8-bit access
    snn = Variant("s", precision("int8"), spiking=True)
    for phase, tokens, keys, pairs in ((prefill, 5, 5, 15), (decode, 1, 6, 6)):
        e = memory_estimate(phase, preset, snn, parameters=10_000, tokens=tokens, cache_elements=2 * kv * hd * keys)
        assert e.component("cache", attn[:-1]) == pytest.approx((2 * kv * hd * pairs * 2 * PJ,) * 2)
        assert e.component("weights", attn + "q_proj") == pytest.approx((tokens * hidden * heads * hd * 2 * PJ,) * 2)
        assert e.component("weights", attn + "scores") == (0, 0)
        per_step = load_memory_presets(preset_file(tmp_path, name="steps", on_chip_bytes=1e9, sram="[[1e9, 2.0]]", dataflow='"per_step"'))
        steps = memory_estimate(phase, per_step["steps"], snn, 10_000, tokens, 0)
        assert steps.count("cache", attn[:-1]) == T * 2 * kv * hd * pairs  # a time-stepped SNN reads the cache every step


def test_breakeven_closed_form_equals_the_drawn_crossing():
    form = Linear(fixed=2.0, steps=0.5, spikes=1.5, T0=10, rate0=0.1)
    ann = 4.0
    assert form.breakeven_steps(ann) == pytest.approx(10.0)  # 2 + (T/10) * 2 = 4
    assert form.at_steps(form.breakeven_steps(ann)) == pytest.approx(ann)
    assert form.breakeven_rate(ann) == pytest.approx(0.1 * (4 - 2 - 0.5) / 1.5)
    grid = np.geomspace(1, 40, 77)
    assert crossing(grid, curve(form, grid), ann) == pytest.approx(form.breakeven_steps(ann), rel=1e-12)
    assert verdict((1.0, 5.0), (2.0, 4.0)) == "depends" and verdict((1.0, 3.0), (2.0, 4.0)) == "wins" and verdict((3.0, 5.0), (2.0, 4.0)) == "loses"
    assert math.isnan(crossing(grid, curve(form, grid), 1.0))  # the line never gets that low


def test_plotted_breakeven_matches_the_table(tmp_path):
    from harness.report import plots

    stats = count(mlp(), X)
    # an ANN reading 52 weights per call from DRAM (40 parameters x 4 bits > 16 B on chip), as the SNN does
    counts = {"ann": Counted({"0": OpStats(calls=1, Effective_MACs=15, weight_reads=52, step_reads=52, act_reads=8, act_writes=6)}, 2),
              "rate": Counted(stats, 2)}
    table = price_variants(counts, [toy_preset(tmp_path)], bits=4, parameters=40, cache=0)
    snn = table[table["coding"] == "rate"].iloc[0]
    drawn = plots.breakeven_curves(table, 4)["toy"]
    closed = (snn["breakeven_T_vs_int4_low"], snn["breakeven_T_vs_int4_high"])
    assert 1 < closed[0] < closed[1] < 14  # inside the drawn grid (1 to 2 T), different under the two bounds
    assert drawn["crossing"] == pytest.approx(closed, rel=1e-9)
    assert snn["verdict_vs_int4"] == "depends"  # T = 7 lies between the two break-evens: it loses under low prices, wins under high
    assert plots.breakeven(table, tmp_path / "b.png", 4, "mlp") and (tmp_path / "b.png").stat().st_size > 1000
    # the SNN's energy at its own T is the table's
    lo, hi = linear(memory_estimate(stats, toy_preset(tmp_path), Variant("s", precision("int4"), spiking=True), 40, 2), 7, 21, 98)
    assert (lo.at_steps(7), hi.at_steps(7)) == pytest.approx((snn["memory_j_per_token_low"], snn["memory_j_per_token_high"]))


def test_precisions():
    assert precision("int8").pj_mac == pytest.approx(0.23)
    assert precision("fp32").pj_mac == pytest.approx(4.6)
    assert precision("int4").pj_mult == pytest.approx(0.05)
    with pytest.raises(ValueError, match="int<b>"):
        precision("int40")


def test_the_same_work_costs_the_same_per_token_whatever_the_batch(tmp_path):
    stats = count(mlp(), X)
    batched = {k: dataclasses.replace(v, calls=8 * v.calls) for k, v in stats.items()}  # the same work in 8x more calls
    snn = Variant("s", precision("int4"), spiking=True)
    one, eight = (memory_estimate(s, toy_preset(tmp_path, local_bytes=40), snn, 21, 2) for s in (stats, batched))
    assert (one.low, one.high) == (eight.low, eight.high)
    assert one.component("membrane", "0") == pytest.approx((56 * 3 * 1.0 * PJ, 56 * 3 * 3.0 * PJ))  # 40 B buffers: bracketed 1-3 pJ


def test_graded_spikes_carry_their_value_and_integer_anns_accumulate_wide(tmp_path):
    from models.spiking import set_coding

    model = mlp()
    set_coding(model, "multilevel")
    stats = count(model, X)
    graded = Variant("s", precision("int4"), spiking=True, coding="multilevel")
    e = memory_estimate(stats, toy_preset(tmp_path), graded, 21, 2)
    assert e.component("spikes", "0") == pytest.approx(((8 + 4) / 8 * 3 * 5 * PJ,) * 2)  # 5 events of an 8-bit address and a 4-bit value
    bitmap = memory_estimate(stats, toy_preset(tmp_path, spike_format='"bitmap"'), graded, 21, 2)
    assert bitmap.component("spikes", "0") == pytest.approx((8 * 4 / 8 * 3 * PJ,) * 2)  # 8 neuron steps of a 4-bit value
    ann = memory_estimate({"0": OpStats(Effective_MACs=10)}, toy_preset(tmp_path), Variant("a", precision("int4")), 21, 2)
    assert ann.component("arithmetic") == pytest.approx(((0.05 + 0.03) * 10 * PJ,) * 2)  # int4 product, 8-bit (membrane-wide) sum


@pytest.mark.parametrize("field, value, message", [
    ("dataflow", '"sometimes"', "dataflow"), ("sram", "[[64, 3.0], [16, 1.0]]", "increasing"), ("dram_pj", "[100.0, 50.0]", "low is above high"),
    ("access_bits", "0", "access_bits"), ("aer_bits", '"x"', "aer_bits"), ("access_bits", "0.5", "whole number of bits"),
    ("membrane_bits", "1.5", "whole number of bits"), ("sram", "[[16, 3.0], [64, 1.0]]", "at least as dear"),
    ("bank_bytes", "[0, 8192]", "bank_bytes must be 0"), ("local_bytes", "0", "local_bytes"),
])
def test_bad_memory_presets_fail_with_one_line(tmp_path, field, value, message):
    with pytest.raises(PresetError, match=message) as info:
        load_memory_presets(preset_file(tmp_path, **{field: value}))
    assert "\n" not in str(info.value)


def test_a_preset_file_that_is_not_text_names_itself(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[[memory]]")
    with pytest.raises(PresetError, match="binary.toml: not a UTF-8 text file"):
        load_memory_presets(path)


def test_builtin_memory_presets_load():
    presets = load_memory_presets()
    assert {"45nm-dram", "45nm-sram-events", "45nm-sram-steps"} <= set(presets)
    assert presets["45nm-dram"].dram_pj == (1300.0, 2600.0)
    assert all(p.citation for p in presets.values())


def test_counts_survive_json():
    counted = Counted({"a": OpStats(calls=2, spikes=3, weight_reads=5, act_writes=7)}, 4)
    assert Counted.from_dict(counted.as_dict()) == counted
    assert isinstance(pd.DataFrame([counted.as_dict()["per_module"]["a"]]), pd.DataFrame)


def test_the_report_shows_an_energy_analysis_folder(tmp_path):
    from harness.report.build import build_report

    stats = count(mlp(), X)
    counts = {"ann": Counted({"0": OpStats(calls=1, Effective_MACs=15, weight_reads=52, step_reads=52, act_reads=8, act_writes=6)}, 2),
              "rate": Counted(stats, 2)}
    folder = tmp_path / "energy-mlp"
    folder.mkdir()
    table = price_variants(counts, [toy_preset(tmp_path)], bits=4, parameters=40, cache=0)
    pd.concat([table.assign(phase=p) for p in ("prefill", "decode")]).assign(model="mlp").to_csv(folder / "energy-analysis.csv", index=False)
    out = build_report([folder], "r", tmp_path / "reports")
    text = (out / "report.md").read_text()
    assert "Energy with memory traffic" in text and "SNN rate (int4)" in text and "verdict vs int4" in text
    assert "energy-mlp: mlp at 4 bits" in text and "| phase |" in text and "| decode |" in text
    assert (out / "plots" / "breakeven_energy-mlp.png").stat().st_size > 1000


def test_the_report_shows_a_ranged_estimate_as_one_low_high_column():
    from harness.report.build import ranges_in_one_column

    table = pd.DataFrame({"tokens": [10], "estimated mJ/token, memory:x": [2.0], "estimated mJ/token, memory:x (energy, low end)": [1.0],
                          "estimated mJ/token, memory:x (energy, high end)": [3.5], "estimated mJ/token, synops:y": [0.5]})
    shown = ranges_in_one_column(table)
    assert list(shown.columns) == ["tokens", "estimated mJ/token, memory:x (low-high)", "estimated mJ/token, synops:y"]
    assert shown.iloc[0, 1] == "1-3.5"
