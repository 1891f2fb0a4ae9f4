"""The captioning assignment: data loading, scenes, the encoder, numeric gradients, the source
homework's expected values against the reference, and what the suite's fixtures promise."""
import math

import pytest
import torch

import grader.suites.captioning as S
from grader.authoring import oracle_module, oracles
from dlkit import captions as cap
from dlkit.grad import compute_numeric_gradient
from dlkit.utils import load_assignment, rel_error, seed_everything
from grader import paths

F64 = {"dtype": torch.float64}
ORACLES = oracles("captioning")          # expected values computed without the reference
O = oracle_module("captioning")          # the formulas they use


@pytest.fixture(scope="module")
def ref():
    return load_assignment("captioning", paths.SOLUTIONS)


# ---------------------------------------------------------------------------------------
# The coco.pt format and decode_captions
# ---------------------------------------------------------------------------------------

def tiny_coco() -> dict:
    tokens = cap.SPECIAL_TOKENS + ["a", "cat", "on", "mat"]
    t2i = {t: i for i, t in enumerate(tokens)}
    g = torch.Generator().manual_seed(0)
    captions = torch.tensor([[1, 4, 5, 2, 0, 0], [1, 4, 5, 6, 4, 2], [1, 7, 3, 2, 0, 0]])
    def images(n):
        return torch.randint(0, 256, (n, 3, 16, 16), generator=g, dtype=torch.uint8)

    return {"train_images": images(3), "train_captions": captions, "val_images": images(1),
            "val_captions": captions[:1].clone(),
            "vocab": {"idx_to_token": tokens, "token_to_idx": t2i}}


def test_load_coco_captions_reads_the_source_format(tmp_path, capsys):
    original = tiny_coco()
    torch.save(original, tmp_path / "coco.pt")
    loaded = cap.load_coco_captions(tmp_path / "coco.pt")
    assert "train_images" in capsys.readouterr().out
    for key in cap.KEYS[:4]:
        assert torch.equal(loaded[key], original[key]) and loaded[key].dtype == original[key].dtype
    assert loaded["vocab"] == original["vocab"]


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("val_captions"), "missing keys"),
    (lambda d: d.update(train_images=d["train_images"].float()), "uint8"),
    (lambda d: d["vocab"]["token_to_idx"].pop("<END>"), "<END>"),
    (lambda d: d.update(train_captions=d["train_captions"] + 20), "outside the vocabulary"),
    (lambda d: d.update(val_captions=d["train_captions"]), "1 images but 3 captions"),
])
def test_load_coco_captions_names_what_is_wrong(tmp_path, change, message):
    broken = tiny_coco()
    change(broken)
    torch.save(broken, tmp_path / "coco.pt")
    with pytest.raises(ValueError, match=message):
        cap.load_coco_captions(tmp_path / "coco.pt", verbose=False)


def test_missing_coco_file_says_where_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="coco.pt"):
        cap.load_coco_captions(tmp_path / "nothing.pt")


def test_decode_captions():
    idx_to_token = tiny_coco()["vocab"]["idx_to_token"]
    one = torch.tensor([1, 4, 5, 2, 6, 0])
    assert cap.decode_captions(one, idx_to_token) == "<START> a cat <END>"  # stops after <END>
    assert cap.decode_captions(one, idx_to_token, skip_special=True) == "a cat"
    batch = torch.tensor([[4, 0, 5, 2], [7, 3, 6, 6]])
    assert cap.decode_captions(batch, idx_to_token) == ["a cat <END>", "mat <UNK> on on"]


def test_encode_caption_pads_and_unknown_words():
    t2i = cap.SCENE_VOCAB["token_to_idx"]
    ids = cap.encode_caption("a red zebra", t2i)
    assert len(ids) == cap.CAPTION_LENGTH
    assert cap.decode_captions(torch.tensor(ids), cap.SCENE_VOCAB["idx_to_token"]) == \
        "<START> a red <UNK> <END>"


# ---------------------------------------------------------------------------------------
# The procedural scenes
# ---------------------------------------------------------------------------------------

def test_scenes_are_deterministic_and_in_the_coco_format(tmp_path):
    first, second = cap.scene_dataset(40, 10, seed=3), cap.scene_dataset(40, 10, seed=3)
    for key in cap.KEYS[:4]:
        assert torch.equal(first[key], second[key])
    other = cap.scene_dataset(40, 10, seed=4)
    assert not torch.equal(other["train_images"], first["train_images"])
    assert first["train_images"].shape == (40, 3, 32, 32)
    assert first["train_images"].dtype == torch.uint8
    assert first["train_captions"].shape == (40, cap.CAPTION_LENGTH)
    cap.save_captions(first, tmp_path / "scenes.pt")  # the format check passes
    loaded = cap.load_coco_captions(tmp_path / "scenes.pt", verbose=False)
    assert torch.equal(loaded["val_captions"], first["val_captions"])


