"""Hugging Face folders in and out (``models/hf.py``, ``snnbench export --hf``): tiny random transformers Llama and Qwen2
models saved with ``save_pretrained`` load with transformers' logits, convert and evaluate; an export loads in transformers
with the same float logits and reloads in snnbench bit-equal; what snnbench cannot run exactly is refused in one line."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers, trainers
from tokenizers import models as tokenizer_models

from harness.cli import main
from harness.evaluation.identity import model_identity
from models.arch.spiking_config import SpikingConfig
from models.calibrate import calibration_batches
from models.convert import convert
from models.errors import ModelLoadError
from models.load import load_model, read_config, save_checkpoint
from models.perplexity import token_perplexity
from tests.test_data_benchmarks import olmo_members  # noqa: F401  (the eval fixture's module fixture)
from tests.test_eval_cli import setup  # noqa: F401  (fake data sets for a tiny snnbench eval)
from tests.tiny_models import tiny_model

TEXT = ("the quick brown fox jumps over the lazy dog while a small cat sleeps on the warm mat near the door and "
        "birds sing in the tall green trees by the river where children play with a red ball every sunny day ") * 6
SIZE = dict(vocab_size=100, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=128)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """A word-piece BPE of 90 tokens (<unk> 0, <s> 1, </s> 2) trained on TEXT."""
    tok = Tokenizer(tokenizer_models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=90, special_tokens=["<unk>", "<s>", "</s>"]))
    return tok


def hf_model(kind: str, tie: bool, seed: int = 0, **extra) -> torch.nn.Module:
    """A random transformers LlamaForCausalLM or Qwen2ForCausalLM (``extra``: more config fields), its weights far from init
    (logits of order 1, biases that matter)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**SIZE, rope_theta=5e5, rms_norm_eps=1e-5, tie_word_embeddings=tie, bos_token_id=1, eos_token_id=5,
                                             **extra))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**SIZE, rope_theta=1e6, tie_word_embeddings=tie, bos_token_id=1, eos_token_id=3, **extra))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0, 0.2) if "norm" in name else p.normal_(0.0, 0.3)
    return model.eval()


def save_hf(model: torch.nn.Module, folder: Path, tokenizer: Tokenizer | None, shard: bool = False) -> Path:
    """``model.save_pretrained(folder)`` (sharded in ~20 KB files with ``shard``) and the tokenizer: the Qwen2 one with
    transformers' tokenizer_config.json (eos </s>, bos <s>), the Llama one as tokenizer.json alone."""
    from transformers import PreTrainedTokenizerFast

    model.save_pretrained(folder, **({"max_shard_size": "20KB"} if shard else {}))
    if tokenizer is not None and model.config.model_type == "qwen2":
        PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", bos_token="<s>").save_pretrained(folder)
    elif tokenizer is not None:
        tokenizer.save(str(folder / "tokenizer.json"))
        edit_json(folder / "generation_config.json", eos_token_id=[2, 5])  # generation_config before config.json, a list's first id
    return folder


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def padded_ids(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 90, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    return ids, mask


def one_line_error(capsys, argv: list[str]) -> str:
    """Run ``snnbench argv``, check it fails with exit code 2 and one line on stderr; that line."""
    capsys.readouterr()  # what came before (transformers' progress bars)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err
    return err


# ---------------------------------------------------------------- in


@pytest.mark.parametrize("kind, tie, shard, extra", [("llama", False, False, {}), ("llama", True, True, {}), ("qwen2", True, False, {}),
                                                     ("qwen2", False, True, {}), ("llama", False, False, {"mlp_bias": True, "head_dim": 16})])
def test_transformers_folder_loads_with_transformers_logits(tmp_path, tokenizer, kind, tie, shard, extra):
    hf = hf_model(kind, tie, **extra)
    folder = save_hf(hf, tmp_path / kind, tokenizer, shard)
    assert (folder / "model.safetensors.index.json").exists() == shard and len(list(folder.glob("*.safetensors"))) > (2 if shard else 0)
    loaded = load_model(str(folder))
    config = loaded.model.config
    assert loaded.model.mode == "ann" and config.attention_bias == (kind == "qwen2") and config.tie_word_embeddings == tie
    assert config.mlp_bias == extra.get("mlp_bias", False) and config.dims_per_head == extra.get("head_dim", 8)
    assert config.rope_theta == hf.config.rope_parameters["rope_theta"] and config.rms_norm_eps == hf.config.rms_norm_eps
    assert loaded.tokenizer.encode(TEXT[:60]).ids == tokenizer.encode(TEXT[:60]).ids and loaded.name == kind
    assert (loaded.eos_id, loaded.bos_id) == (2, 1)  # qwen2: tokenizer_config.json's tokens; llama: generation_config.json's first eos
    ids, mask = padded_ids()
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask).logits
        got, _ = loaded.model(ids, attention_mask=mask)
    assert expected.abs().max() > 1  # logits of order 1: the tolerance means something
    assert (got - expected)[mask.bool()].abs().max() < 1e-5


