"""Hugging Face folders in and out: what transformers' ``save_pretrained`` writes, read as a snnbench model, and written from one.

In: a folder with ``config.json`` of model_type ``llama`` or ``qwen2`` (Qwen2, BrainTransformers' base family: biases
on q/k/v, none on o_proj), its weights as ``model.safetensors`` or as the shards ``model.safetensors.index.json`` lists,
and, if any, ``tokenizer.json``. ``snnbench_config`` translates the config into snnbench's (``models.load.read_config``
returns it for such a folder, so every reader of a checkpoint's config takes it); ``read_weights`` reads the weights
as float32 under their own names (snnbench's Llama uses transformers' names). eos / bos come from tokenizer_config.json
(the tokens transformers' tokenizer and lm-eval's ``hf`` model use), else generation_config.json, else config.json.
What snnbench cannot run exactly is refused in one line saying what and how to fix it: another model_type, rope
scaling, an activation other than silu, a Llama with ``attention_bias`` (transformers then puts a bias on o_proj too),
Qwen2's sliding window, a quantized checkpoint, weights only as pytorch_model.bin.

Out: ``export_hf`` writes such a folder from a Llama-architecture snnbench model in any mode: config.json (llama, or
qwen2 when the model has attention biases), generation_config.json, the float weights in model.safetensors, the
tokenizer (tokenizer.json and a tokenizer_config.json for ``AutoTokenizer``), and beside them ``snnbench.json``
(snnbench's config: architecture, spiking config, name, special tokens) and ``snnbench_spiking.safetensors`` (every
mode-state tensor: quantizer scales, clips, smoothing factors, calibrated flags, neuron thresholds, time windows).
transformers loads the float model and ignores the two snnbench files; snnbench reads them back and rebuilds the model
in its saved mode, losslessly.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from tasks.files import TEMP_SUFFIX, dumps_strict

from .arch.base import CausalLM, calibrated_keys, mode_state_keys
from .arch.llama import LlamaConfig
from .errors import ModelLoadError, one_line

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
GENERATION_FILE = "generation_config.json"
TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SNNBENCH_FILE = "snnbench.json"
SPIKING_STATE_FILE = "snnbench_spiking.safetensors"
MODEL_TYPES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}  # model_type -> transformers class
DEFAULT_CONTEXT = {"llama": 2048, "qwen2": 32768}  # transformers' default max_position_embeddings
REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
# files of another model a forced export into a used folder removes (the export writes the rest anew)
STALE = (INDEX_FILE, "model-*-of-*.safetensors", "pytorch_model*.bin", "pytorch_model.bin.index.json", "special_tokens_map.json",
         TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, "tokenizer.model", "vocab.json", "merges.txt")
RESAVE = "re-save the model with transformers' save_pretrained"


# ---------------------------------------------------------------- in


def _json(path: Path) -> Any:
    """``path`` parsed as JSON; a one-line ModelLoadError when it is not."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{path}: not valid JSON ({one_line(err)})") from None


def is_hf_config(config: Any) -> bool:
    """Whether a parsed config.json is transformers' (it has a ``model_type``) rather than snnbench's (a ``model`` section)."""
    return isinstance(config, dict) and "model_type" in config and "model" not in config


def is_hf_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a transformers config.json (an unreadable one is not: the checkpoint reader reports it)."""
    path = Path(folder) / CONFIG_FILE
    try:
        return path.is_file() and is_hf_config(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False


def _refuse_unsupported(hf: dict[str, Any], model_type: str, where: Path) -> None:
    """A one-line ModelLoadError for what snnbench's Llama cannot compute exactly as transformers does."""
    if hf.get("quantization_config"):
        method = hf["quantization_config"].get("quant_method", "?") if isinstance(hf["quantization_config"], dict) else "?"
        raise ModelLoadError(f"{where}: a quantized checkpoint (quant_method {method}); give the float model (save_pretrained of it unquantized)")
    if hf.get("hidden_act", "silu") != "silu":
        raise ModelLoadError(f"{where}: hidden_act {hf['hidden_act']!r} is not supported; snnbench's SwiGLU MLP computes silu only")
    for key in ("rope_scaling", "rope_parameters"):
        value = hf.get(key)
        flat = isinstance(value, dict) and not any(isinstance(v, dict) for v in value.values())
        if value is not None and (not flat or value.get("rope_type", value.get("type", "default")) != "default"):
            raise ModelLoadError(f"{where}: {key} is {json.dumps(value)}; snnbench implements plain rotary positions only (rope_type "
                                 "default), so use a model without rope scaling")
    if model_type == "llama" and hf.get("attention_bias"):
        raise ModelLoadError(f"{where}: attention_bias is true, which in transformers' Llama puts a bias on o_proj as well; snnbench's "
                             "decoder has q/k/v biases only (as Qwen2), so this model is not supported")
    if model_type == "qwen2" and hf.get("use_sliding_window"):
        raise ModelLoadError(f"{where}: use_sliding_window is true; snnbench attends to the whole context, so set it to false only if "
                             "sliding_window exceeds every context you evaluate")