def test_scene_captions_read_back_from_the_pixels():
    """The grader relies on this to know held-out captions without shipping them."""
    images, captions = cap.make_scenes(600, seed=11)
    idx_to_token = cap.SCENE_VOCAB["idx_to_token"]
    texts = cap.decode_captions(captions, idx_to_token, skip_special=True)
    assert [cap.read_scene(image) for image in images] == texts
    words = {w for t in texts for w in t.split()}
    assert words == set(cap.SCENE_WORDS), "every word of the vocabulary occurs"
    relations = {r for t in texts for r in cap.RELATIONS if f" {r} " in t}
    assert relations == set(cap.RELATIONS)


def test_shapes_have_the_fill_ratios_the_reader_expects():
    for r in cap.BIG_SIZES + cap.SMALL_SIZES:
        fills = {}
        for shape in cap.SHAPES:
            mask = cap.shape_mask(shape, 15, 15, r, 32)
            ys, xs = mask.nonzero(as_tuple=True)
            assert xs.max() - xs.min() == 2 * r and ys.max() - ys.min() == 2 * r
            fills[shape] = mask.sum().item() / (2 * r + 1) ** 2
        assert fills["square"] > 0.92 > fills["circle"] > 0.66 > fills["triangle"]


# ---------------------------------------------------------------------------------------
# The image encoder and the captioning model's shapes
# ---------------------------------------------------------------------------------------

def test_image_encoder_gives_a_4x4_grid():
    encoder = cap.ImageEncoder(out_channels=24)
    assert encoder.out_channels == 24
    images, _ = cap.make_scenes(3, seed=0)
    assert encoder(images).shape == (3, 24, 4, 4)
    assert encoder(images.float() / 255).shape == (3, 24, 4, 4)
    coco_sized = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    assert encoder(coco_sized).shape == (2, 24, 4, 4)
    encoder(images).sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "attn"])
def test_model_parameter_names_match_the_suite_contract(ref, cell):
    model = ref.CaptioningRNN(S.TOKENS, cell_type=cell, **S.SMALL)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == S.model_shapes(cell, **S.SMALL)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "attn"])
def test_model_runs_on_coco_sized_pictures(ref, cell):
    model = ref.CaptioningRNN(tiny_coco()["vocab"]["token_to_idx"], cell_type=cell,
                              ignore_index=0, input_dim=16, wordvec_dim=8, hidden_dim=8)
    images = torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8)
    loss = model(images, tiny_coco()["train_captions"][:2])
    loss.backward()
    out = model.sample(images, max_length=5)
    captions = out[0] if cell == "attn" else out
    assert captions.shape == (2, 5) and captions.dtype == torch.long
    if cell == "attn":
        assert out[1].shape == (2, 5, 4, 4)


# ---------------------------------------------------------------------------------------
# Numeric gradients
# ---------------------------------------------------------------------------------------

def test_compute_numeric_gradient_matches_calculus():
    x = torch.linspace(-1, 2, 6, **F64).view(2, 3)
    before = x.clone()
    upstream = torch.linspace(0.5, 1.5, 6, **F64).view(2, 3)
    grad = compute_numeric_gradient(lambda v: v ** 3, x, upstream)
    assert torch.equal(x, before), "x is left unchanged"
    assert rel_error(grad, 3 * x ** 2 * upstream) < 1e-7
    assert rel_error(compute_numeric_gradient(lambda v: (v ** 2).sum(), x), 2 * x) < 1e-7


def grads_of(forward, args, upstream):
    return [compute_numeric_gradient(lambda v, i=i: forward(*args[:i], v, *args[i + 1:]),
                                     args[i], upstream) for i in range(len(args))]


def test_rnn_step_backward_numeric_check_as_in_the_source(ref):
    seed_everything(0)
    N, D, H = 4, 5, 6
    args = [torch.randn(*s, **F64) for s in [(N, D), (N, H), (D, H), (H, H), (H,)]]
    out, cache = ref.rnn_step_forward(*args)
    dnext_h = torch.randn(*out.shape, **F64)
    analytic = ref.rnn_step_backward(dnext_h, cache)
    numeric = grads_of(lambda *a: ref.rnn_step_forward(*a)[0], args, dnext_h)
    for a, n in zip(analytic, numeric):
        # max-normalised, the source's measure ("~1e-8 or less")
        assert (a - n).abs().max() / (a.abs() + n.abs()).max() < 1e-8