def test_transformers_folder_converts_and_evaluates(tmp_path, tokenizer):
    loaded = load_model(str(save_hf(hf_model("qwen2", tie=True), tmp_path / "qwen2", tokenizer)))
    ids = loaded.tokenizer.encode(TEXT).ids
    assert len(ids) >= 6 * 32
    spiking = SpikingConfig(bits=8, linear_granularity="smoothed", norm_granularity="smoothed")
    conversion = convert(loaded.model, calibration_batches(ids, 32, 2)[:2], spiking)
    ppl = {name: token_perplexity(model, ids, context_window=32) for name, model in
           (("ann", loaded.model), ("qat", conversion.qat), ("snn-fused", conversion.snn))}
    assert conversion.snn.mode == "snn-fused" and all(math.isfinite(p["perplexity"]) for p in ppl.values())
    assert ppl["qat"]["nll"] == ppl["snn-fused"]["nll"]  # the conversion is lossless: QAT and SNN compute the same
    assert ppl["snn-fused"]["nll"] != ppl["ann"]["nll"] and abs(ppl["snn-fused"]["nll"] / ppl["ann"]["nll"] - 1) < 0.02


def test_snnbench_eval_runs_a_transformers_folder(setup, tokenizer, capsys):  # noqa: F811
    folder = save_hf(hf_model("llama", tie=True), setup / "tiny-llama", tokenizer)
    args = ["eval", "--model", str(folder), "--modes", "ann,snn-fused", "--tasks", "snnbench_lambada_openai", "--limit", "2",
            "--meters", "none", "--batch-size", "2", "--run-id", "hf"]
    assert main(args) == 0, capsys.readouterr().err
    run = next(setup.rglob("hf/manifest.json")).parent
    assert json.loads((run / "manifest.json").read_text())["settings"]["model"]["sha256"] == model_identity(folder, "tiny-llama")["sha256"]
    metrics = (run / "metrics.csv").read_text()
    assert "snn-fused" in metrics and "ann" in metrics and "snnbench_lambada_openai" in metrics


def test_identity_covers_every_file_of_a_transformers_folder(tmp_path, tokenizer):
    folder = save_hf(hf_model("qwen2", tie=False), tmp_path / "q", tokenizer, shard=True)
    before = model_identity(folder, "q")["sha256"]
    shard = sorted(folder.glob("model-0*.safetensors"))[1].name
    for name in (shard, "tokenizer_config.json", "generation_config.json", "model.safetensors.index.json"):
        assert (folder / name).exists(), name
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data + b" ")
        assert model_identity(folder, "q")["sha256"] != before, name
        (folder / name).write_bytes(data)
    assert model_identity(folder, "q")["sha256"] == before


def test_missing_tokenizer_is_allowed_and_said_where_one_is_needed(tmp_path, capsys):
    folder = save_hf(hf_model("llama", tie=False), tmp_path / "bare", None)
    assert load_model(str(folder)).tokenizer is None
    err = one_line_error(capsys, ["convert", "--model", str(folder), "--out", str(tmp_path / "c")])
    assert "has no tokenizer" in err


