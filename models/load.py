"""Loading and saving models: safetensors checkpoints with a JSON config, GGUF import, a name registry.

- ``save_checkpoint(model, folder)`` writes ``model.safetensors`` and ``config.json`` (the
  architecture config, the spiking config and, when given, ``tokenizer.json``).
- ``load_checkpoint(folder)`` rebuilds the model; a missing, corrupt or mismatching file (a
  config field of the wrong type, NaN or inf in any tensor, a tokenizer larger than the
  vocabulary) is a one-line ``ModelLoadError`` naming the file and the problem.
- ``load_gguf(path)`` imports a Llama-family GGUF (llama.cpp format) with the ``gguf``
  package, dequantizing every tensor to float32 (NaN or inf refused, as in checkpoints), and
  builds its tokenizer from the GGUF.
- ``load_model(name_or_path)`` resolves registry names such as ``smollm2-135m`` (a data set
  fetched by ``snnbench data fetch``), checkpoint folders and ``.gguf`` files.
- A folder transformers' ``save_pretrained`` wrote (llama or qwen2) is a checkpoint folder too:
  ``read_config`` and ``load_checkpoint`` hand it to ``models/hf.py``, which also exports one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_model
from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
from tokenizers import models as tokenizer_models

from tasks.datasets import verified_file
from tasks.fetch import data_dir
from tasks.loader import DataNotFoundError

from . import spiking
from .arch.base import CausalLM, mode_state_keys
from .arch.llama import LlamaConfig, LlamaForCausalLM
from .arch.registry import ARCHITECTURES, architecture
from .arch.spiking_config import SpikingConfig
from .errors import ModelLoadError
from .hf import is_hf_config, is_hf_folder, model_files, read_weights, snnbench_config

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"

# Registry names -> (data set that holds the file, file inside the set).
MODEL_REGISTRY = {"smollm2-135m": ("smollm2-135m", "model.gguf")}
SUPPORTED_GGUF_ARCHITECTURES = ("llama", "qwen2")
SUPPORTED_GGUF_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K")


@dataclass
class LoadedModel:
    model: CausalLM
    tokenizer: Any  # tokenizers.Tokenizer or None
    name: str
    source: str  # where it came from: a file path
    eos_id: int = 0  # end of text: stops generation, prefixes empty contexts when there is no bos
    bos_id: int | None = None

    def special_tokens(self) -> dict[str, int | None]:
        return {"eos_id": self.eos_id, "bos_id": self.bos_id}


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(
    model: CausalLM,
    folder: str | os.PathLike[str],
    tokenizer: Any = None,
    extra: dict | None = None,
    special_tokens: dict[str, int | None] | None = None,
) -> Path:
    """Write the model's weights (safetensors) and configs (JSON) to ``folder`` atomically per file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    save_model(model, str(tmp))
    os.replace(tmp, folder / WEIGHTS_FILE)
    if tokenizer is not None:
        tokenizer.save(str(folder / f".{TOKENIZER_FILE}.tmp"))
        os.replace(folder / f".{TOKENIZER_FILE}.tmp", folder / TOKENIZER_FILE)
    config = {"model": model.config.to_dict(), "spiking": model.spiking.to_dict(), **(extra or {})}
    config.setdefault("special_tokens", special_tokens or {})
    (folder / f".{CONFIG_FILE}.tmp").write_text(json.dumps(config, indent=2) + "\n")
    os.replace(folder / f".{CONFIG_FILE}.tmp", folder / CONFIG_FILE)
    return folder