def llama_config(hf: dict[str, Any], where: Path) -> LlamaConfig:
    """snnbench's LlamaConfig of a transformers llama / qwen2 config; a one-line ModelLoadError for what it cannot run."""
    model_type = hf.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ModelLoadError(f"{where}: model_type {model_type!r} is not supported (supported: {', '.join(MODEL_TYPES)}); "
                             "snnbench runs Llama-family decoders only")
    _refuse_unsupported(hf, model_type, where)
    missing = [key for key in REQUIRED if key not in hf]
    if missing:
        raise ModelLoadError(f"{where}: lacks {', '.join(missing)}; {RESAVE}")
    params = hf.get("rope_parameters") or {}
    fields = {key: hf[key] for key in REQUIRED} | {
        "num_key_value_heads": hf.get("num_key_value_heads") or hf["num_attention_heads"],
        "head_dim": hf.get("head_dim"),
        "rms_norm_eps": hf.get("rms_norm_eps", 1e-6),
        "rope_theta": params.get("rope_theta", hf.get("rope_theta", 10000.0)),
        "max_position_embeddings": hf.get("max_position_embeddings", DEFAULT_CONTEXT[model_type]),
        "tie_word_embeddings": hf.get("tie_word_embeddings", False),
        "attention_bias": model_type == "qwen2",
        "mlp_bias": bool(hf.get("mlp_bias", False)) and model_type == "llama",
    }
    try:
        return _plain_head_dim(LlamaConfig.from_dict(fields))
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{where}: {one_line(err)}") from None


def _plain_head_dim(config: LlamaConfig) -> LlamaConfig:
    """``config`` with head_dim None when it is hidden_size / heads (transformers writes it either way)."""
    plain = config.head_dim is not None and config.head_dim * config.num_attention_heads == config.hidden_size
    return replace(config, head_dim=None) if plain else config


def _token_id(value: Any, kind: str, folder: Path, tokenizer: Callable[[], Tokenizer]) -> int | None:
    """The id of tokenizer_config.json's ``{kind}_token`` (a string, an AddedToken object or null)."""
    text = value.get("content") if isinstance(value, dict) else value
    if text is None:
        return None
    token_id = tokenizer().token_to_id(str(text))
    if token_id is None:
        raise ModelLoadError(f"{folder / TOKENIZER_CONFIG_FILE}: {kind}_token {text!r} is not a token of {TOKENIZER_FILE}; fix one of the two files")
    return token_id


def special_tokens(folder: Path, hf: dict[str, Any]) -> dict[str, int | None]:
    """eos / bos ids as transformers' tokenizer (and so lm-eval's ``hf`` model) has them: with a tokenizer_config.json beside
    tokenizer.json, its tokens (or special_tokens_map.json's), a token neither names being None; without one,
    generation_config.json's ids, else config.json's; a list of ids gives its first."""
    folder = Path(folder)
    names = _json(folder / TOKENIZER_CONFIG_FILE) if (folder / TOKENIZER_CONFIG_FILE).is_file() else None
    mapped = _json(folder / SPECIAL_TOKENS_FILE) if (folder / SPECIAL_TOKENS_FILE).is_file() else {}
    generation = _json(folder / GENERATION_FILE) if (folder / GENERATION_FILE).is_file() else {}
    loaded: list[Tokenizer] = []

    def tokenizer() -> Tokenizer:
        if not loaded:
            try:
                loaded.append(Tokenizer.from_file(str(folder / TOKENIZER_FILE)))
            except Exception as err:  # the Rust library raises a bare Exception for any unreadable file
                raise ModelLoadError(f"{folder / TOKENIZER_FILE}: not a readable tokenizer ({one_line(err)}); {RESAVE}") from None
        return loaded[0]

    out: dict[str, int | None] = {}
    for kind in ("eos", "bos"):
        if isinstance(names, dict) and (folder / TOKENIZER_FILE).is_file():  # the tokenizer's own: a token it does not name is None
            token = names.get(f"{kind}_token") or (mapped.get(f"{kind}_token") if isinstance(mapped, dict) else None)
            out[f"{kind}_id"] = _token_id(token, kind, folder, tokenizer) if token else None
            continue
        value = generation.get(f"{kind}_token_id") if isinstance(generation, dict) else None
        value = hf.get(f"{kind}_token_id") if value is None else value
        out[f"{kind}_id"] = (value[0] if value else None) if isinstance(value, list) else value
    return out


