"""Loading refuses damaged or mistyped models with one-line errors naming the file and the culprit:
non-finite weights (checkpoints, GGUFs, spiking state), config fields of the wrong type, an
unreadable tokenizer.json, a tokenizer larger than the model's vocabulary."""

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models

from models.arch.base import ArchConfig
from models.arch.braingpt import BrainGPTConfig
from models.arch.gpt2 import GPT2Config
from models.arch.llama import LlamaConfig
from models.arch.mamba2 import Mamba2Config
from models.arch.registry import ARCHITECTURES, architecture
from models.arch.ttt import TTTConfig
from models.load import ModelLoadError, load_checkpoint, load_gguf, save_checkpoint
from tests.gguf_fixture import write_gguf
from tests.test_llama import same_weights, tiny

CONFIGS = Path(__file__).resolve().parent.parent / "models" / "train" / "configs"


def one_line_error(call, *args) -> str:
    """The message of the ModelLoadError ``call(*args)`` raises, checked to be one line."""
    with pytest.raises(ModelLoadError) as err:
        call(*args)
    message = str(err.value)
    assert "\n" not in message
    return message


def word_tokenizer(size: int) -> Tokenizer:
    return Tokenizer(models.WordLevel({f"w{i}": i for i in range(size)}, unk_token="w0"))


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_checkpoint(tiny(vocab_size=64), tmp_path / "ckpt", word_tokenizer(64), special_tokens={"eos_id": 0, "bos_id": None})