def _one_line(text: object) -> str:
    """``text`` with its whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


def read_config(folder: Path) -> dict[str, Any]:
    """``folder``'s config.json as a dict with a ``model`` section and, if any, a string ``name`` (a transformers
    folder's translated by ``hf.snnbench_config``)."""
    path = folder / CONFIG_FILE
    if not path.exists():
        raise ModelLoadError(f"{path}: missing; a checkpoint folder needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelLoadError(f"{path}: not a UTF-8 text file; a checkpoint's {CONFIG_FILE} is JSON text") from None
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if is_hf_config(config):  # a folder transformers wrote: its config translated (or the snnbench.json an export wrote)
        return snnbench_config(folder, config)
    if not isinstance(config, dict) or "model" not in config:
        raise ModelLoadError(f"{path}: has no 'model' section")
    if not isinstance(config.get("name", ""), str):
        raise ModelLoadError(f"{path}: name must be a string, got {config['name']!r}")
    return config


def build_from_config(config: dict[str, Any], where: Path) -> Any:
    """The model a checkpoint config describes (any architecture of ``models.arch.registry``), untrained."""
    model_cfg = config["model"]
    if not isinstance(model_cfg, dict):
        raise ModelLoadError(f"{where}: model must be an object of architecture fields (as save_checkpoint writes it), got {model_cfg!r}")
    arch = model_cfg.get("architecture", "llama")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ModelLoadError(f"{where}: architecture {arch!r} is unknown (known: {', '.join(ARCHITECTURES)})")
    config_cls, model_cls = architecture(arch)
    arch_config = _parsed(config_cls.from_dict, model_cfg, f"{where}: invalid model config")
    spiking = _parsed(SpikingConfig.from_dict, config.get("spiking", {}), f"{where}: invalid spiking config")
    try:
        return model_cls(arch_config, spiking, init_weights=False)
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{where}: invalid config ({_one_line(err)})") from None


def _parsed(parse: Any, value: Any, context: str) -> Any:
    """``parse(value)``; its TypeError or ValueError as a one-line ModelLoadError after ``context``."""
    try:
        return parse(value)
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{context} ({_one_line(err)})") from None


def special_token_ids(special: Any, vocab_size: int, where: Path | str) -> tuple[int, int | None]:
    """(eos id, bos id) of a config's ``special_tokens``: ids in the vocabulary or null; a missing eos is 0."""
    if special is None:
        special = {}
    if not isinstance(special, dict):
        raise ModelLoadError(f'{where}: special_tokens must be an object like {{"eos_id": 0, "bos_id": null}}, got {special!r}')
    unknown = sorted(set(special) - {"eos_id", "bos_id"})
    if unknown:
        raise ModelLoadError(f"{where}: special_tokens has unknown keys {unknown}; it holds eos_id and bos_id")
    for key, value in special.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < vocab_size):
            raise ModelLoadError(f"{where}: special_tokens.{key} must be a token id in 0..{vocab_size - 1} or null, got {value!r}")
    return special.get("eos_id") or 0, special.get("bos_id")


def read_tokenizer(path: Path) -> Any:
    """The ``tokenizers.Tokenizer`` saved at ``path``; a one-line ModelLoadError when it cannot be read."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # the Rust library raises a bare Exception for any unreadable file
        raise ModelLoadError(f"{path}: not a readable tokenizer ({_one_line(err)}); re-save it or copy it from the model it came from") from None


def check_vocabulary(tokenizer: Any, vocab_size: int, where: Path | str, source: str) -> None:
    """Refuse a tokenizer with ids the model has no embedding for (``source`` says where vocab_size came from)."""
    size = tokenizer.get_vocab_size()
    if size > vocab_size:
        raise ModelLoadError(
            f"{where}: the tokenizer has {size} tokens but the model's vocab_size ({source}) is {vocab_size}; "
            "pair the model with the tokenizer it was trained with or fix vocab_size"
        )


def check_finite(state: dict[str, torch.Tensor], where: Path | str, remedy: str) -> None:
    """Refuse NaN or inf in any floating tensor of ``state``: one ``isfinite`` pass per tensor, counts only for bad ones."""
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        counts = ", ".join(
            f"tensor {name} holds {int(torch.isnan(state[name]).sum())} NaN and {int(torch.isinf(state[name]).sum())} inf values" for name in bad[:3]
        )
        more = f" (and {len(bad) - 3} more tensors)" if len(bad) > 3 else ""
        raise ModelLoadError(f"{where}: {counts}{more}; {remedy}")


def load_checkpoint(folder: str | os.PathLike[str], spiking: SpikingConfig | None = None) -> LoadedModel:
    """Rebuild a model saved by ``save_checkpoint`` (or in a transformers folder); ``spiking`` overrides the saved execution mode."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"{folder}: no such checkpoint folder")
    config = read_config(folder)
    if spiking is not None:
        config = {**config, "spiking": spiking.to_dict()}
    model = build_from_config(config, folder / CONFIG_FILE)
    vocab_size = model.config.vocab_size
    eos_id, bos_id = special_token_ids(config.get("special_tokens"), vocab_size, folder / CONFIG_FILE)
    tokenizer = None
    if (folder / TOKENIZER_FILE).exists():
        tokenizer = read_tokenizer(folder / TOKENIZER_FILE)
        check_vocabulary(tokenizer, vocab_size, folder / TOKENIZER_FILE, f"in {CONFIG_FILE}")
    weights_path = folder / WEIGHTS_FILE
    if is_hf_folder(folder):  # one file or shards, and an export's spiking state
        state = read_weights(folder)
    elif not weights_path.exists():
        raise ModelLoadError(f"{weights_path}: missing")
    else:
        try:
            state = load_file(str(weights_path))
        except (SafetensorError, OSError, ValueError) as err:
            raise ModelLoadError(f"{weights_path}: corrupt or unreadable safetensors file ({_one_line(err)})") from None
    check_finite(state, weights_path, "the checkpoint is damaged: re-train or re-convert it")
    load_weights(model, state, weights_path)
    return LoadedModel(model, tokenizer, config.get("name", folder.name), str(folder), eos_id, bos_id)


