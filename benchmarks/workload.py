"""What the benchmarks run on: sizes (full and ``--quick``), synthetic requests shaped like the real
tasks, and the models (SmolLM2 or a tiny random Llama, its transformers twin, its spiking twin)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
from lm_eval.api.instance import Instance
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers import models as tokenizer_models

from harness.evaluation.accounting import Accounting
from harness.evaluation.adapter import SNNBenchLM
from harness.evaluation.options import CALIBRATION, CALIBRATION_BATCH
from models.arch.llama import LlamaConfig, LlamaForCausalLM
from models.arch.spiking_config import SpikingConfig
from models.calibrate import calibration_batches
from models.convert import in_mode
from models.load import LoadedModel
from tasks.corpus import text_ids
from tasks.loader import DataNotFoundError

TINY_MODEL = "tiny-random"



@dataclass(frozen=True)
class Sizes:
    arc_questions: int
    arc_shots: int
    docs: int
    doc_words: int
    max_length: int
    mfu_lengths: tuple[int, ...]
    peak_n: int
    op_tokens: int
    op_min_seconds: float
    train_batch: int | None  # None: the config's
    train_seq: int | None
    neuron_T: int
    neuron_N: int
    zero_shot_questions: int = 60  # 0-shot ARC-like questions (4 short answers each)
    gen_prompts: int = 8  # greedy generation: prompts, their words, tokens generated, batch sizes
    gen_words: int = 300
    gen_tokens: int = 16
    gen_batches: tuple[int, ...] = (1, 4, 8)
    gen_long_prompts: int = 8  # greedy generation after long prompts (about 1,024 tokens each at full size)
    gen_long_words: int = 930


FULL = Sizes(arc_questions=4, arc_shots=25, docs=3, doc_words=1500, max_length=1024, mfu_lengths=(1024, 2048), peak_n=2048,
             op_tokens=64, op_min_seconds=0.5, train_batch=None, train_seq=None, neuron_T=127, neuron_N=16384)
QUICK = Sizes(arc_questions=2, arc_shots=5, docs=2, doc_words=200, max_length=256, mfu_lengths=(128, 256), peak_n=256,
              op_tokens=8, op_min_seconds=0.02, train_batch=4, train_seq=32, neuron_T=31, neuron_N=1024,
              zero_shot_questions=4, gen_prompts=4, gen_words=30, gen_tokens=4, gen_batches=(1, 4), gen_long_prompts=4, gen_long_words=120)

WORDS = (
    "the of and to in is was that for on with as by at from his her they were which this have had are one their not but "
    "all can there been has when who will more no out into so what up time only new some could these two may first then "
    "do any like my now over such our man me even most made after also did many before must through back years where much "
    "your way well down should because each just those people how too little state good very make world still own see men "
    "work long get here between both life being under never day same another know while last might us great old year off "
    "come since against go came right used take three water plant energy light heat animal rock earth moon sun cell force "
    "motion weather season change food seed grow measure mass volume gas liquid solid metal magnet electric circuit sound"
).split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def arc_like_requests(questions: int, shots: int, seed: int = 0) -> list[tuple[str, str]]:
    """(context, continuation) pairs shaped like ARC-Challenge 25-shot: a few-shot prompt of
    "Question: ...\\nAnswer: ..." blocks shared by 4 multi-token answers per question."""
    rng = random.Random(seed)
    prefix = "".join(f"Question: {_sentence(rng, rng.randint(12, 22))}?\nAnswer: {_sentence(rng, rng.randint(1, 5))}\n\n" for _ in range(shots))
    pairs = []
    for _ in range(questions):
        context = prefix + f"Question: {_sentence(rng, rng.randint(12, 22))}?\nAnswer:"
        pairs += [(context, " " + _sentence(rng, rng.randint(1, 6))) for _ in range(4)]
    return pairs


def documents(count: int, words: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        sentences, n = [], 0
        while n < words:
            k = rng.randint(8, 24)
            sentences.append(_sentence(rng, k).capitalize() + ".")
            n += k
        docs.append(" ".join(sentences))
    return docs


def instances(kind: str, args: list[tuple], task: str) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i, metadata=(task, i, 1)) for i, a in enumerate(args)]


# ---------------------------------------------------------------------------- models


def tiny_random_model(seed: int = 0) -> LoadedModel:
    """A tiny random Llama with a byte-level BPE trained on the benchmark's own text."""
    tok = Tokenizer(tokenizer_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["<|endoftext|>", "<|bos|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(documents(4, 400, seed=99), trainer)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    model = LlamaForCausalLM(config).eval()
    return LoadedModel(model, tok, TINY_MODEL, "random", eos_id=tok.token_to_id("<|endoftext|>"), bos_id=tok.token_to_id("<|bos|>"))


def transformers_twin(loaded):
    """transformers' LlamaForCausalLM (float32) with our float model's weights, and a
    PreTrainedTokenizerFast over a copy of our tokenizer: the HFLM side of benchmark 1."""
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM as HFLlama
    from transformers import PreTrainedTokenizerFast

    c = loaded.model.config
    hf_config = HFConfig(
        vocab_size=c.vocab_size, hidden_size=c.hidden_size, intermediate_size=c.intermediate_size,
        num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
        num_key_value_heads=c.num_key_value_heads, head_dim=c.dims_per_head, rms_norm_eps=c.rms_norm_eps,
        rope_theta=c.rope_theta, max_position_embeddings=c.max_position_embeddings,
        tie_word_embeddings=c.tie_word_embeddings, attention_bias=c.attention_bias, mlp_bias=c.mlp_bias,
        bos_token_id=loaded.bos_id, eos_token_id=loaded.eos_id,
    )
    hf = HFLlama(hf_config).float().eval()
    missing, unexpected = hf.load_state_dict(loaded.model.state_dict(), strict=False)
    missing = [k for k in missing if not (c.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise ValueError(f"transformers Llama does not take our weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
    tokenizer = Tokenizer.from_str(loaded.tokenizer.to_str())
    special = {"eos_token": tokenizer.id_to_token(loaded.eos_id)}
    if loaded.bos_id is not None:
        special["bos_token"] = tokenizer.id_to_token(loaded.bos_id)
    return hf, PreTrainedTokenizerFast(tokenizer_object=tokenizer, **special)


def spiking_twin(loaded: LoadedModel, fallback_text: str) -> tuple[LoadedModel, str]:
    """(the snn-fused model, how it was calibrated): the adapter's own conversion (8 bits,
    smoothed scales, 1,024 webtext tokens) when webtext is fetched, else the same on benchmark text."""
    spiking = SpikingConfig(bits=8, linear_granularity="smoothed", norm_granularity="smoothed")
    try:
        ids = text_ids(loaded.tokenizer, CALIBRATION["data"], CALIBRATION["split"], CALIBRATION["tokens"])
        length, how = CALIBRATION["window"], "adapter conversion: 8 bits, smoothed scales, calibrated on 1,024 webtext tokens"
    except DataNotFoundError:
        ids = loaded.tokenizer.encode(fallback_text).ids[:1024]
        length, how = min(256, len(ids)), f"8 bits, smoothed scales, calibrated on {len(ids)} tokens of benchmark text (webtext not fetched)"
    model = in_mode(loaded, "snn-fused", spiking, calibration_batches(ids, length, CALIBRATION_BATCH)).model
    return LoadedModel(model.eval(), loaded.tokenizer, f"{loaded.name}-snn-fused", loaded.source, loaded.eos_id, loaded.bos_id), how


@dataclass
class Context:
    sizes: Sizes
    repeats: int
    batch_size: int
    seed: int
    loaded: Any = None  # LoadedModel or None
    fallback: str | None = None
    notes: list[str] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def tiny(self) -> bool:
        return self.fallback is not None

    def requests(self) -> dict[str, list]:
        if "requests" not in self._cache:
            s = self.sizes
            self._cache["requests"] = {
                "arc": instances("loglikelihood", arc_like_requests(s.arc_questions, s.arc_shots, self.seed), "bench_arc_like"),
                "rolling": instances("loglikelihood_rolling", [(d,) for d in documents(s.docs, s.doc_words, self.seed + 1)], "bench_rolling"),
                "arc0": instances("loglikelihood", arc_like_requests(s.zero_shot_questions, 0, self.seed + 2), "bench_arc_zero_shot"),
                "generate": instances("generate_until", [(d, {"until": ["\n\n\n\n"], "max_gen_toks": s.gen_tokens, "do_sample": False})
                                                         for d in documents(s.gen_prompts, s.gen_words, self.seed + 3)], "bench_generate"),
                "generate_long": instances("generate_until", [(d, {"until": ["\n\n\n\n"], "max_gen_toks": s.gen_tokens, "do_sample": False})
                                                              for d in documents(s.gen_long_prompts, s.gen_long_words, self.seed + 4)],
                                           "bench_generate_long"),
            }
        return self._cache["requests"]

    def request_tokens(self, lm, kind: str) -> int:
        """Tokens the requests hold (context + continuation, or the document): the throughput numerator."""
        key = f"tokens_{kind}"
        if key not in self._cache:
            reqs = self.requests()[kind]
            if kind in ("arc", "arc0"):
                self._cache[key] = sum(len(lm.tok_encode(r.args[0])) + len(lm.tok_encode(r.args[1])) for r in reqs)
            else:
                self._cache[key] = sum(len(lm.tok_encode(r.args[0])) for r in reqs)
        return self._cache[key]

    def adapter(self, mode: str = "ann") -> SNNBenchLM:
        key = f"adapter_{mode}"
        if key not in self._cache:
            loaded = self.loaded
            if mode == "snn-fused":
                loaded, how = spiking_twin(self.loaded, " ".join(documents(2, 1200, self.seed + 7)))
                self._cache["spiking_calibration"] = how
            self._cache[f"loaded_{mode}"] = loaded
            self._cache[key] = SNNBenchLM(model=loaded, batch_size=self.batch_size, max_length=self.sizes.max_length, device="cpu")
        return self._cache[key]

    def counted_adapter(self, mode: str, batch_size: int, counted: bool = True) -> SNNBenchLM:
        """The ``mode`` model (the same weights as ``adapter(mode)``) at ``batch_size``, its op counters on as in ``snnbench eval``
        (``counted``) or off."""
        self.adapter(mode)
        loaded = self._cache[f"loaded_{mode}"]
        return SNNBenchLM(model=loaded, batch_size=batch_size, max_length=self.sizes.max_length, device="cpu",
                          accounting=Accounting(loaded.model, meters=[], count_ops=counted))

    def hflm(self):
        if "hflm" not in self._cache:
            from lm_eval.models.huggingface import HFLM  # imports transformers, an optional dependency

            hf, tokenizer = transformers_twin(self.loaded)
            self._cache["hf_attention"] = getattr(hf.config, "_attn_implementation", None)
            self._cache["hflm"] = HFLM(pretrained=hf, tokenizer=tokenizer, batch_size=self.batch_size, max_length=self.sizes.max_length,
                                       device="cpu", dtype="float32")
        return self._cache["hflm"]
