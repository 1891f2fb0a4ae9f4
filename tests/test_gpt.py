"""The gpt reference against the source homework's checks, the data and tokenizer helpers,
sampling against its distribution, the KV cache, and the training case's contract (train in
the child -> weights -> the reference evaluates them) in-process."""
import math

import pytest
import torch

from dlkit import load_assignment, shakespeare
from grader.cases import judge
from grader.suites import gpt as suite_gpt

G = load_assignment("gpt", "solutions")


def test_word_tokenize_splits_like_nltk_on_the_source_example():
    assert shakespeare.word_tokenize(suite_gpt.SOURCE_LINE) == [
        "KING", "RICHARD", "III", ":", "Say", "that", "I", "did", "all", "this", "for", "love",
        "of", "her", "."]
    assert shakespeare.word_tokenize("I don't know, love's well-spoken--ha...") == [
        "I", "do", "n't", "know", ",", "love", "'s", "well-spoken", "--", "ha", "..."]


def test_tokenizer_round_trip_and_special_ids():
    tok = G.MyTokenizer(shakespeare.play_text("richard_iii"))
    assert tok.vocab[:3] == ["<START>", "<PAD>", "<UNK>"]
    assert (tok.start_id, tok.pad_id, tok.unk_id) == (0, 1, 2)
    ids = tok.encode(suite_gpt.SOURCE_LINE)
    assert ids.dtype == torch.int64 and ids[0] == 0 and len(ids) == 16
    assert tok.decode(ids) == suite_gpt.SOURCE_DECODED
    assert tok.encode("Qzzxq").tolist() == [0, 2]


def test_dialogues_look_like_tiny_shakespeare(tmp_path):
    lines = shakespeare.dialogues(["richard_iii"])
    assert len(lines) > 1000
    assert lines[0].startswith("GLOSTER:\nNow is the winter of our discontent")
    assert all(":\n" in d and not d.startswith("[") for d in lines)
    (tmp_path / "input.txt").write_text("First Citizen:\nBefore we proceed.\n\nAll:\nSpeak.\n")
    assert shakespeare.load_input_txt(tmp_path / "input.txt") == [
        "First Citizen:\nBefore we proceed.", "All:\nSpeak.\n"]


def test_collate_pads_with_the_given_id():
    batch = G.collate_fn([torch.tensor([0, 5, 6]), torch.tensor([0, 7])], pad_id=1)
    assert batch["input_ids"].tolist() == [[0, 5, 6], [0, 7, 1]]
    assert batch["input_mask"].tolist() == [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]


def test_mask_one_means_may_attend():
    torch.manual_seed(0)
    head = G.AttentionHead(8, 4)
    x = torch.randn(2, 5, 8)
    plain, _ = head(x, None)
    everyone, _ = head(x, torch.ones(2, 5, 5))
    assert torch.allclose(plain, everyone)
    only_self, alpha = head(x, torch.eye(5).expand(2, -1, -1))
    assert torch.equal(alpha, torch.eye(5).expand(2, -1, -1))
    assert torch.allclose(only_self, head.W_V(x), atol=1e-6)


def test_loss_matches_cross_entropy_on_real_tokens():
    torch.manual_seed(1)
    logits, ids = torch.randn(2, 6, 9, dtype=torch.float64), torch.randint(3, 9, (2, 6))
    mask = torch.tensor([[1.0] * 6, [1.0] * 3 + [0.0] * 3])
    expected = torch.cat([torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:],
                                                            reduction="none"),
                          torch.nn.functional.cross_entropy(logits[1, :2], ids[1, 1:3],
                                                            reduction="none")]).mean()
    assert torch.allclose(G.DialogueLoss()(logits, ids, mask), expected)


def small_model(seed=0):
    torch.manual_seed(seed)
    return G.DialogueGPT(vocab_size=50, max_N=64, dim=32, attn_dim=8, mlp_dim=32, num_heads=2,
                         num_layers=2).eval()


