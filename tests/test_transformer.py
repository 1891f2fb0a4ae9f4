"""The transformer reference against the source homework's own expected values, and the
suite's cases against the torch modules they promise to match."""
import math

import pytest
import torch
from torch import nn

from dlkit import arith, load_assignment, rel_error

T = load_assignment("transformer", "solutions")


def close(got, expected, tol=1e-4):
    """Within `tol` relative, or within the printed precision (5 decimals) of the source."""
    expected = torch.tensor(expected)
    return rel_error(got, expected) <= tol or torch.allclose(got, expected, rtol=0, atol=6e-6)


def test_token_dict_and_tokenization_match_the_source():
    d = T.generate_token_dict(T.VOCAB)
    assert d["0"] == 0 and d["EOS"] == 15
    tokenize = lambda s: T.preprocess_input_sequence(s, d, T.SPECIAL_TOKENS)  # noqa: E731
    assert tokenize("BOS POSITIVE 0333 add POSITIVE 0696 EOS") == [14, 10, 0, 3, 3, 3, 12, 10, 0, 6, 9, 6, 15]
    assert tokenize("BOS NEGATIVE 0286 subtract NEGATIVE 0044 EOS") == [14, 11, 0, 2, 8, 6, 13, 11, 0, 0, 4, 4, 15]
    assert tokenize("BOS NEGATIVE 0078 EOS") == [14, 11, 0, 0, 7, 8, 15]


