"""What Mamba-2 and TTT share: their spiking operators convert losslessly (qat == snn-fused) while the
float recurrence (SSD scan, TTT inner loop) stays float work and lowers the spiking coverage."""

import pytest
import torch

from models.arch.llama import spiking_coverage
from models.arch.spiking_config import SpikingConfig
from models.spiking import OpCounter
from tests import test_mamba2, test_ttt


@pytest.mark.parametrize(
    "tiny, float_block",
    [(test_mamba2.tiny, "backbone.layers.0.mixer"), (test_ttt.tiny, "model.layers.0.seq_modeling_block")],
    ids=["mamba2", "ttt"],
)
def test_qat_and_snn_fused_agree_and_the_float_recurrence_lowers_spiking_coverage(tiny, float_block):
    ann = tiny()
    ids = torch.randint(0, 97, (2, 7))
    logits = {}
    for mode in ("qat", "snn-fused"):
        model = type(ann)(ann.config, SpikingConfig(mode=mode), init_weights=False)
        model.load_state_dict(ann.state_dict(), strict=False)
        with OpCounter(model) as counter, torch.no_grad():
            logits[mode], _ = model.eval()(ids)
    assert torch.equal(logits["qat"], logits["snn-fused"])  # lossless conversion of the operators
    coverage = spiking_coverage(counter.total())
    assert 0.5 < coverage < 1.0 and counter.totals[float_block].float_ops > 0