def test_rnn_backward_numeric_and_autograd_checks_as_in_the_source(ref):
    seed_everything(0)
    N, D, T, H = 2, 3, 10, 5
    args = [torch.randn(*s, **F64) for s in [(N, T, D), (N, H), (D, H), (H, H), (H,)]]
    out, cache = ref.rnn_forward(*args)
    dout = torch.randn(*out.shape, **F64)
    analytic = ref.rnn_backward(dout, cache)
    numeric = grads_of(lambda *a: ref.rnn_forward(*a)[0], args, dout)
    for a, n in zip(analytic, numeric):
        assert (a - n).abs().max() / (a.abs() + n.abs()).max() < 1e-6
    leaves = [a.clone().requires_grad_(True) for a in args]
    ref.rnn_forward(*leaves)[0].backward(dout)
    for a, leaf in zip(analytic, leaves):
        assert rel_error(a, leaf.grad) < 1e-10


def test_lstm_autograd_gradients_are_right(ref):
    """The LSTM has no hand-written backward: autograd through it must match numerics."""
    g = torch.Generator().manual_seed(1)
    lstm = ref.LSTM(3, 4).double()
    x, h0 = torch.randn(2, 3, 3, generator=g, **F64), torch.randn(2, 4, generator=g, **F64)
    x.requires_grad_(True)
    upstream = torch.randn(2, 3, 4, generator=g, **F64)
    lstm(x, h0).backward(upstream)
    numeric = compute_numeric_gradient(lambda v: lstm(v, h0).detach(), x, upstream)
    assert rel_error(x.grad, numeric) < 1e-6


# ---------------------------------------------------------------------------------------
# The source homework's expected values
# ---------------------------------------------------------------------------------------

SOURCE_CASES = ["rnn/step_forward", "rnn/forward", "embedding/lookup", "lstm/step_forward",
                "lstm/forward", "attention/dot_product", "attention/lstm_step_forward",
                "attention/lstm_forward"]


@pytest.mark.parametrize("name", SOURCE_CASES)
def test_reference_reproduces_the_source_values(ref, name):
    case = S.suite[name]
    inputs = case.inputs(torch.Generator().manual_seed(0))
    got, expected = case.call(ref, inputs, torch.device("cpu")), ORACLES[name](inputs)
    source_keys = [k for k in expected if k.startswith("source")]
    assert source_keys
    for key in source_keys:
        assert rel_error(got[key], expected[key]) < 2e-7, key
        assert torch.equal(expected[key], S.source(S.SOURCE_KEYS[name][key])), key


def test_source_check_loss_ranges(ref):
    seed_everything(0)

    def check_loss(N, T, V, p):
        x = 0.001 * torch.randn(N, T, V)
        y = torch.randint(V, size=(N, T))
        y[torch.rand(N, T) > p] = 0
        return ref.temporal_softmax_loss(x, y, 0).item()

    assert 2.00 <= check_loss(1000, 1, 10, 1.0) <= 2.11
    assert 20.6 <= check_loss(1000, 10, 10, 1.0) <= 21.0
    assert 2.00 <= check_loss(5000, 10, 10, 0.1) <= 2.11


def test_attention_scale_is_sqrt_h_not_sqrt_grid():
    """The source's expected weights pin the scale: sqrt(H) reproduces them, sqrt(D_a) not."""
    prev_h, A = S.linspace(-0.4, 0.6, 2, 5), S.linspace(-0.4, 1.8, 2, 5, 4, 4)
    _, weights = O.attention(prev_h, A)
    assert rel_error(weights, S.source("attn_weights")) < 1e-6
    scores = torch.einsum("nh,nhk->nk", prev_h, A.reshape(2, 5, 16)) / math.sqrt(4)
    assert rel_error(torch.softmax(scores, 1).view(2, 4, 4), S.source("attn_weights")) > 1e-3


# ---------------------------------------------------------------------------------------
# What the fixtures promise
# ---------------------------------------------------------------------------------------