def test_source_attention_values():
    q = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0]]).view(1, 2, 3)
    k = torch.eye(3).view(1, 3, 3)
    v = torch.tensor([[3.0, 0, 0], [0, 5, 0], [0, 0, 7]]).view(1, 3, 3)
    out = T.scaled_dot_product_attention(q, k, v)
    assert close(out.view(-1)[:5], [1.413249135017395, 1.3222922086715698, 1.8512091636657715,
                                    1.0912044048309326, 1.818674087524414])
    masked = T.scaled_dot_product_attention(q, k, v, torch.tensor([[0, 0, 1]]).bool())
    assert close(masked.view(-1)[:5], [1.921372413635254, 1.7977124452590942, 0.0, 1.5, 2.5])
    torch.manual_seed(100)
    q2, k2, v2 = torch.randn(3, 5, 7), torch.randn(3, 11, 7), torch.randn(3, 11, 7)
    assert close(T.scaled_dot_product_attention(q2, k2, v2).view(-1)[6:11],
                 [-0.40304261445999146, -0.2931785583496094, 0.20563912391662598,
                  0.08719107508659363, 0.08274038136005402])
    torch.manual_seed(210)
    q5, k5, v5 = torch.randn(2, 4, 3), torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    assert close(T.scaled_dot_product_attention(q5, k5, v5, causal=True).view(-1)[2:7],
                 [0.9079901576042175, -0.573272705078125, -1.1765587329864502,
                  0.7771514058113098, -0.3235766291618347])
    torch.manual_seed(220)
    q6, k6, v6 = torch.randn(3, 5, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    mask = torch.tensor([[0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]).bool()
    assert close(T.scaled_dot_product_attention(q6, k6, v6, mask, causal=True).view(-1)[3:8],
                 [-0.794226348400116, -0.4268738329410553, -0.8167679309844971,
                  -0.3952184319496155, -0.5149437189102173])


def linspace(lo, hi, *shape):
    return torch.linspace(lo, hi, math.prod(shape)).reshape(*shape)


def test_source_loop_and_masked_values():
    q, k, v = linspace(-0.4, 0.6, 5, 4), linspace(-0.8, 0.5, 5, 4), linspace(-0.3, 0.8, 5, 4)
    expected = [[0.08283, 0.14073, 0.19862, 0.25652], [0.13518, 0.19308, 0.25097, 0.30887],
                [0.18848, 0.24637, 0.30427, 0.36216], [0.24091, 0.29881, 0.35670, 0.41460],
                [0.29081, 0.34871, 0.40660, 0.46450]]
    assert close(T.scaled_dot_product_two_loop_single(q, k, v), expected, 1e-4)
    qb, kb, vb = (linspace(-0.4, 0.6, 2, 5, 4), linspace(-0.8, 0.5, 2, 5, 4),
                  linspace(-0.3, 0.8, 2, 5, 4))
    first = [[-0.09603, -0.06782, -0.03962, -0.01141], [-0.08991, -0.06170, -0.03350, -0.00529],
             [-0.08376, -0.05556, -0.02735, 0.00085], [-0.07760, -0.04939, -0.02119, 0.00702],
             [-0.07143, -0.04322, -0.01502, 0.01319]]
    assert close(T.scaled_dot_product_two_loop_batch(qb, kb, vb)[0], first, 1e-3)
    assert close(T.scaled_dot_product_no_loop_batch(qb, kb, vb)[0][0], first, 1e-3)
    # The source's masked check used a "no peeking ahead" mask: that is causal=True here.
    qm, km, vm = (linspace(-0.4, 0.6, 4, 3, 3), linspace(-0.1, 0.2, 4, 3, 3),
                  linspace(0.4, 0.8, 4, 3, 3))
    assert close(T.scaled_dot_product_attention(qm, km, vm, causal=True)[0],
                 [[0.40000, 0.41143, 0.42286], [0.41703, 0.42846, 0.43989],
                  [0.43408, 0.44551, 0.45694]], 1e-4)


def test_source_layer_norm_and_feed_forward_values():
    ln = T.LayerNorm(4, eps=1e-10)
    assert close(ln(linspace(-0.4, 0.6, 2, 4)), [[-1.34164, -0.44721, 0.44721, 1.34164]] * 2)
    ffn = T.FeedForward(4, 8)
    with torch.no_grad():
        for p in ffn.parameters():
            p.copy_(torch.linspace(-1.4, 1.3, p.numel()).reshape(p.shape))
    assert close(ffn(linspace(-0.4, 0.6, 2, 4)),
                 [[-2.46161, -0.71662, 1.02838, 2.77337], [-7.56084, -1.69557, 4.16970, 10.03497]])


def test_sinusoid_uses_the_standard_formula_not_the_source_quirk():
    pe = T.sinusoidal_positions(5, 3)
    assert pe.shape == (5, 3) and pe.dtype == torch.float32
    assert math.isclose(pe[1, 2].item(), math.sin(1 / 10000 ** (2 / 3)), rel_tol=1e-6)
    assert math.isclose(pe[2, 1].item(), math.cos(2.0), rel_tol=1e-6)
    assert not math.isclose(pe[1, 2].item(), 0.84147, rel_tol=1e-3)  # the source's bug


def test_multihead_attention_matches_torch_on_the_source_case():
    torch.manual_seed(350)
    ref = nn.MultiheadAttention(128, 4, batch_first=True)
    for p in ref.parameters():
        nn.init.normal_(p, 0, 0.05)
    mha = T.MultiheadAttention(128, 4)
    with torch.no_grad():
        for i, name in enumerate("qkv"):
            getattr(mha, f"{name}_proj").weight.copy_(ref.in_proj_weight[i * 128:(i + 1) * 128])
            getattr(mha, f"{name}_proj").bias.copy_(ref.in_proj_bias[i * 128:(i + 1) * 128])
        mha.o_proj.load_state_dict(ref.out_proj.state_dict())
    torch.manual_seed(600)
    q, k, v = torch.randn(4, 6, 128), torch.randn(4, 6, 128), torch.randn(4, 6, 128)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0],
                         [0, 0, 0, 0, 0, 1]]).bool()
    future = torch.ones(6, 6, dtype=torch.bool).triu(1)
    with torch.no_grad():
        expected = ref(q, k, v, key_padding_mask=mask, attn_mask=future)[0]
        # The whole batch, padded query rows included (the source only checked batch 0).
        assert torch.allclose(mha(q, k, v, mask, causal=True), expected, rtol=1e-3, atol=1e-5)