# The names of the state only quantized / spiking operators have (``mode_state`` of the spiking classes: quantizer
# calibration, neuron parameters, Synapsis' time window): a checkpoint of one mode loads into another without them.
MODE_STATE_NAMES = frozenset(n for c in vars(spiking).values() if isinstance(c, type) for n in getattr(c, "mode_state", ()))


def _tied_elsewhere(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> tuple[str, ...]:
    """Names of parameters shared with another name that ``state`` holds (any architecture's tied embeddings)."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return tuple(n for group in names.values() if len(group) > 1 and any(g in state for g in group) for n in group)


def load_weights(model: CausalLM, state: dict[str, torch.Tensor], where: Path | str) -> None:
    """Copy ``state`` into ``model``; spiking-only state may be absent or extra, weights may not."""
    own = model.state_dict()
    for name, tensor in state.items():
        if name in own and own[name].shape != tensor.shape:
            raise ModelLoadError(f"{where}: {name} has shape {tuple(tensor.shape)}, the config needs {tuple(own[name].shape)}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    optional = mode_state_keys(model) | set(_tied_elsewhere(model, state))  # one copy of a tied pair is enough (safetensors stores one)
    real_missing = [k for k in missing if k not in optional]
    unexpected = [k for k in unexpected if k.rpartition(".")[2] not in MODE_STATE_NAMES]  # e.g. a converted checkpoint loaded as ann
    if real_missing or unexpected:
        raise ModelLoadError(
            f"{where}: weights do not fit the config: missing {real_missing[:4]}{'...' if len(real_missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )


# ---------------------------------------------------------------- GGUF


def _field(reader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's rotary row permutation of q/k weights (interleaved pairs -> rotate-half halves)."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_GGUF_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def gguf_config(reader, path: Path) -> LlamaConfig:
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_GGUF_ARCHITECTURES:
        raise ModelLoadError(f"{path}: GGUF architecture {arch!r} is not supported (supported: {', '.join(SUPPORTED_GGUF_ARCHITECTURES)})")
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    try:
        heads = int(_field(reader, f"{arch}.attention.head_count"))
        hidden = int(_field(reader, f"{arch}.embedding_length"))
        names = {t.name for t in reader.tensors}
        return LlamaConfig(
            vocab_size=int(_field(reader, f"{arch}.vocab_size", len(tokens))),
            hidden_size=hidden,
            intermediate_size=int(_field(reader, f"{arch}.feed_forward_length")),
            num_hidden_layers=int(_field(reader, f"{arch}.block_count")),
            num_attention_heads=heads,
            num_key_value_heads=int(_field(reader, f"{arch}.attention.head_count_kv", heads)),
            rms_norm_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
            rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
            max_position_embeddings=int(_field(reader, f"{arch}.context_length", 2048)),
            tie_word_embeddings="output.weight" not in names,
            attention_bias="blk.0.attn_q.bias" in names,
        )
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{path}: GGUF metadata does not describe a valid {arch} model ({err})") from None


def gguf_tokenizer(reader: Any, path: Path) -> Tokenizer:
    """A ``tokenizers`` byte-level BPE built from the GGUF's vocabulary and merges.

    The pre-tokenizer follows the GGUF's ``tokenizer.ggml.pre``: ``smollm`` splits digits one
    by one before GPT-2's byte-level split (as SmolLM's own tokenizer does); others use GPT-2's.
    """
    if _field(reader, "tokenizer.ggml.model") != "gpt2":
        raise ModelLoadError(f"{path}: tokenizer model {_field(reader, 'tokenizer.ggml.model')!r} is not supported (gpt2 byte-level BPE)")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    tokenizer = Tokenizer(tokenizer_models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if _field(reader, "tokenizer.ggml.pre") == "smollm":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    types = _field(reader, "tokenizer.ggml.token_type") or []
    specials = [AddedToken(tokens[i], special=True) for i, kind in enumerate(types) if kind == 3]
    tokenizer.add_special_tokens(specials)
    return tokenizer


def load_gguf(path: str | os.PathLike[str], spiking: SpikingConfig | None = None) -> LoadedModel:
    """Import a Llama-family GGUF: every tensor dequantized to float32, tokenizer from the file."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such GGUF file")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as err:  # the reader raises ValueError/struct errors on damaged files
        raise ModelLoadError(f"{path}: not a readable GGUF file ({type(err).__name__}: {err})") from None
    config = gguf_config(reader, path)
    arch = _field(reader, "general.architecture")
    model = LlamaForCausalLM(config, spiking, init_weights=False)
    state: dict[str, torch.Tensor] = {}
    file_names: dict[str, str] = {}  # our name -> the GGUF's, for error messages
    for tensor in reader.tensors:
        kind = tensor.tensor_type.name
        if kind not in SUPPORTED_GGUF_TYPES:
            raise ModelLoadError(f"{path}: tensor {tensor.name} has quantization type {kind}, not supported ({', '.join(SUPPORTED_GGUF_TYPES)})")
        weights = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        if tensor.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif tensor.name == "output_norm.weight":
            name = "model.norm.weight"
        elif tensor.name == "output.weight":
            name = "lm_head.weight"
        elif tensor.name.startswith("blk."):
            _, layer, rest = tensor.name.split(".", 2)
            if rest not in _GGUF_NAMES:
                raise ModelLoadError(f"{path}: unexpected tensor {tensor.name}")
            if arch == "llama" and rest == "attn_q.weight":
                weights = _unpermute(weights, config.num_attention_heads)
            if arch == "llama" and rest == "attn_k.weight":
                weights = _unpermute(weights, config.num_key_value_heads)
            name = f"model.layers.{layer}.{_GGUF_NAMES[rest]}"
        else:
            raise ModelLoadError(f"{path}: unexpected tensor {tensor.name}")
        state[name] = torch.from_numpy(np.ascontiguousarray(weights))
        file_names[name] = tensor.name
    check_finite({file_names[n]: t for n, t in state.items()}, path, "the GGUF is damaged: convert or download it again")
    load_weights(model, state, path)
    tokenizer = gguf_tokenizer(reader, path)
    check_vocabulary(tokenizer, config.vocab_size, path, "in the GGUF metadata")
    eos = _field(reader, "tokenizer.ggml.eos_token_id", 0)
    bos = _field(reader, "tokenizer.ggml.bos_token_id")
    return LoadedModel(
        model.eval(), tokenizer, str(_field(reader, "general.name", path.stem)), str(path), int(eos), None if bos is None else int(bos)
    )


