"""The Llama-family decoder: equal to transformers in ann mode, snn == snn-fused, batch independence,
KV cache, spiking coverage, bad input."""

import pytest
import torch

from models.arch.llama import LlamaConfig, LlamaForCausalLM, spiking_coverage
from models.arch.spiking_config import OPERATOR_KINDS, SpikingConfig
from models.spiking import OpCounter

TINY = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def tiny(mode: str = "ann", seed: int = 0, **config) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{**TINY, **config}), SpikingConfig(mode=mode))
    return model.eval()


def same_weights(model: LlamaForCausalLM, mode: str, **spiking) -> LlamaForCausalLM:
    other = LlamaForCausalLM(model.config, SpikingConfig(mode=mode, **spiking), init_weights=False)
    other.load_state_dict(model.state_dict(), strict=False)
    return other.eval()


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


def test_snn_and_snn_fused_give_identical_logits():
    ann = tiny()
    ids = torch.randint(0, 97, (2, 5))
    with torch.no_grad():
        fused, _ = same_weights(ann, "snn-fused")(ids)
        stepped, _ = same_weights(ann, "snn")(ids)
        qat, _ = same_weights(ann, "qat")(ids)
    assert torch.equal(stepped, fused)
    assert torch.equal(qat, fused)  # lossless conversion
    assert (fused - ann(ids)[0]).abs().max() < 0.5  # close to the float model, not equal


@pytest.mark.parametrize("mode", ["ann", "qat", "snn-fused", "snn"])
def test_a_sequence_scores_the_same_alone_and_in_a_padded_batch(mode):
    model = same_weights(tiny(), mode)
    seq = torch.randint(0, 97, (1, 6))
    other = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        alone, _ = model(seq)
        right = torch.cat([torch.cat([seq, torch.zeros(1, 3, dtype=torch.long)], 1), other])
        right_logits, _ = model(right, attention_mask=torch.cat([torch.cat([torch.ones(1, 6), torch.zeros(1, 3)], 1), torch.ones(1, 9)]).long())
        left = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), seq], 1), other])
        left_logits, _ = model(left, attention_mask=torch.cat([torch.cat([torch.zeros(1, 3), torch.ones(1, 6)], 1), torch.ones(1, 9)]).long())

    def loglik(logits, ids):
        return torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).sum()

    expected = loglik(alone, seq)
    assert torch.allclose(loglik(right_logits[:1, :6], seq), expected, atol=1e-4)
    assert torch.allclose(loglik(left_logits[:1, 3:], seq), expected, atol=1e-4)


@pytest.mark.parametrize("mode", ["ann", "snn-fused"])
def test_kv_cache_generation_equals_recomputing(mode):
    model = same_weights(tiny(), mode)
    prompt = torch.randint(0, 97, (2, 4))
    generated = model.greedy_generate(prompt, max_new_tokens=5)
    ids = prompt
    with torch.no_grad():
        for _ in range(5):
            ids = torch.cat([ids, model(ids)[0][:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(generated, ids[:, 4:])


def test_generation_stops_at_stop_ids():
    model = tiny()
    prompt = torch.randint(0, 97, (1, 3))
    first = model.greedy_generate(prompt, 1)[0, 0].item()
    out = model.greedy_generate(prompt, 6, stop_ids=(first,))
    assert out.tolist() == [[first]]


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


def test_bad_input():
    model = tiny()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[5, 97]]))
    with pytest.raises(ValueError, match="2-D integer tensor"):
        model(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model(torch.tensor([[1, 2]]), attention_mask=torch.ones(1, 3))
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        LlamaConfig(**{**TINY, "num_key_value_heads": 3})
    with pytest.raises(ValueError, match="mode must be one of"):
        SpikingConfig(mode="spiking")
    with pytest.raises(ValueError, match="keep_float has unknown operator kinds"):
        SpikingConfig(keep_float=("mlp",))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.greedy_generate(torch.tensor([[1]]), 0)