def test_cache_gives_the_uncached_tokens_and_logits():
    model = small_model()
    prompt = torch.randint(3, 50, (3, 4))
    assert torch.equal(model.generate(prompt, 50), model.generate(prompt, 50, use_cache=False))
    kwargs = dict(temperature=0.9, top_k=20, top_p=0.95)
    cached = model.generate(prompt, 30, generator=torch.Generator().manual_seed(3), **kwargs)
    plain = model.generate(prompt, 30, generator=torch.Generator().manual_seed(3),
                           use_cache=False, **kwargs)
    assert torch.equal(cached, plain)
    assert model.generate(prompt, 500).shape == (3, 64)  # clipped to max_N
    ids = torch.randint(3, 50, (2, 20))
    with torch.no_grad():
        full, _ = model(ids)
        cache = model.new_cache()
        steps = [model(ids[:, t:t + 1], kv_cache=cache)[0] for t in range(20)]
    assert cache.length == 20
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_sampling_follows_the_filtered_distribution():
    logits = torch.randn(1, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    n = 20000
    for kwargs in (dict(top_k=4), dict(top_p=0.7), dict(top_k=6, top_p=0.8, temperature=0.7)):
        scaled = logits / kwargs.get("temperature", 1.0)
        if "top_k" in kwargs:
            scaled = G.top_k_filter(scaled, kwargs["top_k"])
        if "top_p" in kwargs:
            scaled = G.top_p_filter(scaled, kwargs["top_p"])
        probs = torch.softmax(scaled, -1)[0]
        draws = G.sample_next_token(logits.expand(n, -1), generator=torch.Generator().manual_seed(1),
                                    **{"temperature": 1.0, **kwargs})
        freq = torch.bincount(draws, minlength=12).double() / n
        assert (freq[probs == 0] == 0).all()  # never outside the allowed set
        assert (freq - probs).abs().max() < 4 * math.sqrt(0.25 / n)


def test_top_p_keeps_the_token_that_crosses_the_threshold():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64))
    assert torch.isfinite(G.top_p_filter(logits, 0.6)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(G.top_p_filter(logits, 0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(G.top_p_filter(logits, 0.01)).sum() == 1


def tiny_training(monkeypatch, name):
    """The training case's contract end to end, with a tiny profile standing in for `name`."""
    tiny = dict(model=dict(dim=16, attn_dim=8, mlp_dim=16, num_heads=2, num_layers=1),
                steps=3, batch_size=8, lr=1e-3, warmup=1, threads=1)
    monkeypatch.setitem(suite_gpt.PROFILES, name, tiny)
    monkeypatch.setattr(suite_gpt, "profile_name", lambda device: name)
    case = suite_gpt.suite["train/dialogue_gpt"]
    inputs = case.inputs(torch.Generator().manual_seed(0))
    reference = case.reference(inputs)
    assert "data" in reference and "split" in inputs and "ids" not in inputs
    weights = case.call(G, inputs, torch.device("cpu"))
    assert all(type(v) is torch.Tensor for v in weights.values())
    loss = case.evaluate(G, weights, reference["data"], torch.device("cpu"))
    assert loss.dtype == torch.float64 and loss.dim() == 0
    return case, inputs, reference, weights, loss


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_training_contract_in_process(monkeypatch, profile):
    case, inputs, reference, weights, loss = tiny_training(monkeypatch, profile)
    train_rows = {tuple(r) for r in inputs["train_ids"].tolist()}
    assert not any(tuple(r) in train_rows for r in reference["data"]["ids"].tolist())
    assert math.log(int(inputs["vocab_size"])) - 1 < loss.item() < 12  # untrained: near uniform
    verdict = judge(case, loss, torch.zeros((), dtype=torch.float64))  # as grade.py judges
    assert verdict.measure == "loss" and not verdict.passed


def test_evaluate_names_mismatched_parameters(monkeypatch):
    case, inputs, reference, weights, _ = tiny_training(monkeypatch, "cpu")
    renamed = {k.replace("tok_embed", "token_embedding"): v for k, v in weights.items()}
    with pytest.raises(ValueError, match="do not fit.*missing.*tok_embed.*unexpected.*token_embedding") as err:
        case.evaluate(G, renamed, reference["data"], torch.device("cpu"))
    assert "\n" not in str(err.value)