def fixture_sets():
    public = torch.load(paths.fixture_file("captioning", "public"), weights_only=True)["cases"]
    inputs = torch.load(paths.fixture_file("captioning", "autograder_inputs"),
                        weights_only=True)["cases"]
    expected = torch.load(paths.fixture_file("captioning", "autograder_expected"),
                          weights_only=True)["cases"]
    return {"public": public,
            "autograder": {k: {**expected[k], "inputs": inputs[k]["inputs"]} for k in inputs}}


def test_fixtures_are_small():
    total = sum(p.stat().st_size for p in (paths.FIXTURES / "captioning").glob("*.pt"))
    assert total < 4 << 20


@pytest.mark.parametrize("cell", ["rnn", "lstm", "attn"])
def test_sampling_cases_exercise_stopping_at_end(cell):
    for name, cases in fixture_sets().items():
        captions = cases[f"model/sample_{cell}"]["expected"]["captions"]
        assert captions[:, :-1].eq(S.END).any(), (name, "no caption stops early")
        assert len(set(map(tuple, captions.tolist()))) > 1, (name, "all captions alike")
        assert not captions.eq(S.START).any()


def test_sampling_reference_agrees_with_the_solution(ref):
    for cell in ("rnn", "lstm", "attn"):
        case = S.suite[f"model/sample_{cell}"]
        inputs = case.inputs(torch.Generator().manual_seed(5))
        got, expected = case.call(ref, inputs, torch.device("cpu")), ORACLES[case.name](inputs)
        assert torch.equal(got["captions"], expected["captions"])
        if cell == "attn":
            assert rel_error(got["attn_weights"], expected["attn_weights"]) < 1e-10


def test_held_out_scenes_never_reach_the_student():
    """The child gets the training seed only; the held-out scenes and their captions stay
    in the expected values (the reference evaluates the returned weights on them)."""
    for name, cases in fixture_sets().items():
        case = cases["train/heldout_attn"]
        assert set(case["inputs"]) == {"train_seed"}, name
        held_out = case["expected"]
        images, answers = held_out["data"]["images"], held_out["labels"]
        assert answers.shape == (S.HELD_OUT["test_scenes"], cap.CAPTION_LENGTH - 1)
        assert answers[:, 0].eq(cap.SCENE_VOCAB["token_to_idx"]["a"]).all()
        train_images, _ = cap.make_scenes(50, int(case["inputs"]["train_seed"]))
        assert not (images[:, None] == train_images[None]).flatten(2).all(2).any(), \
            "no held-out scene is a training scene"
        texts = cap.decode_captions(answers, cap.SCENE_VOCAB["idx_to_token"], skip_special=True)
        assert [cap.read_scene(image) for image in images[:40]] == texts[:40]


def test_overfit_cases_send_only_a_seed():
    for name, cases in fixture_sets().items():
        for cell in ("rnn", "lstm", "attn"):
            case = cases[f"train/overfit_{cell}"]
            assert set(case["inputs"]) == {"seed"}
            assert torch.equal(case["expected"]["data"]["seed"], case["inputs"]["seed"])


# ---------------------------------------------------------------------------------------
# Contracts made explicit (issue 8): ignore_index, dtypes, batches of one, long samples
# ---------------------------------------------------------------------------------------

def test_loss_ignore_index_none_counts_every_position(ref):
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(4, 5, 6, generator=g, **F64), torch.randint(0, 6, (4, 5), generator=g)
    y[0, :2] = 0
    every = torch.nn.functional.cross_entropy(x.reshape(-1, 6), y.reshape(-1),
                                              reduction="sum") / 4
    assert torch.allclose(ref.temporal_softmax_loss(x, y), every)
    assert torch.allclose(ref.temporal_softmax_loss(x, y, None), every)
    assert ref.temporal_softmax_loss(x, y, 0) < every  # ignoring <NULL> drops two terms
    assert "None means that nothing is ignored" in ref.temporal_softmax_loss.__doc__


def test_model_forward_cases_use_other_ignore_indices_and_a_batch_of_one(ref):
    case = S.suite["model/forward_rnn"]
    inputs = case.inputs(torch.Generator().manual_seed(4))
    out = case.call(ref, inputs, torch.device("cpu"))
    assert set(out) == {"linspace", "random", "single", "ignore_word", "ignore_none",
                        "gradients"}
    assert set(out["gradients"]) == set(S.model_shapes("rnn", **S.SMALL))  # every parameter
    assert all(g.abs().sum() > 0 for g in out["gradients"].values())  # the encoder's too
    assert inputs["captions"].eq(S.OTHER_IGNORE).any() and inputs["captions"].eq(S.NULL).any()
    assert len({round(out[k].item(), 9) for k in ("random", "ignore_word", "ignore_none")}) == 3


