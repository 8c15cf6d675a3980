"""``snnbench export --hf CHECKPOINT DIR``: a llama-architecture model as a Hugging Face folder (``models/hf.py``).

transformers' ``AutoModelForCausalLM.from_pretrained(DIR)`` loads its float weights and ``AutoTokenizer`` its tokenizer;
snnbench (``--model DIR``) reads the spiking state written beside them and rebuilds the model in its saved mode, losslessly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = ("Write a llama-architecture model as a Hugging Face folder: transformers loads its float weights and tokenizer, "
               "snnbench (--model DIR) reloads it in its saved mode with its spiking state, losslessly.")

def add_parser(commands) -> None:
    p = commands.add_parser(
        "export", help="write a model as a Hugging Face folder (transformers loads it; snnbench reloads it losslessly)",
        description=DESCRIPTION, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--hf", action="store_true",
                      help="Hugging Face format: config.json (llama, or qwen2 with attention biases), model.safetensors, tokenizer, "
                           "and snnbench.json + snnbench_spiking.safetensors (the spiking state)")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="the model: registry name, checkpoint folder, Hugging Face folder or .gguf file")
    p.add_argument("dir", metavar="DIR", help="the folder to write; it must be new or empty unless --force")
    p.add_argument("--force", action="store_true", help="write into a non-empty DIR, replacing the model files there")
    p.set_defaults(handler=run)


def check_target(folder: Path, checkpoint: str, force: bool) -> Path:
    """``folder`` if the export may write there: not a file, not the checkpoint itself, new or empty unless ``force``."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"DIR {folder} is a file; give a folder to write the export to")
    if Path(checkpoint).exists() and folder.resolve() == Path(checkpoint).resolve():
        raise ValueError(f"DIR {folder} is the checkpoint being exported; give another folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise ValueError(f"DIR {folder} is not empty; give a new or empty folder, or --force to replace the model files in it")
    return folder


def run(args: argparse.Namespace) -> int:
    from models.hf import export_hf, hf_model_type
    from models.load import load_model, read_config
    from tasks.files import check_writable

    folder = check_writable(check_target(Path(args.dir), args.checkpoint, args.force), "DIR")
    loaded = load_model(args.checkpoint)
    hf_model_type(loaded.model)  # a model transformers has no twin of is refused before anything is written
    source = Path(loaded.source)
    saved = read_config(source) if source.is_dir() else {}  # the record of a training, kept (e.g. for eval --snn-from)
    extra = {k: v for k, v in saved.items() if k not in ("model", "spiking", "special_tokens")} | {"name": loaded.name}
    written = export_hf(loaded.model, folder, loaded.tokenizer, extra, loaded.special_tokens())
    print(f"wrote {folder}: {', '.join(p.name for p in written)}")
    print(f"transformers loads its float weights (AutoModelForCausalLM.from_pretrained); snnbench --model {folder} runs it in mode "
          f"{loaded.model.mode}" + ("" if loaded.tokenizer is not None else " (no tokenizer: the model had none)"))
    return 0