def snnbench_config(folder: Path, hf: dict[str, Any]) -> dict[str, Any]:
    """The snnbench config (as ``save_checkpoint`` writes it) of a transformers folder: its snnbench.json when
    ``export_hf`` wrote one, checked to describe config.json's network; else config.json translated (mode ann)."""
    folder = Path(folder)
    network = llama_config(hf, folder / CONFIG_FILE)
    path = folder / SNNBENCH_FILE
    if not path.is_file():
        return {"model": network.to_dict(), "name": folder.name, "special_tokens": special_tokens(folder, hf)}
    saved = _json(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict) or saved["model"].get("architecture", "llama") != "llama":
        raise ModelLoadError(f"{path}: has no 'model' section of a llama architecture; export the model again with snnbench export --hf")
    try:
        own = _plain_head_dim(LlamaConfig.from_dict(saved["model"]))
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{path}: invalid model config ({one_line(err)}); export the model again with snnbench export --hf") from None
    differ = [f"{k} {v} vs {asdict(own)[k]}" for k, v in asdict(network).items() if asdict(own)[k] != v]
    if differ:
        raise ModelLoadError(f"{folder}: {CONFIG_FILE} and {SNNBENCH_FILE} describe different networks ({', '.join(differ[:3])}); export the "
                             f"model again, or delete {SNNBENCH_FILE} and {SPIKING_STATE_FILE} to load {CONFIG_FILE}'s float model")
    return saved


def _safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file; a one-line ModelLoadError when it cannot be read."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadError(f"{path}: corrupt or unreadable safetensors file ({one_line(err)}); {RESAVE}") from None


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a transformers folder's weights: model.safetensors, else every shard its index lists."""
    folder = Path(folder)
    if (folder / WEIGHTS_FILE).is_file():
        return [folder / WEIGHTS_FILE]
    index = folder / INDEX_FILE
    if not index.is_file():
        if any(folder.glob("pytorch_model*.bin")):
            raise ModelLoadError(f"{folder}: has its weights only as pytorch_model.bin, which snnbench does not read; re-save them with "
                                 "model.save_pretrained(DIR, safe_serialization=True)")
        raise ModelLoadError(f"{folder}: has no {WEIGHTS_FILE} or {INDEX_FILE}; {RESAVE}")
    data = _json(index)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(f, str) and Path(f).name == f for f in weight_map.values()):
        raise ModelLoadError(f"{index}: has no weight_map of tensor names to shard files in this folder; {RESAVE}")
    shards = [folder / name for name in sorted(set(weight_map.values()))]
    missing = [shard.name for shard in shards if not shard.is_file()]
    if missing:
        raise ModelLoadError(f"{index}: lists {', '.join(missing[:3])}, missing from {folder}; copy every shard of the model there")
    return shards


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """A transformers folder's weights as float32, plus, beside a snnbench.json, the spiking state of snnbench_spiking.safetensors."""
    folder = Path(folder)
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        for name, tensor in _safetensors(path).items():
            if not name.endswith("rotary_emb.inv_freq"):  # a buffer older transformers saved; snnbench computes it
                state[name] = tensor.float() if tensor.is_floating_point() else tensor
    if (folder / SNNBENCH_FILE).is_file():
        if not (folder / SPIKING_STATE_FILE).is_file():
            raise ModelLoadError(f"{folder}: has {SNNBENCH_FILE} but not {SPIKING_STATE_FILE}, the spiking state it needs; export the model again")
        state.update(_safetensors(folder / SPIKING_STATE_FILE))
    return state


def model_files(folder: Path) -> list[Path]:
    """The files a transformers folder's model is made of, in a fixed order (a model's identity hashes them): configs,
    the weight files read, tokenizer files and snnbench's two."""
    folder = Path(folder)
    weights = weight_files(folder)
    index = [folder / INDEX_FILE] if weights[0].name != WEIGHTS_FILE else []
    named = [folder / name for name in (CONFIG_FILE, GENERATION_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE,
                                          SNNBENCH_FILE, SPIKING_STATE_FILE)]
    return [named[0], *index, *weights, *(path for path in named[1:] if path.is_file())]


# ---------------------------------------------------------------- out