def test_decoder_is_causal_and_starts_from_eos():
    torch.manual_seed(0)
    model = T.Transformer(17, 16, 15, 16, 1, 16, 2, 32, 0.0).eval()
    labels = torch.tensor([[10, 1, 2, 3, 15], [11, 0, 4, -100, -100]])
    assert model.shift_right(labels).tolist() == [[15, 10, 1, 2, 3], [15, 11, 0, 4, 16]]
    ids = torch.randint(0, 15, (2, 9))
    changed = labels.clone()
    changed[:, 3:] = 7
    with torch.no_grad():
        a, _ = model(ids, labels)
        b, _ = model(ids, changed)
    assert torch.equal(a[:, :4], b[:, :4]) and not torch.equal(a, b)


def test_arithmetic_data_is_deterministic_and_round_trips():
    train, held_out = arith.split_problems()
    assert len(train) + len(held_out) == 101 * 101 * 2 and len(held_out) == 2040
    assert arith.split_problems() == (train, held_out)
    assert not set(train) & set(held_out)
    a, op, b = held_out[0]
    tokens = arith.expression_text(a, op, b).split()
    words = [t for word in tokens for t in ([word] if not word.isdigit() else list(word))]
    assert arith.parse_expression(words) == (a, op, b)
    assert arith.answer_text(50, "add", 50) == "BOS POSITIVE 100 EOS"
    assert arith.answer_text(-3, "subtract", 4) == "BOS NEGATIVE 007 EOS"


def test_masks_of_any_integer_dtype_are_accepted():
    q = torch.randn(2, 3, 4)
    mask = torch.tensor([[0, 0, 1], [0, 1, 1]])
    out = [T.scaled_dot_product_attention(q, q, q, mask.to(dt)) for dt in
           (torch.bool, torch.uint8, torch.int32, torch.int64)]
    assert all(torch.equal(out[0], o) for o in out[1:])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_softmax_runs_in_float32_under_low_precision(dtype):
    q = torch.randn(2, 4, 8) * 30
    out = T.scaled_dot_product_attention(q.to(dtype), q.to(dtype), q.to(dtype), causal=True)
    assert out.dtype == dtype and torch.isfinite(out).all()


# ---------------------------------------------------------------------------------------
# The suite's contracts (issue 8): float64 cases, rows that catch real mistakes, the
# training case's new shape (weights in, reference evaluation out)
# ---------------------------------------------------------------------------------------

from grader import authoring  # noqa: E402
from grader.cases import judge  # noqa: E402
from grader.suites import transformer as S  # noqa: E402


def public_case(name):
    return torch.load(authoring.paths.fixture_file("transformer", "public"),
                      weights_only=True)["cases"][name]


def test_softmax_keeps_float64_and_upcasts_half_precision():
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 4, 8, dtype=torch.float64) for _ in range(3))
    exact = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(8), dim=-1) @ v
    out = T.scaled_dot_product_attention(q, k, v)
    assert out.dtype == torch.float64
    assert (out - exact).abs().max() < 1e-13  # no float32 step in between
    half = T.scaled_dot_product_attention(q.half(), k.half(), v.half())
    assert half.dtype == torch.float16 and (half.double() - exact).abs().max() < 1e-2


def test_numeric_cases_run_in_float64():
    """Float outputs are float64, except where float32 is the contract."""
    float32_ok = {("positions/sinusoidal", None), ("attention/vectorized", "float32"),
                  ("summarize/masked_loss", "float32")}
    for case in S.suite.select(training=False):
        expected = public_case(case.name)["expected"]
        items = expected.items() if isinstance(expected, dict) else [(None, expected)]
        for key, value in items:
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                allowed = (case.name, None) in float32_ok or (case.name, key) in float32_ok
                assert value.dtype == torch.float64 or allowed, (case.name, key, value.dtype)


def test_public_layernorm_case_has_a_row_below_eps_that_names_eps_outside_sqrt():
    entry = public_case("layernorm/vs_torch")
    var = entry["inputs"]["low_variance"].var(dim=-1, unbiased=False)
    assert (var < 1e-5).all()
    assert "eps_outside_sqrt" in entry["mutants"]