def test_config_readers_take_transformers_folders(tmp_path, tokenizer):
    """What reads a checkpoint's config.json alone (read_config: eval --snn-from, stdp, frontier --finetuned) takes an HF folder."""
    from harness.experiments.frontier import _checkpoint_bits

    folder = save_hf(hf_model("qwen2", tie=True), tmp_path / "q", tokenizer)
    assert read_config(folder)["model"]["attention_bias"] is True
    with pytest.raises(ValueError, match="a float model; give the checkpoint"):
        _checkpoint_bits(folder)
    loaded = load_model(str(folder))
    snn = convert(loaded.model, calibration_batches(loaded.tokenizer.encode(TEXT).ids, 32, 2)[:1], SpikingConfig(bits=6)).snn
    save_checkpoint(snn, tmp_path / "ckpt", loaded.tokenizer, special_tokens=loaded.special_tokens())
    assert main(["export", "--hf", str(tmp_path / "ckpt"), str(tmp_path / "out")]) == 0
    assert _checkpoint_bits(tmp_path / "out") == 6


REFUSALS = [
    ("llama", {"model_type": "mistral"}, "model_type 'mistral' is not supported (supported: llama, qwen2)"),
    ("llama", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling is {"),
    ("llama", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "rope_parameters is {"),
    ("llama", {"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
    ("llama", {"attention_bias": True}, "attention_bias is true, which in transformers' Llama puts a bias on o_proj"),
    ("qwen2", {"use_sliding_window": True}, "use_sliding_window is true"),
    ("llama", {"quantization_config": {"quant_method": "gptq"}}, "a quantized checkpoint (quant_method gptq)"),
    ("llama", {"hidden_size": "32"}, "hidden_size must be of type int"),
    ("llama", {"vocab_size": None, "hidden_size": None}, "lacks"),
]


@pytest.mark.parametrize("kind, change, message", REFUSALS)
def test_what_snnbench_cannot_run_exactly_is_refused_in_one_line(tmp_path, tokenizer, kind, change, message):
    folder = save_hf(hf_model(kind, tie=False), tmp_path / kind, tokenizer)
    config = {**json.loads((folder / "config.json").read_text()), **change}
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if not (k in change and change[k] is None)}))  # None: removed
    for read in (read_config, lambda f: load_model(str(f))):
        with pytest.raises(ModelLoadError) as caught:
            read(folder)
        assert str(caught.value).startswith(f"{folder}/config.json: ") and message in str(caught.value) and "\n" not in str(caught.value)


def test_unreadable_weights_are_refused_in_one_line(tmp_path, tokenizer, capsys):
    model = hf_model("llama", tie=False)
    pickled = save_hf(model, tmp_path / "bin", tokenizer)
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"bin: has its weights only as pytorch_model.bin, .*save_pretrained\(DIR, safe_serialization=True\)"):
        load_model(str(pickled))
    sharded = save_hf(model, tmp_path / "sharded", tokenizer, shard=True)
    shard = sorted(sharded.glob("model-0*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ModelLoadError, match=f"model.safetensors.index.json: lists {shard.name}, missing from"):
        load_model(str(sharded))
    assert "pytorch_model.bin" in one_line_error(capsys, ["export", "--hf", str(pickled), str(tmp_path / "out")])


# ---------------------------------------------------------------- out


@pytest.mark.parametrize("kind, tie", [("llama", False), ("qwen2", True)])
def test_export_round_trips_through_transformers_and_snnbench(tmp_path, tokenizer, kind, tie):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = load_model(str(save_hf(hf_model(kind, tie), tmp_path / "hf", tokenizer)))
    spiking = SpikingConfig(bits=8, linear_granularity="smoothed", norm_granularity="smoothed", coding="bitwise")
    snn = convert(loaded.model, calibration_batches(loaded.tokenizer.encode(TEXT).ids, 32, 2)[:2], spiking).snn
    save_checkpoint(snn, tmp_path / "ckpt", loaded.tokenizer, extra={"name": "tiny-snn"}, special_tokens=loaded.special_tokens())
    out = tmp_path / "export"
    assert main(["export", "--hf", str(tmp_path / "ckpt"), str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == kind and config["architectures"] == [f"{'Llama' if kind == 'llama' else 'Qwen2'}ForCausalLM"]
    assert config["torch_dtype"] == "float32" and config["tie_word_embeddings"] == tie and not list(out.glob(".*.tmp"))
    ids, mask = padded_ids(2)
    ann = load_model(str(out), SpikingConfig())  # snnbench's float view of the exported folder
    theirs = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        assert ((theirs(ids, attention_mask=mask).logits - ann.model(ids, attention_mask=mask)[0])[mask.bool()]).abs().max() < 1e-5
    hf_tokenizer = AutoTokenizer.from_pretrained(out)
    assert hf_tokenizer(TEXT[:80])["input_ids"] == tokenizer.encode(TEXT[:80]).ids
    assert (hf_tokenizer.eos_token, hf_tokenizer.bos_token) == ("</s>", "<s>")
    reloaded = load_model(str(out))
    assert reloaded.model.spiking == snn.spiking and reloaded.model.mode == "snn-fused" and reloaded.model.spiking.coding == "bitwise"
    assert (reloaded.name, reloaded.eos_id, reloaded.bos_id) == ("tiny-snn", 2, 1)
    theirs_state, own_state = reloaded.model.state_dict(), snn.state_dict()
    assert theirs_state.keys() == own_state.keys() and all(torch.equal(theirs_state[k], own_state[k]) for k in own_state)
    with torch.no_grad():
        assert torch.equal(reloaded.model(ids, attention_mask=mask)[0], snn(ids, attention_mask=mask)[0])


def test_export_refuses_in_one_line(tmp_path, tokenizer, capsys):
    assert "unknown model" in one_line_error(capsys, ["export", "--hf", str(tmp_path / "absent"), str(tmp_path / "out")])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    assert "config.json: not valid JSON" in one_line_error(capsys, ["export", "--hf", str(tmp_path / "broken"), str(tmp_path / "out")])
    save_checkpoint(tiny_model("gpt2"), tmp_path / "gpt2")
    assert "a gpt2 model cannot be exported to Hugging Face format; only llama-architecture models" in one_line_error(
        capsys, ["export", "--hf", str(tmp_path / "gpt2"), str(tmp_path / "out")])
    assert not (tmp_path / "out" / "config.json").exists()
    source = save_hf(hf_model("llama", tie=False), tmp_path / "hf", tokenizer)
    used = save_hf(hf_model("qwen2", tie=False), tmp_path / "used", tokenizer, shard=True)
    assert "is not empty; give a new or empty folder, or --force" in one_line_error(capsys, ["export", "--hf", str(source), str(used)])
    assert "is the checkpoint being exported" in one_line_error(capsys, ["export", "--hf", str(source), str(source), "--force"])
    with pytest.raises(SystemExit):  # the format is not optional
        main(["export", str(source), str(tmp_path / "out")])
    assert main(["export", "--hf", str(source), str(used), "--force"]) == 0  # the old model's shards and index are gone
    assert not list(used.glob("model-*")) and not (used / "model.safetensors.index.json").exists()
    ids, _ = padded_ids()
    with torch.no_grad():
        assert torch.equal(load_model(str(used)).model(ids)[0], load_model(str(source)).model(ids)[0])
    shutil.rmtree(used)


def test_special_tokens_are_the_tokenizers_own(tmp_path, tokenizer):
    """With a tokenizer_config.json, a token it does not name is None (as transformers' tokenizer and lm-eval's hf model
    have it), even when generation_config.json names one; without it, generation_config.json's ids."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = tmp_path / "no-bos"
    hf_model("llama", False).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="</s>").save_pretrained(folder)
    edit_json(folder / "generation_config.json", bos_token_id=1, eos_token_id=2)
    theirs = AutoTokenizer.from_pretrained(folder)
    loaded = load_model(str(folder))
    assert (loaded.eos_id, loaded.bos_id) == (theirs.eos_token_id, theirs.bos_token_id) == (2, None)
    (folder / "tokenizer_config.json").unlink()
    (folder / "special_tokens_map.json").unlink(missing_ok=True)
    assert load_model(str(folder)).special_tokens() == {"eos_id": 2, "bos_id": 1}
