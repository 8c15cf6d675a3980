"""The lm-eval adapter: equal to lm-eval's HFLM on the same weights, rolling windows, generation,
accounting windows, and the ``snnbench`` registration."""

import pytest
import torch
from lm_eval.api.instance import Instance

from harness.evaluation.accounting import Accounting
from harness.evaluation.adapter import SNNBenchLM
from models.arch.llama import LlamaConfig, LlamaForCausalLM
from models.load import LoadedModel, load_checkpoint, save_checkpoint

TEXT = (
    "the cat sat on the mat and the dog sat on the log. a bird flew over the house while the sun rose. "
    "numbers like 12 and 345 appear too, and so do questions? answers! 'quotes' and (brackets)."
)


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>", "<|bos|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([TEXT] * 20, trainer)
    return tok


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The same tiny random Llama as a transformers folder (for HFLM) and as our LoadedModel."""
    from transformers import LlamaConfig as HFConfig
    from transformers import LlamaForCausalLM as HFLlama
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("hf")
    tok = _tokenizer()
    vocab = tok.get_vocab_size()
    torch.manual_seed(0)
    dims = dict(vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    hf = HFLlama(HFConfig(**dims, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=True)).eval()
    hf.save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|endoftext|>").save_pretrained(folder)
    ours = LlamaForCausalLM(LlamaConfig(**dims, max_position_embeddings=64), init_weights=False)
    ours.load_state_dict(hf.state_dict())
    loaded = LoadedModel(ours.eval(), tok, "tiny", str(folder), eos_id=tok.token_to_id("<|endoftext|>"), bos_id=tok.token_to_id("<|bos|>"))
    return folder, loaded


def _requests(kind, args_list):
    return [Instance(request_type=kind, doc={}, arguments=args, idx=i, metadata=("task_a" if i % 2 else "task_b", i, 1)) for i, args in enumerate(args_list)]


LL_ARGS = [
    ("the cat sat on the", " mat"),
    ("the cat sat on the", " log"),
    ("the cat sat on the", " mat and the dog sat"),
    ("the cat sat on the", " log. a bird"),
    ("a bird flew over the", " house while the sun rose."),
    ("", "numbers like 12"),
    ("questions? answers!", " 'quotes'"),
]


def test_loglikelihood_equals_hflm(pair):
    from lm_eval.models.huggingface import HFLM

    folder, loaded = pair
    hflm = HFLM(pretrained=str(folder), device="cpu", batch_size=2, dtype="float32")
    ours = SNNBenchLM(model=loaded, batch_size=2, device="cpu")
    expected = hflm.loglikelihood(_requests("loglikelihood", LL_ARGS), disable_tqdm=True)
    got = ours.loglikelihood(_requests("loglikelihood", LL_ARGS), disable_tqdm=True)
    for (e, e_greedy), (g, g_greedy) in zip(expected, got):
        assert abs(e - g) < 1e-4 and e_greedy == g_greedy
    rolling_args = [(TEXT,), (TEXT[:40],)]
    expected = hflm.loglikelihood_rolling(_requests("loglikelihood_rolling", rolling_args), disable_tqdm=True)
    got = ours.loglikelihood_rolling(_requests("loglikelihood_rolling", rolling_args), disable_tqdm=True)
    assert max(abs(e - g) for e, g in zip(expected, got)) < 1e-4


def test_rolling_windows_cover_long_documents(pair):
    _, loaded = pair
    long_doc = (TEXT + " ") * 4  # longer than max_length = 64 tokens
    short = SNNBenchLM(model=loaded, batch_size=3, max_length=16, device="cpu")
    full = SNNBenchLM(model=loaded, batch_size=3, max_length=64, device="cpu")
    n_tokens = len(short.tok_encode(long_doc))
    windows = []
    short._forward = (lambda orig: (lambda batch, tasks: windows.extend(batch) or orig(batch, tasks)))(short._forward)
    total = short.loglikelihood_rolling(_requests("loglikelihood_rolling", [(long_doc,)]), disable_tqdm=True)[0]
    assert sum(len(w) for w in windows) >= n_tokens and all(len(w) <= 16 for w in windows)
    assert total < 0 and total != full.loglikelihood_rolling(_requests("loglikelihood_rolling", [(long_doc,)]), disable_tqdm=True)[0]


def test_generate_until_matches_hflm_and_stops(pair):
    from lm_eval.models.huggingface import HFLM

    folder, loaded = pair
    hflm = HFLM(pretrained=str(folder), device="cpu", batch_size=2, dtype="float32")
    ours = SNNBenchLM(model=loaded, batch_size=2, device="cpu")
    args = [("the cat sat", {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False}),
            ("a bird", {"until": ["\n\n"], "max_gen_toks": 8, "do_sample": False})]
    expected = hflm.generate_until(_requests("generate_until", args), disable_tqdm=True)
    got = ours.generate_until(_requests("generate_until", args), disable_tqdm=True)
    assert got == expected
    full = ours.generate_until(_requests("generate_until", [("the cat sat", {"until": [], "max_gen_toks": 8})]), disable_tqdm=True)[0]
    stop = full[len(full) // 2 :][:2]
    cut = ours.generate_until(_requests("generate_until", [("the cat sat", {"until": [stop], "max_gen_toks": 8})]), disable_tqdm=True)[0]
    assert cut == full[: full.index(stop)]


def test_accounting_attributes_windows_to_tasks(pair):
    from models.convert import swap_mode
    from models.arch.spiking_config import SpikingConfig

    _, loaded = pair
    snn = LoadedModel(swap_mode(loaded.model, SpikingConfig(mode="snn-fused")), loaded.tokenizer, "tiny-snn", "", loaded.eos_id, loaded.bos_id)
    accounting = Accounting(snn.model, meters=[], count_ops=True)
    lm = SNNBenchLM(model=snn, batch_size=8, device="cpu", accounting=accounting)
    lm.loglikelihood(_requests("loglikelihood", LL_ARGS), disable_tqdm=True)
    costs = accounting.tasks
    assert set(costs) == {"task_a", "task_b"}
    total = accounting.totals()
    assert total.ops.Effective_ACs > 0 and total.tokens == sum(c.tokens for c in costs.values())
    assert costs["task_a"].ops.Effective_ACs > 0 and costs["task_b"].ops.Effective_ACs > 0
    accounting.close()


def test_snnbench_is_registered_and_bad_args_fail_clearly(pair):
    from lm_eval.api.registry import get_model

    assert get_model("snnbench") is SNNBenchLM
    _, loaded = pair
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        SNNBenchLM(model=loaded, batch_size=0)
    with pytest.raises(ValueError, match="give pretrained="):
        SNNBenchLM()


def test_checkpoint_keeps_special_tokens(pair, tmp_path):
    _, loaded = pair
    save_checkpoint(loaded.model, tmp_path / "c", loaded.tokenizer, special_tokens=loaded.special_tokens())
    again = load_checkpoint(tmp_path / "c")
    assert (again.eos_id, again.bos_id) == (loaded.eos_id, loaded.bos_id)


def test_short_sequences_share_a_token_budget_per_batch():
    from harness.evaluation.adapter import TokenBudget

    requests = tuple(("", [0] * n, [1]) for n in (99, 99, 49, 49, 49, 49, 19, 19, 19, 19, 19, 19, 19, 19, 19, 19))
    from lm_eval.models.utils import Collator

    chunks = Collator.get_chunks(requests, fn=TokenBudget(floor=2, budget=200, max_length=1024))
    assert [len(c) for c in chunks] == [2, 4, 10]  # 100-token sequences 2 at a time, 50-token 4, 20-token 10