def test_layer_cases_draw_layer_norm_weights_near_one():
    for name in ("layer/encoder_vs_torch", "layer/decoder_vs_torch"):
        inputs = public_case(name)["inputs"]
        states = [inputs["state"]] if "state" in inputs else [v["state"] for v in inputs.values()]
        for state in states:
            for key, value in state.items():
                if key.startswith("norm") and key.endswith(".weight"):
                    assert (value - 1).abs().max() < 0.5, (name, key)


def test_rows_with_a_batch_of_one_and_other_head_counts_exist():
    assert public_case("attention/key_padding_mask")["inputs"]["one"][0].shape[0] == 1
    sizes = public_case("mha/other_sizes")["inputs"]
    assert sizes["three_heads_batch_of_one"]["n_heads"] == 3
    assert sizes["three_heads_batch_of_one"]["q"].shape[0] == 1
    assert sizes["eight_heads"]["n_heads"] == 8
    assert "squeeze_breaks_batch_of_one" in public_case("attention/key_padding_mask")["mutants"]
    assert "heads_hardcoded_4" in public_case("mha/other_sizes")["mutants"]


def test_model_forward_grades_only_positions_the_contract_fixes(tmp_path):
    """A decoder without a self-attention padding mask is correct (PAD only follows the
    answer), yet its logits differ where the label is -100: those are not compared."""
    entry = public_case("model/forward")
    x = entry["inputs"]
    folder = tmp_path / "eq"
    authoring.write_equivalent("transformer", "decoder_without_padding_mask", folder)
    other = load_assignment("transformer", folder)
    raw = []
    for module in (T, other):
        model = S.build_model(module, x, torch.device("cpu"))
        with torch.no_grad():
            raw.append(model(x["ids"], x["labels"])[0])
    ignored = x["labels"].eq(-100)
    assert not torch.allclose(raw[0][ignored], raw[1][ignored])
    assert torch.allclose(raw[0][~ignored], raw[1][~ignored], rtol=0, atol=1e-12)
    outputs = authoring.run_case(S.suite["model/forward"], other, x)
    assert judge(S.suite["model/forward"], outputs, entry["expected"]).passed


def test_greedy_case_has_rows_that_end_early():
    entry = public_case("model/greedy_decode")
    ending = entry["expected"]["ends_at_once"]
    assert ending[:, 0].eq(S.EOS).all() and ending[:, 1:].eq(S.PAD).all()
    assert "no_pad_after_eos" in entry["mutants"]


def test_arithmetic_case_keeps_held_out_problems_from_the_child():
    case = S.suite["train/arithmetic"]
    x = authoring.case_inputs(case, case.seed(0))
    assert set(x) == {"train_ids", "train_labels"}
    held = S.arithmetic_held_out(x)
    train_rows = {tuple(r) for r in x["train_ids"].tolist()}
    held_rows = {tuple(r) for r in held["data"]["ids"].tolist()}
    assert len(train_rows) + len(held_rows) == len(arith.all_problems())
    assert not train_rows & held_rows
    assert held["labels"].shape == (len(held_rows), S.ANSWER_LENGTH)


def test_arithmetic_case_returns_weights_and_the_reference_evaluates_them(monkeypatch):
    """The contract end to end, in-process and shortened to a few steps: call -> state_dict
    -> evaluate with the reference module -> judge; progress is reported every step."""
    from grader import sandbox
    case = S.suite["train/arithmetic"]
    monkeypatch.setitem(S.CPU_PROFILE, "steps", 3)
    reports = []
    monkeypatch.setattr(sandbox, "report_progress",
                        lambda step, total, loss=None: reports.append((step, total)),
                        raising=False)
    x = authoring.case_inputs(case, case.seed(0))
    weights = authoring.run_case(case, T, x)
    assert isinstance(weights, dict) and "lm_head.weight" in weights
    assert all(type(v) is torch.Tensor and v.device.type == "cpu" for v in weights.values())
    assert reports[-1] == (3, 3) and len(reports) == 3
    held = S.arithmetic_held_out({k: v[:50] for k, v in x.items()})  # fewer rows: quicker
    held = {"data": {"ids": held["data"]["ids"][:64]}, "labels": held["labels"][:64]}
    predictions = case.evaluate(T, weights, held["data"], torch.device("cpu"))
    assert predictions.shape == held["labels"].shape and predictions.dtype == torch.long
    verdict = judge(case, predictions, held["labels"])
    assert verdict.measure == "accuracy" and not verdict.passed  # 3 steps teach nothing