def hf_model_type(model: CausalLM) -> str:
    """``llama``, or ``qwen2`` for a model with q/k/v biases; a one-line ValueError for a model transformers has no twin of."""
    arch = getattr(model.config, "architecture", type(model).__name__)
    if arch != "llama":
        raise ValueError(f"a {arch} model cannot be exported to Hugging Face format; only llama-architecture models (Llama, Qwen2, "
                         "SmolLM2, BrainTransformers) can")
    if model.config.attention_bias and model.config.mlp_bias:
        raise ValueError("a model with both q/k/v and MLP biases has no transformers twin (Llama would add an o_proj bias, Qwen2 has "
                         "no MLP bias); it cannot be exported to Hugging Face format")
    return "qwen2" if model.config.attention_bias else "llama"


def hf_config(config: LlamaConfig, model_type: str, special: dict[str, int | None]) -> dict[str, Any]:
    """transformers' config.json of ``config`` as ``model_type`` (float32 weights, plain rotary positions)."""
    fields = {
        "architectures": [MODEL_TYPES[model_type]], "model_type": model_type, "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size, "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads, "num_key_value_heads": config.num_key_value_heads,
        "head_dim": config.dims_per_head, "hidden_act": "silu", "rms_norm_eps": config.rms_norm_eps, "rope_theta": config.rope_theta,
        "rope_scaling": None, "max_position_embeddings": config.max_position_embeddings, "tie_word_embeddings": config.tie_word_embeddings,
        "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True, "torch_dtype": "float32",
        "bos_token_id": special.get("bos_id"), "eos_token_id": special.get("eos_id"),
    }
    if model_type == "qwen2":
        return fields | {"use_sliding_window": False, "sliding_window": None, "max_window_layers": config.num_hidden_layers}
    return fields | {"attention_bias": False, "mlp_bias": config.mlp_bias}


def split_state(model: CausalLM) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the float weights under transformers' names, one copy of tied embeddings; every mode-state and calibrated tensor)."""
    spiking = mode_state_keys(model) | calibrated_keys(model)
    tied = model.config.tie_word_embeddings
    weights, state = {}, {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if name in spiking:
            state[name] = tensor
        elif not (tied and name == "lm_head.weight"):
            weights[name] = tensor.float()
    return weights, state


def _atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Write ``path`` through ``write(temporary path)`` and an atomic rename (a killed write leaves a ``.*.tmp`` file)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a model folder is meant to be shared
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _text(text: str) -> Callable[[str], None]:
    return lambda tmp: Path(tmp).write_text(text, encoding="utf-8")


def _tokenizer_config(tokenizer: Tokenizer, special: dict[str, int | None], context: int) -> dict[str, Any]:
    """A tokenizer_config.json with which ``AutoTokenizer`` loads tokenizer.json as a PreTrainedTokenizerFast with eos / bos."""
    names = {f"{kind}_token": tokenizer.id_to_token(special[f"{kind}_id"]) for kind in ("eos", "bos") if special.get(f"{kind}_id") is not None}
    return {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, "model_max_length": context,
            "bos_token": None, **{k: v for k, v in names.items() if v is not None}}


def export_hf(model: CausalLM, folder: Path, tokenizer: Tokenizer | None = None, extra: dict[str, Any] | None = None,
              special_tokens: dict[str, int | None] | None = None) -> list[Path]:
    """Write ``model`` (llama architecture, any mode) to ``folder`` as a transformers folder with snnbench's spiking state
    beside it (see the module doc), each file atomically, config.json last; returns the files written. ``extra``: more of
    snnbench's config (name, training record ...); files of another model a previous save left are removed."""
    model_type = hf_model_type(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    special = {"eos_id": 0, "bos_id": None, **(special_tokens or {})}
    for pattern in STALE:
        for path in folder.glob(pattern):
            path.unlink()
    weights, state = split_state(model)
    written = [_atomic(folder / WEIGHTS_FILE, lambda tmp: save_file(weights, tmp, metadata={"format": "pt"})),
               _atomic(folder / SPIKING_STATE_FILE, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))]
    if tokenizer is not None:
        context = model.config.max_position_embeddings
        written += [_atomic(folder / TOKENIZER_FILE, tokenizer.save),
                    _atomic(folder / TOKENIZER_CONFIG_FILE, _text(dumps_strict(_tokenizer_config(tokenizer, special, context), indent=2) + "\n"))]
    snnbench = {**(extra or {}), "model": model.config.to_dict(), "spiking": model.spiking.to_dict(), "special_tokens": special}
    generation = {"bos_token_id": special["bos_id"], "eos_token_id": special["eos_id"]}
    for name, data in ((GENERATION_FILE, generation), (SNNBENCH_FILE, snnbench), (CONFIG_FILE, hf_config(model.config, model_type, special))):
        written.append(_atomic(folder / name, _text(dumps_strict(data, indent=2) + "\n")))
    return written