def edit_config(folder: Path, **changes) -> None:
    """Rewrite ``folder``'s config.json with top-level keys replaced (``model__x`` replaces ``model.x``)."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            config[section][field] = value
        else:
            config[section] = value
    path.write_text(json.dumps(config))


# ---------------------------------------------------------------- non-finite values


def test_nan_in_checkpoint_weights_names_the_tensor(tmp_path):
    model = tiny(vocab_size=64)
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[3, 5] = float("nan")
    folder = save_checkpoint(model, tmp_path / "ckpt")
    message = one_line_error(load_checkpoint, folder)
    assert message == (
        f"{folder}/model.safetensors: tensor model.layers.0.mlp.up_proj.weight holds 1 NaN and 0 inf values; "
        "the checkpoint is damaged: re-train or re-convert it"
    )


def test_inf_in_spiking_state_names_the_tensor(tmp_path):
    folder = save_checkpoint(same_weights(tiny(vocab_size=64), "snn-fused"), tmp_path / "ckpt")
    name = "model.layers.1.self_attn.v_proj.pre_neuron.theta_base"
    state = load_file(str(folder / "model.safetensors"))
    state[name][:2] = torch.tensor([float("inf"), -float("inf")])
    save_file(state, str(folder / "model.safetensors"))
    message = one_line_error(load_checkpoint, folder)
    assert f"model.safetensors: tensor {name} holds 0 NaN and 2 inf values;" in message


def test_nan_in_gguf_names_the_file_tensor(tmp_path):
    model = tiny(vocab_size=64)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, :3] = float("nan")
        model.model.norm.weight[0] = float("inf")
    path = write_gguf(tmp_path / "tiny.gguf", model)
    message = one_line_error(load_gguf, path)
    assert message == (
        f"{path}: tensor blk.1.ffn_down.weight holds 3 NaN and 0 inf values, tensor output_norm.weight holds 0 NaN and 1 inf values; "
        "the GGUF is damaged: convert or download it again"
    )


# ---------------------------------------------------------------- config.json types


@pytest.mark.parametrize(
    "changes, culprit",
    [
        ({"model": "llama"}, "model must be an object of architecture fields (as save_checkpoint writes it), got 'llama'"),
        ({"model__architecture": ["llama"]}, "architecture ['llama'] is unknown"),
        ({"model__tie_word_embeddings": "no"}, "llama config field tie_word_embeddings must be of type bool, got 'no'"),
        ({"model__attention_bias": 1}, "llama config field attention_bias must be of type bool, got 1"),
        ({"model__head_dim": "16"}, "llama config field head_dim must be of type int | None, got '16'"),
        ({"model__hidden_size": True}, "llama config field hidden_size must be of type int, got True"),
        ({"model__rms_norm_eps": "1e-5"}, "llama config field rms_norm_eps must be of type float, got '1e-5'"),
        ({"special_tokens": [1, 2]}, 'special_tokens must be an object like {"eos_id": 0, "bos_id": null}, got [1, 2]'),
        ({"special_tokens": {"eos_id": "x"}}, "special_tokens.eos_id must be a token id in 0..63 or null, got 'x'"),
        ({"special_tokens": {"eos_id": 0, "bos_id": True}}, "special_tokens.bos_id must be a token id in 0..63 or null, got True"),
        ({"special_tokens": {"eos_id": 64}}, "special_tokens.eos_id must be a token id in 0..63 or null, got 64"),
        ({"special_tokens": {"eos": 1}}, "special_tokens has unknown keys ['eos']"),
        ({"spiking": 5}, "invalid spiking config (spiking config must be a mapping of settings (mode, bits, ...), got 5)"),
        ({"spiking": {"keep_float": 3}}, "spiking config keep_float must be a list of operator kinds, got 3"),
        ({"spiking": {"kind_bits": [10]}}, "spiking config kind_bits must be a mapping of operator kinds to bit widths"),
        ({"spiking": {"silu_x_max_per_layer": {"first": 4.0}}}, "spiking config silu_x_max_per_layer must be a mapping of layer numbers"),
        ({"spiking": {"gelu_x_max": "8"}}, "spiking config gelu_x_max must be a number, got '8'"),
        ({"name": 5}, "name must be a string, got 5"),
    ],
)
def test_wrong_typed_config_fields_name_the_field(checkpoint, changes, culprit):
    edit_config(checkpoint, **changes)
    message = one_line_error(load_checkpoint, checkpoint)
    assert message.startswith(f"{checkpoint}/config.json: ") and culprit in message


@pytest.mark.parametrize(
    "config_cls, field, value, expected",
    [
        (GPT2Config, "ssa_alpha", "2", "float | None"),
        (GPT2Config, "ssa_normalize", 0, "bool"),
        (Mamba2Config, "dt_min", None, "float"),
        (Mamba2Config, "use_conv_bias", "true", "bool"),
        (TTTConfig, "use_gate", "yes", "bool"),
        (TTTConfig, "mini_batch_size", 16.0, "int"),
        (BrainGPTConfig, "expert_intermediate_size", 1.5, "int | None"),
        (BrainGPTConfig, "moe_gating", ["softmax"], "str"),
    ],
)
def test_every_architecture_checks_field_types(config_cls, field, value, expected):
    with pytest.raises(ValueError) as err:
        config_cls.from_dict({field: value})
    assert str(err.value) == f"{config_cls.architecture} config field {field} must be of type {expected}, got {value!r}"


@dataclass(frozen=True)
class ContainerConfig(ArchConfig):
    architecture: ClassVar[str] = "containers"
    kinds: tuple[str, ...] = ()
    pair: tuple[int, float] | None = None
    sizes: list[int] | None = None


def test_tuple_and_list_fields_are_checked_element_by_element():
    config = ContainerConfig.from_dict(json.loads(ContainerConfig(("a", "b"), (1, 2.5), [3]).to_json()))
    assert config == ContainerConfig(("a", "b"), (1, 2.5), [3]) and hash(config.kinds)  # JSON lists back as tuples
    for field, value, expected in [
        ("kinds", "ab", "tuple[str, ...]"),
        ("kinds", ["a", 1], "tuple[str, ...]"),
        ("pair", [1], "tuple[int, float] | None"),
        ("pair", [1.0, 2], "tuple[int, float] | None"),
        ("sizes", [True], "list[int] | None"),
    ]:
        with pytest.raises(ValueError) as err:
            ContainerConfig.from_dict({field: value})
        assert str(err.value) == f"containers config field {field} must be of type {expected}, got {value!r}"


def test_from_dict_still_accepts_what_the_project_writes():
    for name in ARCHITECTURES:
        config_cls, _ = architecture(name)
        default = config_cls()
        assert config_cls.from_dict(json.loads(default.to_json())) == default
    assert LlamaConfig.from_dict({"rms_norm_eps": 1, "head_dim": None}).rms_norm_eps == 1  # an int is a float
    for toml in sorted(CONFIGS.glob("*.toml")):
        for name, fields in tomllib.loads(toml.read_text()).get("model", {}).items():  # finetune.toml: the model brings its own
            architecture(name.split("-")[0])[0].from_dict({**fields, "vocab_size": 512})  # neurtransformer's [model.gpt2-small]: GPT-2


# ---------------------------------------------------------------- tokenizer.json


@pytest.mark.parametrize("text", ["{not json", '{"version": "1.0"}', ""])
def test_corrupt_tokenizer_names_the_file(checkpoint, text):
    (checkpoint / "tokenizer.json").write_text(text)
    message = one_line_error(load_checkpoint, checkpoint)
    assert message.startswith(f"{checkpoint}/tokenizer.json: not a readable tokenizer (")
    assert message.endswith("); re-save it or copy it from the model it came from")


def test_tokenizer_larger_than_the_vocabulary(checkpoint):
    word_tokenizer(100).save(str(checkpoint / "tokenizer.json"))
    message = one_line_error(load_checkpoint, checkpoint)
    assert message == (
        f"{checkpoint}/tokenizer.json: the tokenizer has 100 tokens but the model's vocab_size (in config.json) is 64; "
        "pair the model with the tokenizer it was trained with or fix vocab_size"
    )


def test_gguf_tokenizer_larger_than_the_vocabulary(tmp_path):
    model = tiny(vocab_size=64)
    path = write_gguf(tmp_path / "tiny.gguf", model, tokens=[f"t{i}" for i in range(70)] + ["a", "b", "c", "Ġ", "ab", "Ġa", "Ġb", "abc"])
    message = one_line_error(load_gguf, path)
    assert message.startswith(f"{path}: the tokenizer has 78 tokens but the model's vocab_size (in the GGUF metadata) is 64;")


def test_a_sound_checkpoint_still_loads(checkpoint):
    loaded = load_checkpoint(checkpoint)
    assert loaded.tokenizer.get_vocab_size() == 64 and (loaded.eos_id, loaded.bos_id) == (0, None)