@pytest.mark.parametrize("cell", ["rnn", "lstm", "attn"])
def test_sampled_captions_run_long_enough_for_the_cell_state_to_matter(cell):
    for name, cases in fixture_sets().items():
        case = cases[f"model/sample_{cell}"]
        captions = case["expected"]["captions"]
        assert (S.caption_lengths(captions) >= S.SAMPLE_LONG).sum() >= 3, name
        assert torch.equal(case["expected"]["single_captions"], captions[:1]), name
        if cell != "rnn":
            inputs = case["inputs"]
            restarted = O.reference_sample(cell, S.sample_state(cell, int(inputs["seed"])),
                                           inputs["images"], S.SAMPLE_LENGTH, carry_cell=False)
            assert not torch.equal(restarted["captions"], captions), name


def test_sample_attn_weights_in_another_dtype_get_a_clear_message(tmp_path):
    source = (paths.SOLUTIONS / "captioning.py").read_text()
    old = "A.new_zeros(N, max_length, *A.shape[2:])"
    assert source.count(old) == 1
    (tmp_path / "captioning.py").write_text(
        source.replace(old, "torch.zeros(N, max_length, *A.shape[2:])"))
    float32_weights = load_assignment("captioning", tmp_path)
    case = S.suite["model/sample_attn"]
    inputs = case.inputs(torch.Generator().manual_seed(0))
    with pytest.raises(TypeError, match=r"attn_weights are torch.float32; they must have the "
                                        r"model's dtype \(torch.float64 here\)"):
        case.call(float32_weights, inputs, torch.device("cpu"))
    assert "dtype of the model's parameters" in load_assignment(
        "captioning", paths.SOLUTIONS).CaptioningRNN.sample.__doc__


# ---------------------------------------------------------------------------------------
# Training cases: weights come back, the reference evaluates them
# ---------------------------------------------------------------------------------------

def test_training_weights_that_do_not_fit_get_one_line(ref):
    model = S.new_captioner(ref, "lstm")
    weights = S.trained_state(model)
    weights["rnn.W_x"] = weights.pop("rnn.Wx")
    with pytest.raises(ValueError, match=r"missing \['rnn.Wx'\], unexpected \['rnn.W_x'\]"):
        S.load_trained(ref, "lstm", weights, torch.device("cpu"))
    weights = S.trained_state(S.new_captioner(ref, "rnn"))  # an RNN's weights, 1H not 4H
    with pytest.raises(ValueError, match="rnn.Wx has shape"):
        S.load_trained(ref, "lstm", weights, torch.device("cpu"))
    loaded = S.load_trained(ref, "lstm", S.trained_state(model), torch.device("cpu"))
    assert not loaded.training


def test_overfit_rnn_in_process_weights_then_reference_evaluation(ref, monkeypatch):
    """call (student side) -> state_dict -> evaluate (reference) -> judge, as the sandboxed
    grader does it, shortened to 4 epochs; an untrained model's weights fail the same judge.
    (The full run is the sandboxed one, shared: see the next test.)"""
    from grader.cases import judge
    monkeypatch.setitem(S.OVERFIT, "rnn", {**S.OVERFIT["rnn"], "epochs": 4})
    case = S.suite["train/overfit_rnn"]
    inputs = case.inputs(torch.Generator().manual_seed(case.seed(0)))
    data = case.reference(inputs)["data"]
    seed_everything(case.seed(0))
    weights = case.call(ref, inputs, torch.device("cpu"))
    assert all(type(v) is torch.Tensor and v.device.type == "cpu" for v in weights.values())
    loss = case.evaluate(ref, weights, data, torch.device("cpu"))
    assert loss.dtype == torch.float64 and loss.dim() == 0
    expected = torch.zeros((), dtype=torch.float64)
    untrained = case.evaluate(ref, S.trained_state(S.new_captioner(ref, "rnn")), data,
                              torch.device("cpu"))
    assert not judge(case, untrained, expected).passed
    assert judge(case, loss, expected).measure == "loss" and loss < untrained


def test_overfit_rnn_lands_far_below_its_target(trained):
    """The full training case, through the sandbox (the run the training-threshold test makes)."""
    verdict = trained("captioning", "train/overfit_rnn")
    assert verdict.passed and verdict.measure == "loss", verdict.message
    assert verdict.error < S.suite["train/overfit_rnn"].max_loss / 5
