"""`simclr`: the hand-written transforms, the loss against its formula, the model's source
layout, the training case's contract (weights in, reference-side evaluation), and the gpu
profile's code path on tiny stand-in data."""
import colorsys
import math

import pytest
import torch

from dlkit import simclr_data as T
from dlkit.utils import load_assignment
from grader import paths
from grader.authoring import SETS, case_inputs, oracle_module
from grader.cases import judge
from grader.suites import simclr as suite_module

ref = load_assignment("simclr", paths.SOLUTIONS)
F64 = torch.float64
TRAINING = suite_module.suite["train/ssl_beats_random"]
O = oracle_module("simclr")  # the loss's formula, instructor side only


# ---------------------------------------------------------------------------------------
# dlkit/simclr_data.py
# ---------------------------------------------------------------------------------------

def test_hue_shift_matches_colorsys():
    x = torch.rand(3, 5, 7, dtype=F64, generator=torch.Generator().manual_seed(0))
    shifted = T.adjust_hue(x, 0.23)
    for i in range(5):
        for j in range(7):
            h, s, v = colorsys.rgb_to_hsv(*x[:, i, j].tolist())
            want = colorsys.hsv_to_rgb((h + 0.23) % 1.0, s, v)
            assert torch.allclose(shifted[:, i, j], torch.tensor(want, dtype=F64), atol=1e-12)


def test_grey_images_keep_their_hue_and_grayscale_weights():
    grey = torch.rand(1, 4, 4).expand(3, 4, 4).clone()
    assert torch.equal(T.adjust_hue(grey, 0.4), grey)
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(T.grayscale(rgb), torch.full((3, 1, 1), 0.299))


def test_jitter_with_zero_strength_is_the_identity_and_draws_five_numbers():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 6, 6)
    state = g.get_state()
    assert torch.equal(T.ColorJitter(generator=g)(x), x)
    # a permutation of 4 and four factors, whatever the strengths
    again = torch.Generator()
    again.set_state(state)
    torch.randperm(4, generator=again)
    for _ in range(4):
        torch.empty(1, dtype=F64).uniform_(0, 1, generator=again)
    assert torch.equal(g.get_state(), again.get_state())


def test_random_resized_crop_boxes_fit_and_full_scale_keeps_the_image():
    g = torch.Generator().manual_seed(0)
    crop = T.RandomResizedCrop(8, scale=(0.08, 1.0), generator=g)
    for _ in range(200):
        top, left, h, w = crop.box(10, 12)
        assert 0 <= top and top + h <= 10 and 0 <= left and left + w <= 12 and h > 0 and w > 0
    x = torch.rand(3, 8, 8)
    whole = T.RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=g)
    assert torch.allclose(whole(x), x, atol=1e-6)


def test_train_transform_is_deterministic_under_a_seed():
    img = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    a = [ref.compute_train_transform(seed=7)(img) for _ in range(2)]
    b = ref.compute_train_transform(seed=8)(img)
    assert torch.equal(a[0], a[1]) and not torch.equal(a[0], b)
    assert a[0].shape == (3, 32, 32) and a[0].dtype == torch.float32


def test_digits_as_rgb():
    images = torch.tensor([[[[0, 16], [8, 4]]]], dtype=torch.uint8)
    rgb = T.digits_rgb(images)
    assert rgb.shape == (1, 3, 2, 2) and rgb.dtype == torch.uint8
    assert rgb[0, :, 0, 1].tolist() == [255, 255, 255] and rgb[0, 0, 1, 0] == 128


# ---------------------------------------------------------------------------------------
# The loss: the source's sanity checks, against the suite's formula
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("tau", [5.0, 1.0, 0.5])
def test_naive_and_vectorized_agree_with_the_formula_to_1e_7(tau):
    g = torch.Generator().manual_seed(int(tau * 10))
    left = torch.randn(6, 10, generator=g, dtype=F64)
    right = torch.randn(6, 10, generator=g, dtype=F64)
    want = O.nt_xent(left, right, tau)
    naive = ref.simclr_loss_naive(left, right, tau)
    vectorized = ref.simclr_loss_vectorized(left, right, tau, device=left.device)
    assert ref.rel_error(naive, want) < 1e-7 and ref.rel_error(vectorized, want) < 1e-7
    assert abs(naive.item() - vectorized.item()) < 1e-12


