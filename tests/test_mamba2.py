"""Mamba-2: equal to transformers' implementation, chunked SSD == recurrence (values and gradients), the scan counted
as float work, presets and config errors (the contract every architecture keeps: test_architectures_contract.py)."""

import pytest
import torch

from models.arch.mamba2 import Mamba2Config, Mamba2ForCausalLM, ssd_chunked, ssd_recurrent
from models.spiking import OpCounter
from tests.tiny_models import TINY as TINY_MODELS
from tests.tiny_models import tiny_model

TINY = TINY_MODELS["mamba2"]


def test_ann_equals_transformers_mamba2():
    from transformers import Mamba2Config as HFConfig
    from transformers import Mamba2ForCausalLM as HFMamba2

    torch.manual_seed(0)
    hf_config = HFConfig(
        vocab_size=97, hidden_size=32, num_hidden_layers=2, state_size=8, head_dim=16, num_heads=4, expand=2, n_groups=1,
        chunk_size=4, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
    )
    hf = HFMamba2(hf_config).eval()
    for name, p in hf.named_parameters():  # move D, dt_bias and the norms off their initial values
        if name.endswith(("D", "dt_bias", "norm.weight", "norm_f.weight")):
            torch.nn.init.normal_(p, mean=float(not name.endswith("dt_bias")), std=0.3)
    ours = Mamba2ForCausalLM(Mamba2Config(**TINY), init_weights=False)
    assert ours.load_state_dict(hf.state_dict(), strict=True)
    ids = torch.randint(0, 97, (3, 11))  # 11 is not a multiple of the chunk size
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max() < 1e-4


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 8])
@pytest.mark.parametrize("length", [1, 7, 13])
def test_chunked_ssd_equals_the_recurrence(chunk_size, length):
    g = torch.Generator().manual_seed(chunk_size * 100 + length)
    b, h, p, n = 2, 3, 4, 5
    r = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    x, B, C, state = r(b, length, h, p), r(b, length, n), r(b, length, n), r(b, h, p, n)
    dt = torch.rand(b, length, h, generator=g, dtype=torch.float64) * 2
    A = -torch.rand(h, generator=g, dtype=torch.float64) * 4
    inputs = [t.requires_grad_() for t in (x, dt, A, B, C, state)]
    y_weight, state_weight = r(b, length, h, p), r(b, h, p, n)
    for initial in (None, state):
        y, final = ssd_chunked(x, dt, A, B, C, chunk_size, initial)
        y_ref, final_ref = ssd_recurrent(x, dt, A, B, C, initial)
        assert torch.allclose(y, y_ref, atol=1e-12, rtol=1e-10)
        assert torch.allclose(final, final_ref, atol=1e-12, rtol=1e-10)
        # and the same gradients (training runs the chunked form)
        objective = lambda y, s: (y * y_weight).sum() + (s * state_weight).sum()  # noqa: E731
        grads = torch.autograd.grad(objective(y, final), inputs, allow_unused=True)
        grads_ref = torch.autograd.grad(objective(y_ref, final_ref), inputs, allow_unused=True)
        for got, ref in zip(grads, grads_ref):
            assert (got is None and ref is None) or torch.allclose(got, ref, atol=1e-10, rtol=1e-9)


def test_chunked_ssd_is_stable_under_strong_decay():
    x, B, C = torch.randn(1, 64, 2, 4), torch.randn(1, 64, 3), torch.randn(1, 64, 3)
    dt, A = torch.full((1, 64, 2), 5.0), torch.tensor([-8.0, -0.01])
    y, state = ssd_chunked(x, dt, A, B, C, 64)
    y_ref, state_ref = ssd_recurrent(x, dt, A, B, C)
    assert torch.isfinite(y).all() and torch.allclose(y, y_ref, atol=1e-4)


def test_the_scan_is_counted_as_float_work():
    model = tiny_model("mamba2")
    with OpCounter(model) as counter, torch.no_grad():
        model(torch.randint(0, 97, (1, 8)))
    mixer = counter.totals["backbone.layers.0.mixer"]
    assert mixer.float_ops > 0 and counter.totals["backbone.layers.0.mixer.in_proj"].Effective_MACs > 0


def test_the_150m_preset_and_unknown_presets():
    big = Mamba2Config.preset("150m")
    assert (big.hidden_size, big.num_hidden_layers, big.state_size, big.num_heads) == (768, 24, 128, 24)
    assert Mamba2Config.preset("150m", vocab_size=32000).vocab_size == 32000
    with pytest.raises(ValueError, match="unknown mamba2 preset"):
        Mamba2Config.preset("7b")