# ---------------------------------------------------------------- registry


def checkpoint_files(folder: Path) -> list[Path]:
    """The files a checkpoint folder's model is made of (what its identity hashes): config, weights and tokenizer, or a
    transformers folder's (``hf.model_files``: every shard, tokenizer and generation configs, snnbench's spiking state)."""
    if is_hf_folder(folder):
        return model_files(folder)
    return [folder / name for name in (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE) if (folder / name).exists()]


def load_model(name_or_path: str, spiking: SpikingConfig | None = None, data_root: Path | None = None) -> LoadedModel:
    """A registry name (``smollm2-135m``), a checkpoint folder (snnbench's, or transformers' llama / qwen2: ``models/hf.py``)
    or a ``.gguf`` file."""
    if name_or_path in MODEL_REGISTRY:
        data_set, filename = MODEL_REGISTRY[name_or_path]
        root = data_root or data_dir()
        try:
            path = verified_file(root, data_set, filename)  # sha256-checked: a damaged set is an error, not garbage weights
        except DataNotFoundError as err:
            raise ModelLoadError(f"model '{name_or_path}': {err}") from None
        loaded = load_gguf(path, spiking)
        loaded.name = name_or_path
        return loaded
    path = Path(name_or_path)
    if path.suffix == ".gguf":
        return load_gguf(path, spiking)
    if path.is_dir():
        return load_checkpoint(path, spiking)
    raise ModelLoadError(
        f"unknown model {name_or_path!r}: not a registry name ({', '.join(MODEL_REGISTRY)}), a checkpoint folder (snnbench's or a "
        "Hugging Face save_pretrained folder) or a .gguf file"
    )