def test_the_formula_is_the_definition():
    """nt_xent by its definition, term by term, for one small batch."""
    g = torch.Generator().manual_seed(1)
    left, right, tau = torch.randn(3, 4, generator=g, dtype=F64), torch.randn(3, 4, generator=g,
                                                                                dtype=F64), 0.7
    z = torch.cat([left, right])
    cos = lambda a, b: float(a @ b / (a.norm() * b.norm()))  # noqa: E731
    total = 0.0
    for i in range(6):
        j = (i + 3) % 6
        denominator = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(6) if k != i)
        total += -math.log(math.exp(cos(z[i], z[j]) / tau) / denominator)
    assert abs(O.nt_xent(left, right, tau).item() - total / 6) < 1e-12


def test_identical_views_value_and_a_single_pair():
    basis = torch.eye(4, dtype=F64)
    got = ref.simclr_loss_vectorized(basis, 2 * basis, 0.5)
    assert abs(got.item() - O.identical_views_loss(4, 0.5)) < 1e-12
    one = torch.randn(1, 5, dtype=F64)
    assert abs(ref.simclr_loss_vectorized(one, torch.randn(1, 5, dtype=F64), 0.3).item()) < 1e-12


def test_vectorized_loss_follows_the_inputs_device_by_default():
    left, right = torch.randn(4, 3), torch.randn(4, 3)
    assert ref.simclr_loss_vectorized(left, right, 0.5).device == left.device
    assert ref.simclr_loss_vectorized(left, right, 0.5, device="cpu").dtype == torch.float32


def test_knn_scores_sum_of_weights():
    g = torch.Generator().manual_seed(2)
    bank = torch.nn.functional.normalize(torch.randn(50, 4, generator=g, dtype=F64), dim=1)
    labels = torch.randint(0, 3, (50,), generator=g)
    f = bank[:5]
    scores = ref.knn_scores(f, bank, labels, 3, k=10, temperature=0.2)
    top = (f @ bank.T).topk(10, dim=1).values
    assert torch.allclose(scores.sum(1), torch.exp(top / 0.2).sum(1))
    # each bank row is its own nearest neighbour: with k = 1 kNN returns its label
    assert torch.equal(ref.knn_scores(f, bank, labels, 3, k=1).argmax(1), labels[:5])


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------

def test_resnet50_model_has_the_source_layout():
    model = ref.Model(128)
    names = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == 24_615_616
    for key in ("f.0.weight", "f.1.running_mean", "f.3.0.conv1.weight",
                "f.3.0.downsample.0.weight", "f.6.2.bn3.weight", "g.0.weight", "g.1.weight",
                "g.3.bias"):
        assert key in names, key
    assert names["f.0.weight"].shape == (64, 3, 3, 3)
    h, z = model.eval()(torch.randn(2, 3, 32, 32))
    assert h.shape == (2, 2048) and z.shape == (2, 128)
    assert torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-5)


def test_tiny_model_state_matches_the_model():
    state = suite_module.tiny_model_state(torch.Generator().manual_seed(0))
    model = ref.Model(**suite_module.TINY)
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------
# The training case: contract and claim
# ---------------------------------------------------------------------------------------

def test_training_case_gives_the_child_no_labels_and_no_held_out_images():
    x = case_inputs(TRAINING, TRAINING.seed(SETS["public"]))
    assert set(x) == {"train_images"}
    held = TRAINING.reference(x)
    data = held["data"]
    assert len(data["train_images"]) + len(data["test_images"]) == 1797
    assert len(held["labels"]) == suite_module.DIGITS_HELD_OUT
    assert torch.equal(data["train_images"], x["train_images"])
    # the labels belong to their images
    images, labels = suite_module.vision.digits_arrays()
    lookup = {img.numpy().tobytes(): int(y) for img, y in zip(images, labels)}
    assert [lookup[i.numpy().tobytes()] for i in data["train_images"][:50]] == \
        data["train_labels"][:50].tolist()