def test_arithmetic_evaluate_names_mismatched_weights_in_one_line():
    case = S.suite["train/arithmetic"]
    model = T.Transformer(len(S.SOURCE_VOCAB), S.PAD, S.EOS, **S.CPU_PROFILE["model"])
    weights = dict(model.state_dict())
    weights["extra.weight"] = weights.pop("emb_ln.weight")
    ids = torch.zeros(2, 9, dtype=torch.uint8)
    with pytest.raises(ValueError) as info:
        case.evaluate(T, weights, {"ids": ids}, torch.device("cpu"))
    message = str(info.value)
    assert "\n" not in message and "emb_ln.weight" in message and "extra.weight" in message


# ---------------------------------------------------------------------------------------
# Part two: summarization
# ---------------------------------------------------------------------------------------

from dlkit import summarize  # noqa: E402


def test_collate_pads_labels_with_minus_100_and_shifts_behind_eos():
    batch = T.collate_summaries([[5, 6, 7, 8, 9], [5]], [[3, 4], [3, 4, 5, 6]], 0, 1, 4, 4)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1], [5, 1, 0, 0]]
    assert batch["labels"].tolist() == [[3, 4, 1, -100], [3, 4, 5, 1]]
    assert batch["decoder_input_ids"].tolist() == [[1, 3, 4, 1], [1, 3, 4, 5]]
    model = T.Transformer(10, 0, 1, 8, 1, 8, 2, 16, 0.0)
    assert torch.equal(model.shift_right(batch["labels"]), batch["decoder_input_ids"])
    with pytest.raises(ValueError, match="as many summaries"):
        T.collate_summaries([[5]], [[3], [4]], 0, 1, 4, 4)
    with pytest.raises(ValueError, match="room for EOS"):
        T.collate_summaries([[5]], [[3]], 0, 1, 0, 4)


def test_masked_loss_counts_each_real_token_once():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([[1, -100, -100], [2, 3, 4]])
    per_token = -torch.log_softmax(logits, -1)
    expected = (per_token[0, 0, 1] + per_token[1, 0, 2] + per_token[1, 1, 3]
                + per_token[1, 2, 4]) / 4
    assert torch.allclose(T.masked_token_loss(logits, labels), expected)
    half = T.masked_token_loss(logits.half(), labels)
    assert half.dtype == torch.float32


def test_greedy_summarize_stops_once_every_row_ended():
    entry = public_case("summarize/greedy_stops")
    batch = entry["expected"]["batch"]
    ended = batch.eq(S.EOS)
    assert ended.any(1).all()
    ends = ended.float().argmax(1)
    assert len(set(ends.tolist())) >= 2 and int(ends.max()) == batch.shape[1] - 1
    assert entry["expected"]["ends_at_once"].shape[1] == 1
    assert entry["expected"]["never_ends"].shape[1] == 4
    for name in ("stops_when_first_row_ends", "never_stops_early", "keeps_generating_after_eos"):
        assert name in entry["mutants"]


def test_corpus_does_not_depend_on_what_the_process_imported():
    """scipy appends to numpy.sinc's docstring when imported (scikit-learn imports it): the
    corpus is collected in a fresh interpreter, so it is the same before and after."""
    import scipy.signal  # noqa: F401
    import numpy
    assert "SCIPY_ARRAY_API" in numpy.sinc.__doc__  # the rewrite this test guards against
    in_process = {p["name"]: p["document"] for p in summarize.collect_corpus()}
    corpus = {p["name"]: p["document"] for p in summarize.docstring_corpus()}
    assert "SCIPY_ARRAY_API" in in_process["numpy.sinc"]
    assert "SCIPY_ARRAY_API" not in corpus["numpy.sinc"]


