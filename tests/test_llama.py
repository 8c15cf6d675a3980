"""The Llama-family decoder: equal to transformers in ann mode, the fused float attention counted as its operators,
keep_float and spiking coverage, config errors (the contract every architecture keeps: test_architectures_contract.py)."""

import pytest
import torch

from models.arch.base import spiking_coverage
from models.arch.llama import LlamaConfig, LlamaForCausalLM
from models.arch.spiking_config import OPERATOR_KINDS, SpikingConfig
from models.spiking import OpCounter
from tests import tiny_models
from tests.tiny_models import same_weights  # noqa: F401  (other tests take it from here)

TINY = tiny_models.TINY["llama"]


def tiny(mode: str = "ann", seed: int = 0, **config) -> LlamaForCausalLM:
    return tiny_models.tiny_model("llama", mode, seed, **config)


@pytest.mark.parametrize("tie", [True, False])
def test_ann_equals_transformers_llama(tie):
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM as HFLlama

    torch.manual_seed(0)
    hf = HFLlama(HFConfig(**TINY, rms_norm_eps=1e-5, rope_theta=10000.0, max_position_embeddings=128, tie_word_embeddings=tie)).eval()
    ours = LlamaForCausalLM(LlamaConfig(**TINY, tie_word_embeddings=tie), init_weights=False)
    assert ours.load_state_dict(hf.state_dict(), strict=True)
    ids = torch.randint(0, 97, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask).logits
        got, _ = ours(ids, attention_mask=mask)
    real = mask.bool()
    assert (got - expected)[real].abs().max() < 1e-4


def test_ann_equals_transformers_qwen2_with_attention_bias():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    hf = Qwen2ForCausalLM(Qwen2Config(**TINY, rms_norm_eps=1e-6, rope_theta=1e6, max_position_embeddings=128, tie_word_embeddings=True)).eval()
    for name, p in hf.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.normal_(p, std=0.5)
    ours = LlamaForCausalLM(LlamaConfig(**TINY, rms_norm_eps=1e-6, rope_theta=1e6, attention_bias=True), init_weights=False)
    assert ours.load_state_dict(hf.state_dict(), strict=True)
    ids = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max() < 1e-4


def test_spiking_coverage_and_keep_float():
    ann = tiny()
    ids = torch.randint(0, 97, (1, 6))
    coverage = {}
    for name, keep in (("all", ()), ("none", OPERATOR_KINDS), ("float linear", ("linear", "lm_head"))):
        model = same_weights(ann, "snn-fused", keep_float=keep)
        with OpCounter(model) as counter, torch.no_grad():
            model(ids)
        coverage[name] = spiking_coverage(counter.total())
    assert coverage["none"] == 0.0
    assert 0.5 < coverage["all"] <= 1.0
    assert coverage["float linear"] < coverage["all"]


def test_ann_baseline_is_counted_too():
    model = tiny()
    with OpCounter(model) as counter, torch.no_grad():
        model(torch.randint(0, 97, (1, 5)))
    stats = counter.total()
    assert stats.Effective_ACs == 0 and stats.Effective_MACs > 0 and stats.float_ops > 0
    assert counter.totals["lm_head"].Dense == 5 * 64 * 97


def test_fused_float_attention_counts_what_the_operator_path_counts():
    """ann mode runs attention through SDPA, counted or not; the separate operators give the same logits and counts."""
    model = tiny()
    ids = torch.randint(0, 97, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding, so padding queries see only themselves
    assert model.model.layers[0].self_attn.float_attention
    with torch.no_grad(), OpCounter(model) as fused_counter:
        fused = model(ids, attention_mask=mask)[0]
    for layer in model.model.layers:
        layer.self_attn.float_attention = False
    with torch.no_grad(), OpCounter(model) as operator_counter:
        separate = model(ids, attention_mask=mask)[0]
    assert torch.allclose(fused[1, 3:], separate[1, 3:], atol=1e-5) and torch.allclose(fused[0], separate[0], atol=1e-5)
    assert fused_counter.totals == operator_counter.totals


def test_right_padded_batches_use_the_kernels_causal_mask_with_the_same_result():
    """No cache and padding only at the end: SDPA's own causal mask replaces the explicit one on real tokens."""
    model = tiny()
    ids = torch.randint(0, 97, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        fused = model(ids, attention_mask=mask)[0]
        for layer in model.model.layers:
            layer.self_attn.float_attention = False
        separate = model(ids, attention_mask=mask)[0]
    assert torch.allclose(fused[0], separate[0], atol=1e-5) and torch.allclose(fused[1, :6], separate[1, :6], atol=1e-5)


def test_bad_config():
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        LlamaConfig(**{**TINY, "num_key_value_heads": 3})
    with pytest.raises(ValueError, match="mode must be one of"):
        SpikingConfig(mode="spiking")
    with pytest.raises(ValueError, match="keep_float has unknown operator kinds"):
        SpikingConfig(keep_float=("mlp",))