def test_a_random_encoder_fails_the_threshold():
    """The claim the case makes: an encoder that learned nothing stays below it."""
    x = case_inputs(TRAINING, TRAINING.seed(SETS["public"]))
    held = TRAINING.reference(x)
    p = suite_module.PROFILES["cpu"]
    torch.manual_seed(p["seed"])
    weights = ref.Model(**p["model"]).state_dict()
    verdict = judge(TRAINING, TRAINING.evaluate(ref, weights, held["data"], torch.device("cpu")),
                    held["labels"])
    assert not verdict.passed and verdict.error < p["min_accuracy"] - 0.02, verdict.message


def test_evaluate_names_missing_and_unexpected_weights():
    x = case_inputs(TRAINING, TRAINING.seed(SETS["public"]))
    held = TRAINING.reference(x)
    weights = ref.Model(**suite_module.PROFILES["cpu"]["model"]).state_dict()
    weights["f.extra"] = weights.pop("f.0.weight")
    with pytest.raises(ValueError) as info:
        TRAINING.evaluate(ref, weights, held["data"], torch.device("cpu"))
    message = str(info.value)
    assert "\n" not in message and "f.0.weight" in message and "f.extra" in message


def test_gpu_profile_code_path_on_stand_in_data(monkeypatch, tmp_path):
    """The gpu profile (CIFAR-10, the source's pretrained ResNet-50, one epoch, linear
    probe) on a few random 32x32 images standing in for CIFAR-10, on the CPU, with batches
    of 2 instead of 64 and a small encoder standing in for the ResNet-50 (whose layout is
    tested above; one ResNet-50 step takes about 10 s on this CPU)."""
    stand_in_model = dict(feature_dim=128, encoder="small", width=8, hidden=32)
    g = torch.Generator().manual_seed(0)
    fake = suite_module.vision.ImageData(
        torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (8,), generator=g),
        torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8),
        torch.randint(0, 10, (4,), generator=g),
        suite_module.vision.CIFAR10_MEAN, suite_module.vision.CIFAR10_STD,
        suite_module.vision.CIFAR10_CLASSES)
    pretrained = tmp_path / "pretrained_simclr_model.pth"
    marked = ref.Model(**stand_in_model).state_dict()
    marked["f.0.weight"].fill_(0.5)  # recognisable after two Adam steps of at most 1e-3
    torch.save(marked, pretrained)
    monkeypatch.setattr(suite_module, "PRETRAINED", pretrained)
    monkeypatch.setattr(suite_module.vision, "load_cifar10", lambda root=None: fake)
    monkeypatch.setattr(suite_module.vision, "cifar10_available", lambda root=None: True)
    monkeypatch.setattr(suite_module, "profile_name", lambda device: "gpu")
    monkeypatch.setitem(suite_module.PROFILES, "gpu",
                        dict(suite_module.PROFILES["gpu"], batch_size=2, probe_fraction=0.5,
                             model=stand_in_model))
    cpu = torch.device("cpu")
    weights = TRAINING.call(ref, {}, cpu)  # one epoch: 4 images (50%), two batches of 2
    assert set(weights) == set(ref.Model(**stand_in_model).state_dict())
    assert (weights["f.0.weight"] - 0.5).abs().max() < 3e-3  # started from the pretrained ones
    predictions = TRAINING.evaluate(ref, weights, {}, cpu)
    assert predictions.shape == (4,) and predictions.dtype == torch.int64
    assert torch.equal(suite_module.cifar10_test_labels(), fake.test_labels)
    assert TRAINING.gpu_min_accuracy == 0.70


def test_gpu_profile_keeps_the_source_settings():
    p = suite_module.PROFILES["gpu"]
    assert (p["epochs"], p["batch_size"], p["temperature"], p["lr"], p["weight_decay"],
            p["train_fraction"], p["probe_fraction"]) == (1, 64, 0.5, 1e-3, 1e-6, 0.5, 0.1)
    assert p["model"] == dict(feature_dim=128) and TRAINING.gpu_min_accuracy == 0.70