def test_corpus_is_deterministic_sized_and_split_by_summary():
    corpus = summarize.docstring_corpus()
    assert corpus == summarize.docstring_corpus()
    assert 2000 <= len(corpus) <= 3000
    splits = summarize.corpus_splits(corpus)
    assert 0.05 < len(splits["validation"]) / len(corpus) < 0.15
    train_summaries = {p["summary"] for p in splits["train"]}
    assert not train_summaries & {p["summary"] for p in splits["validation"]}
    builtin = {" ".join(f.__doc__.split("\n\n")[0].split()) for f in (str.isalpha, str.upper,
                                                                      dict.get, list.index)}
    assert not builtin & {p["summary"] for p in corpus}  # only what numpy and torch define
    manifest = summarize.corpus_manifest(corpus)
    assert manifest["numpy"] == "2.4.6" and manifest["pairs"] == len(corpus)


def test_tokenizer_builds_identically_with_t5_ids(tmp_path):
    corpus = summarize.docstring_corpus()[:400]
    one = summarize.build_tokenizer(tmp_path / "one", corpus).read_bytes()
    two = summarize.build_tokenizer(tmp_path / "two", corpus).read_bytes()
    assert one == two  # byte for byte, wherever it is built
    assert summarize.build_tokenizer(tmp_path / "one", corpus[:300]).read_bytes() != one
    tok = summarize.load_tokenizer(tmp_path / "one", corpus)  # stale manifest: rebuilt
    assert (tmp_path / "one" / "spm.model").read_bytes() == one
    assert (tok.pad_id(), tok.eos_id(), tok.unk_id(), tok.bos_id()) == (0, 1, 2, -1)
    assert tok.get_piece_size() == summarize.VOCAB_SIZE


def test_rouge_works_offline_and_scores_overlap():
    scores = summarize.rouge(["Return the sum of the array."], ["Return the sum of an array."])
    assert 0.6 < scores["rouge1"] < 1.0 and scores["rougeL"] <= scores["rouge1"]
    assert summarize.rouge(["a b"], ["a b"])["rouge2"] == 1.0
    with pytest.raises(ValueError):
        summarize.rouge(["a"], [])


def test_summarize_case_keeps_validation_pairs_from_the_child():
    case = S.suite["summarize/train"]
    x = authoring.case_inputs(case, case.seed(0))
    assert set(x) == {"documents", "document_lengths", "summaries", "summary_lengths", "seed"}
    held = S.summarize_reference(x)["data"]
    def pairs(d):
        return set(zip(map(tuple, summarize.unflatten(d["documents"], d["document_lengths"])),
                       map(tuple, summarize.unflatten(d["summaries"], d["summary_lengths"]))))
    train, valid = pairs(x), pairs(held)
    assert len(valid) > 200 and not train & valid
    assert int(x["document_lengths"].max()) <= S.SUMMARIZE["max_source_len"] - 1


def test_summarize_case_returns_weights_and_the_reference_evaluates_them(monkeypatch):
    """In-process and shortened: call -> state_dict -> evaluate (reference) -> judge."""
    from grader import sandbox
    case = S.suite["summarize/train"]
    monkeypatch.setitem(S.SUMMARIZE, "steps", 3)
    reports = []
    monkeypatch.setattr(sandbox, "report_progress",
                        lambda step, total, loss=None: reports.append((step, total)),
                        raising=False)
    x = authoring.case_inputs(case, case.seed(0))
    weights = authoring.run_case(case, T, x)
    assert "lm_head.weight" in weights and reports[-1] == (3, 3)
    held = S.summarize_reference(x)["data"]
    loss = case.evaluate(T, weights, held, torch.device("cpu"))
    assert loss.dtype == torch.float64 and loss.dim() == 0
    verdict = judge(case, loss, torch.zeros((), dtype=torch.float64))
    assert verdict.measure == "loss" and not verdict.passed  # 3 steps teach nothing


def write_xsum_standin(root):
    """A tiny XSum in the source's layout (save_to_disk, fields document/summary/id) and a
    t5-style tokenizer folder (spiece.model with pad 0, eos 1, unk 2)."""
    import datasets
    import sentencepiece as spm
    words = "the a cat dog sat ran on under mat log red blue big small fast slow".split()
    g = torch.Generator().manual_seed(0)

    def text(n):
        return " ".join(words[i] for i in torch.randint(len(words), (n,), generator=g).tolist())
    splits = {}
    for split, n in (("train", 40), ("validation", 8), ("test", 8)):
        docs = [text(30) for _ in range(n)]
        splits[split] = datasets.Dataset.from_dict(
            {"document": docs, "summary": [" ".join(d.split()[:5]) for d in docs],
             "id": [f"{split}{i}" for i in range(n)]})
    datasets.DatasetDict(splits).save_to_disk(str(root / "xsum"))
    (root / "t5").mkdir()
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(text(20) for _ in range(200)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / "t5" / "spiece"),
                                   vocab_size=30, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   num_threads=1, minloglevel=2)
    indices = root / "indices.json"
    indices.write_text('{"train": [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, '
                       '32, 34], "validation": [1, 3, 5], "test": [0]}')
    return root / "xsum", root / "t5", indices


def test_xsum_path_runs_on_a_tiny_standin(tmp_path):
    xsum, t5, indices = write_xsum_standin(tmp_path)
    subset = summarize.load_xsum_subset(xsum, summarize.load_subset_indices(indices))
    assert [len(subset[s]) for s in ("train", "validation", "test")] == [18, 3, 1]
    tok = summarize.load_t5_tokenizer(t5)
    assert (tok.pad_token_id, tok.eos_token_id) == (0, 1)
    docs, sums = summarize.tokenize_pairs(tok, subset["train"]["document"],
                                          subset["train"]["summary"], max_source=12, max_target=4)
    assert max(map(len, docs)) == 12 and max(map(len, sums)) == 4 and docs[0][-1] == 1
    result = summarize.train_xsum(
        T, xsum, t5, indices, device="cpu",
        model_config=dict(max_len=summarize.XSUM_MAX_SOURCE, n_layers=1, d_model=16,
                          n_heads=2, d_ffn=32, p_drop=0.1), training=dict(batch_size=4))
    assert result["steps_per_epoch"] == 4 and len(result["losses"]) == 8
    assert len(result["validation_losses"]) == 2
    assert all(math.isfinite(v) for v in result["validation_losses"])


def test_xsum_loaders_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no XSum copy"):
        summarize.load_xsum_subset(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="spiece.model"):
        summarize.load_t5_tokenizer(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": []}')
    with pytest.raises(ValueError, match="train/validation/test"):
        summarize.load_subset_indices(bad)


def test_subset_indices_read_the_sources_blob_format(tmp_path):
    import base64
    import gzip
    import json
    blob = tmp_path / "blob.txt"
    blob.write_bytes(base64.b64encode(gzip.compress(json.dumps([[3, 1], [2], [0]]).encode())))
    assert summarize.load_subset_indices(blob) == {"train": [3, 1], "validation": [2],
                                                   "test": [0]}


def test_dropout_is_graded_at_rate_one_in_training_mode():
    """Rate 1.0 zeroes every sublayer output: the correct layer returns LN(LN(x)) (encoder),
    and dropout after the LayerNorm returns zeros; both names reach the fixture."""
    entry = public_case("layer/dropout")
    enc = entry["inputs"]["encoder"]
    layer = T.TransformerLayer(False, S.D_MODEL, S.N_HEADS, S.D_FFN, 1.0).double().train()
    layer.load_state_dict(S.layer_state(enc["state"], S.D_MODEL, False))
    with torch.no_grad():
        out = layer(enc["x"], enc["mask"])
        assert torch.allclose(out, layer.ffn_ln(layer.self_attn_ln(enc["x"])), atol=1e-12)
    assert "dropout_after_layer_norm" in entry["mutants"]
    assert "greedy_decode_in_training_mode" in public_case("model/greedy_decode")["mutants"]


def test_training_cases_run_on_one_thread_limited_in_cpu_seconds():
    for name, profile in (("train/arithmetic", S.CPU_PROFILE), ("summarize/train", S.SUMMARIZE)):
        case = S.suite[name]
        assert profile["threads"] == 1 and case.cpu_time is not None, name
        assert case.time_limit >= 4 * case.cpu_time, name  # the clock is only a backstop
