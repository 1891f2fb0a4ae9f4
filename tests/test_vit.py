"""vit: data loaders on tiny files written here, augmentation, the source homework's
RNG-independent facts, and properties of the reference that the graded cases rely on."""
import gzip
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from dlkit import vision
from dlkit.utils import load_assignment
from grader import paths
from grader.suites import vit as suite

ref = load_assignment("vit", paths.SOLUTIONS)


# ---------------------------------------------------------------------------------------
# CIFAR-10 (python pickles)
# ---------------------------------------------------------------------------------------

def cifar_batch(n: int, offset: int) -> bytes:
    """A batch in the archive's format: bytes keys, (N, 3072) uint8 rows, list labels."""
    data = ((np.arange(n * 3072) + offset) % 251).astype(np.uint8).reshape(n, 3072)
    labels = [(offset + i) % 10 for i in range(n)]
    return pickle.dumps({b"batch_label": b"testing", b"labels": labels, b"data": data,
                         b"filenames": [b"x.png"] * n}, protocol=2)


def write_cifar(folder, sizes=(2, 3, 1, 2, 2), test=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(sizes, start=1):
        (folder / f"data_batch_{i}").write_bytes(cifar_batch(n, 7 * i))
    (folder / "test_batch").write_bytes(cifar_batch(test, 100))
    return folder


def test_cifar10_from_folder(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    data = vision.load_cifar10(tmp_path)
    assert data.train_images.shape == (10, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (3, 3, 32, 32)
    assert data.train_labels.dtype == torch.int64 and data.train_labels.tolist()[:2] == [7, 8]
    # Row layout: 1024 red values, then green, then blue, each row-major.
    row = ((np.arange(3072) + 100) % 251).astype(np.uint8)
    assert torch.equal(data.test_images[0, 1, 2, 5], torch.tensor(row[1024 + 2 * 32 + 5]))
    assert data.mean == vision.CIFAR10_MEAN and len(data.classes) == 10
    assert vision.cifar10_available(tmp_path) and not vision.cifar10_available(tmp_path / "no")


def test_cifar10_from_archive(tmp_path):
    folder = write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    from_archive = vision.load_cifar10(tmp_path / "data")
    from_folder = vision.load_cifar10(folder)
    assert torch.equal(from_archive.train_images, from_folder.train_images)
    assert torch.equal(from_archive.test_labels, from_folder.test_labels)


def one_line_error(call) -> str:
    with pytest.raises(vision.DatasetError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message
    return message


def test_cifar10_missing_or_damaged(tmp_path):
    assert "CIFAR-10 not found" in one_line_error(lambda: vision.load_cifar10(tmp_path))
    folder = write_cifar(tmp_path / "bad")
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    assert "data_batch_3" in one_line_error(lambda: vision.load_cifar10(folder))
    (folder / "data_batch_3").unlink()
    assert "missing data_batch_3" in one_line_error(lambda: vision.load_cifar10(folder))
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b garbage")
    assert "damaged archive" in one_line_error(
        lambda: vision.load_cifar10(tmp_path / "broken.tar.gz"))


def test_cifar10_pickles_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "owned"),))
    folder = write_cifar(tmp_path / "evil")
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    assert "refusing" in one_line_error(lambda: vision.load_cifar10(folder))
    assert not (tmp_path / "owned").exists()


def test_cifar10_wrong_shapes(tmp_path):
    folder = write_cifar(tmp_path / "shapes")
    (folder / "test_batch").write_bytes(pickle.dumps(
        {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    assert "not CIFAR-10's" in one_line_error(lambda: vision.load_cifar10(folder))


# ---------------------------------------------------------------------------------------
# Fashion-MNIST (IDX)
# ---------------------------------------------------------------------------------------

def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(folder, gz: bool, n_train=5, n_test=3):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) + 4) % 10}
    for name, array in arrays.items():
        raw = idx_bytes(array)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz)
    data = vision.load_fashion_mnist(tmp_path)
    assert data.train_images.shape == (5, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (3, 1, 28, 28)
    assert np.array_equal(data.train_images[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert data.test_labels.tolist() == [4, 5, 6]
    assert vision.fashion_mnist_available(tmp_path)


def test_fashion_mnist_errors(tmp_path):
    assert "does not exist" in one_line_error(lambda: vision.load_fashion_mnist(tmp_path / "x"))
    write_fashion(tmp_path, gz=False)
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    assert "truncated" in one_line_error(lambda: vision.load_fashion_mnist(tmp_path))
    path.write_bytes(b"\x01\x02\x03")
    assert "not an IDX file" in one_line_error(lambda: vision.load_fashion_mnist(tmp_path))
    path.unlink()
    assert "not found" in one_line_error(lambda: vision.load_fashion_mnist(tmp_path))
    assert not vision.fashion_mnist_available(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08 truncated gzip")
    assert "cannot read" in one_line_error(lambda: vision.load_fashion_mnist(tmp_path))


@pytest.mark.skipif(not vision.fashion_mnist_available(),
                    reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist():
    data = vision.load_fashion_mnist()
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10


# ---------------------------------------------------------------------------------------
# Digits and augmentation
# ---------------------------------------------------------------------------------------

def test_digits_split():
    data = vision.load_digits_split(held_out=497, seed=3)
    assert data.train_images.shape == (1300, 1, 8, 8) and data.test_images.shape == (497, 1, 8, 8)
    assert data.train_images.dtype == torch.uint8 and int(data.train_images.max()) == 16
    again = vision.load_digits_split(held_out=497, seed=3)
    assert torch.equal(data.test_labels, again.test_labels)
    # Train and test are disjoint and together make up the whole set.
    together = torch.cat([data.train_images, data.test_images]).flatten(1)
    assert len(torch.unique(together, dim=0)) == 1797
    x = vision.prepare(data.train_images, data)
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05


def test_augmentation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    assert torch.equal(vision.random_crop(x, 0, g), x)
    crops = vision.random_crop(x, 2, g)
    assert crops.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):  # every crop is some window of the padded image
        windows = [padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(crops[i], w) for w in windows)
    assert torch.equal(vision.random_horizontal_flip(x, p=1.0), x.flip(-1))
    assert torch.equal(vision.random_horizontal_flip(x, p=0.0), x)
    mean, std = (0.1, 0.2, 0.3), (0.5, 0.6, 0.7)
    assert torch.allclose(vision.denormalize(vision.normalize(x, mean, std), mean, std), x,
                          atol=1e-6)
    a = vision.prepare((x * 255).byte(), (mean, std, 255.0), crop_padding=1, flip=True,
                       generator=torch.Generator().manual_seed(1))
    b = vision.prepare((x * 255).byte(), (mean, std, 255.0), crop_padding=1, flip=True,
                       generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)  # seeded augmentation is reproducible


# ---------------------------------------------------------------------------------------
# The source homework's facts that do not depend on a random stream
# ---------------------------------------------------------------------------------------

def test_index_sequence_source_examples():
    x = torch.tensor([[0.0, 0.1, 0.2], [1.0, 1.1, 1.2]])
    ids = torch.tensor([[0, 2], [0, 1]])
    assert torch.equal(ref.index_sequence(x, ids), torch.tensor([[0.0, 0.2], [1.0, 1.1]]))
    x3 = torch.tensor([[[0.01, 0.02], [0.11, 0.12], [0.21, 0.22]],
                       [[1.01, 1.02], [1.11, 1.12], [1.21, 1.22]]])
    assert torch.equal(ref.index_sequence(x3, ids), torch.tensor(
        [[[0.01, 0.02], [0.21, 0.22]], [[1.01, 1.02], [1.11, 1.12]]]))


def test_source_shapes_and_sizes():
    images = torch.randn(10, 3, 32, 32)
    patches = ref.patchify(images)
    assert patches.shape == (10, 64, 48)
    assert torch.equal(ref.unpatchify(patches), images)
    vit = ref.ClassificationViT(10)
    assert sum(p.numel() for p in vit.parameters()) == 3_191_562  # "about 3.19M"
    assert vit.position_encoding.shape == (1, 65, 256)
    mae = ref.MaskedAutoEncoder(ref.Transformer(256, n_layers=4), ref.Transformer(128, n_layers=2))
    assert sum(p.numel() for p in mae.parameters()) == 3_895_344  # "about 3.90M"
    assert (mae.masked_length, mae.keep_length) == (48, 16)
    with torch.no_grad():
        encoded, mask, ids_restore = mae.forward_encoder(images[:2])
        assert encoded.shape == (2, 17, 256)
        assert mask.shape == ids_restore.shape == (2, 64)
        assert mask.sum(1).tolist() == [48.0, 48.0]
        assert mae.forward_decoder(encoded, ids_restore).shape == (2, 64, 48)
        assert mae.forward_encoder_representation(images[:2]).shape == (2, 65, 256)
        assert ref.ClassificationMAE(10, mae)(images[:2]).shape == (2, 10)


# ---------------------------------------------------------------------------------------
# The reference's properties the cases rely on
# ---------------------------------------------------------------------------------------

def test_patch_embed_is_a_linear_map_of_patches():
    embed = ref.PatchEmbed(16, 4, 3, 8)
    x = torch.randn(2, 3, 16, 16)
    linear = ref.patchify(x, 4) @ embed.proj.weight.reshape(8, -1).T + embed.proj.bias
    assert torch.allclose(embed(x), linear, atol=1e-5)
    assert torch.equal(suite.patches_of(x, 4), ref.patchify(x, 4))


def test_attention_path_matches_plain_path():
    model = ref.ClassificationViT(10, 32, 4, 4, n_heads=4, n_layers=2, feedforward_dim=64)
    x = torch.randn(3, 3, 16, 16)
    for mode in (model.train, model.eval):
        mode()
        with torch.no_grad():
            logits = model(x)
            again, attention = model(x, return_attention=True)
        assert torch.allclose(logits, again, atol=1e-5)
    assert attention.shape == (3, 2, 4, 17, 17)
    assert torch.allclose(attention.sum(-1), torch.ones(3, 2, 4, 17), atol=1e-5)
    maps = ref.cls_attention_maps(model, x)
    assert maps.shape == (3, 4, 4) and bool((maps > 0).all())


def test_masking_round_trip():
    x = torch.randn(4, 10, 3)
    shuffle = torch.stack([torch.randperm(10) for _ in range(4)])
    kept, mask, ids_restore = ref.random_masking(x, 4, shuffle)
    removed = ref.index_sequence(x, shuffle[:, 4:])
    assert torch.equal(ref.restore_masked(kept, removed, ids_restore), x)
    assert mask.dtype == x.dtype and mask.sum().item() == 4 * 6
    assert torch.equal(mask.bool(), torch.zeros(4, 10).scatter(1, shuffle[:, 4:], 1).bool())


def test_mae_loss_ignores_kept_patches():
    pred, target = torch.randn(2, 16, 12), torch.randn(2, 16, 12)
    mask = torch.zeros(2, 16)
    mask[:, 5:] = 1
    changed = pred.clone()
    changed[:, :5] += 100  # kept patches: must not matter
    assert torch.equal(ref.mae_loss(pred, target, mask), ref.mae_loss(changed, target, mask))
    expected = ((pred - target) ** 2).mean(-1)[:, 5:].mean()
    assert torch.allclose(ref.mae_loss(pred, target, mask), expected)


def test_linear_probe_leaves_the_encoder_alone():
    mae = ref.MaskedAutoEncoder(ref.Transformer(16, 2, 1, 32), ref.Transformer(8, 2, 1, 16),
                                16, 8, 2, 4, in_channels=1)
    before = {k: v.clone() for k, v in mae.state_dict().items()}
    probe = ref.ClassificationMAE(10, mae, 16, detach=True)
    images = torch.randint(0, 17, (64, 1, 8, 8), dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,))
    vision.fit(probe, vision.classification_loss, images, labels,
               (vision.DIGITS_MEAN, vision.DIGITS_STD, 16.0), epochs=2, batch_size=32, lr=1e-2,
               progress=False)
    assert all(torch.equal(before[k], v) for k, v in mae.state_dict().items())


def test_fit_learns_a_small_problem():
    data = vision.load_digits_split()
    torch.manual_seed(0)
    model = ref.ClassificationViT(10, 32, 2, 4, in_channels=1, n_heads=2, n_layers=1,
                                  feedforward_dim=64)
    with suite.torch_threads(1):  # as the graded cpu profile trains
        history = vision.fit(model, vision.classification_loss, data.train_images[:512],
                             data.train_labels[:512], data, epochs=15, batch_size=64, lr=5e-3,
                             progress=False, evaluate=lambda: 0.0, eval_every=50)
    assert len(history["loss"]) == 15 * 8
    assert np.mean(history["loss"][-10:]) < 0.6 * np.mean(history["loss"][:5])
    assert [s for s, _ in history["eval"]] == [50, 100, 120]
    predictions = vision.predict(model, data.test_images, data)
    assert predictions.dtype == torch.int64 and predictions.shape == (497,)


# ---------------------------------------------------------------------------------------
# The suite
# ---------------------------------------------------------------------------------------

TRAINING = ("train/vit", "train/mae_linear_probe", "train/mae_finetune")


def test_training_inputs_hold_no_held_out_images():
    """The child gets the training split only; the held-out images and labels live in the
    expected values, which the evaluating sandbox (reference code) receives."""
    all_images, all_labels = vision.digits_arrays()
    for kind in ("public", "autograder_inputs"):
        cases = torch.load(paths.fixture_file("vit", kind), weights_only=True)["cases"]
        for name in TRAINING:
            inputs = cases[name]["inputs"]
            assert set(inputs) == {"train_images", "train_labels"}
            assert len(inputs["train_images"]) == 1797 - suite.DIGITS_HELD_OUT
            held = suite.digits_held_out(inputs)
            assert set(held) == {"data", "labels"} and set(held["data"]) == {"images"}
            assert len(held["labels"]) == suite.DIGITS_HELD_OUT
            train = {img.numpy().tobytes() for img in inputs["train_images"]}
            assert not any(img.numpy().tobytes() in train for img in held["data"]["images"])
            everything = torch.cat([inputs["train_images"], held["data"]["images"]]).flatten(1)
            assert len(torch.unique(everything, dim=0)) == 1797
            label_of = {img.numpy().tobytes(): int(y) for img, y in zip(all_images, all_labels)}
            assert [label_of[img.numpy().tobytes()] for img in held["data"]["images"]] == \
                held["labels"].tolist()
            if kind == "public":
                expected = cases[name]["expected"]
                assert torch.equal(expected["labels"], held["labels"])
                assert torch.equal(expected["data"]["images"], held["data"]["images"])


def test_profile_on_cpu_and_fixture_size():
    assert suite.profile_name(torch.device("cpu")) == "cpu"
    total = sum(f.stat().st_size for f in (paths.FIXTURES / "vit").glob("*.pt"))
    assert total < 4 << 20
    for case in suite.suite:
        if case.is_training:
            assert case.gpu_min_accuracy in (0.65, 0.30, 0.70)
            assert case.evaluate is not None


def tiny_profile(monkeypatch, name="cpu", batch_size=None):
    """The profile `name` with one epoch per stage, for the plumbing tests."""
    profile = {**suite.PROFILES[name]}
    if batch_size:
        profile["batch_size"] = batch_size
    for stage in ("vit", "mae", "probe", "finetune"):
        profile[stage] = {**profile[stage], "epochs": 1}
    monkeypatch.setitem(suite.PROFILES, name, profile)
    suite._pretrained.clear()


def test_training_cases_return_weights_that_the_reference_evaluates(monkeypatch):
    """call (in the child) returns a state_dict; evaluate (reference code) loads it
    strictly and predicts the held-out images; judge scores the predictions."""
    from grader.authoring import case_inputs
    from grader.cases import judge
    tiny_profile(monkeypatch)
    cpu = torch.device("cpu")
    for name in TRAINING:
        case = suite.suite[name]
        inputs = case_inputs(case, case.seed(0))
        reference = case.reference(inputs)
        weights = case.call(ref, inputs, cpu)
        assert all(type(v) is torch.Tensor and v.device.type == "cpu" for v in weights.values())
        if name == "train/vit":
            assert set(weights) == set(ref.ClassificationViT(
                **suite.PROFILES["cpu"]["vit"]["model"]).state_dict())
        else:  # the classifier's weights, the pretrained MAE's included
            assert any(k.startswith("mae.encoder.") for k in weights)
            assert any(k.startswith("output_head.") for k in weights)
        predictions = case.evaluate(ref, weights, reference["data"], cpu)
        assert predictions.dtype == torch.int64
        assert predictions.shape == (suite.DIGITS_HELD_OUT,)
        verdict = judge(case, predictions, reference["labels"])
        assert verdict.measure == "accuracy" and 0 <= verdict.error <= 1


def test_evaluate_names_weights_that_do_not_fit():
    case = suite.suite["train/vit"]
    model = ref.ClassificationViT(**suite.PROFILES["cpu"]["vit"]["model"])
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    data = {"images": torch.zeros(2, 1, 8, 8, dtype=torch.uint8)}
    cpu = torch.device("cpu")
    assert case.evaluate(ref, weights, data, cpu).shape == (2,)
    renamed = dict(weights)
    renamed["head.weight"] = renamed.pop("output_head.1.weight")
    with pytest.raises(ValueError) as info:
        case.evaluate(ref, renamed, data, cpu)
    message = str(info.value)
    assert "\n" not in message and "output_head.1.weight" in message and "head.weight" in message
    reshaped = {**weights, "cls_token": torch.zeros(1, 1, 3)}
    with pytest.raises(ValueError, match="cls_token has shape"):
        case.evaluate(ref, reshaped, data, cpu)


def test_training_reports_progress(monkeypatch):
    """vision.fit calls on_step after every step; the cases pass the sandbox's reporter."""
    from grader import sandbox
    seen = []
    monkeypatch.setattr(sandbox, "report_progress", lambda *a: seen.append(a), raising=False)
    tiny_profile(monkeypatch)
    case = suite.suite["train/vit"]
    from grader.authoring import case_inputs
    case.call(ref, case_inputs(case, 0), torch.device("cpu"))
    steps = (1797 - suite.DIGITS_HELD_OUT) // suite.PROFILES["cpu"]["batch_size"]
    assert [s for s, _, _ in seen] == list(range(1, steps + 1))
    assert all(total == steps for _, total, _ in seen)


def test_gpu_profile_code_path_on_a_fake_cifar10(tmp_path, monkeypatch):
    """The CIFAR-10 branch of the training cases runs (here on the CPU, tiny settings)."""
    write_cifar(tmp_path / "cifar-10-batches-py")
    monkeypatch.setattr(vision, "DATA_ROOT", tmp_path)
    monkeypatch.setattr(suite, "profile_name", lambda device: "gpu")
    tiny_profile(monkeypatch, "gpu", batch_size=4)
    cpu = torch.device("cpu")
    held = suite.cifar10_held_out()
    assert torch.equal(held["labels"], vision.load_cifar10().test_labels)
    assert suite.profile_of(held["data"]) == "gpu"
    for name in TRAINING:
        case = suite.suite[name]
        weights = case.call(ref, {}, cpu)
        predictions = case.evaluate(ref, weights, held["data"], cpu)
        assert predictions.dtype == torch.int64 and predictions.shape == (3,)


# ---------------------------------------------------------------------------------------
# What the exact cases must catch (issue 8)
# ---------------------------------------------------------------------------------------

def test_constructors_keep_the_source_attributes():
    mae = ref.MaskedAutoEncoder(ref.Transformer(16, 2, 1, 32), ref.Transformer(8, 2, 1, 16),
                                encoder_embedding_dim=16, decoder_embedding_dim=8,
                                patch_size=2, num_patches=4, mask_ratio=0.5, in_channels=1)
    assert (mae.mask_ratio, mae.encoder_embedding_dim, mae.decoder_embedding_dim) == (0.5, 16, 8)
    assert (mae.patch_size, mae.num_patches, mae.masked_length, mae.keep_length) == (2, 4, 8, 8)
    vit = ref.ClassificationViT(7, 24, 3, 4, in_channels=2, n_heads=3)
    assert (vit.embedding_dim, vit.patch_size, vit.num_patches, vit.n_classes) == (24, 3, 4, 7)
    classifier = ref.ClassificationMAE(10, mae, 16, detach=True)
    assert (classifier.embedding_dim, classifier.detach, classifier.n_classes) == (16, True, 10)
    skeleton = (paths.ASSIGNMENTS / "vit.py").read_text()  # given code: students get them too
    for attribute in ("self.mask_ratio =", "self.encoder_embedding_dim =",
                      "self.decoder_embedding_dim =", "self.embedding_dim ="):
        assert attribute in skeleton


def test_exact_cases_use_float64_and_non_default_sizes():
    from grader.authoring import case_inputs
    from grader.cases import leaves
    assert suite.VIT_PATCH != 4 and suite.PATCH != 4 and suite.MASK_RATIO != 0.75
    assert suite.VIT["embedding_dim"] != 256 and suite.VIT["n_heads"] != 4
    for case in suite.suite:
        if case.is_training:
            continue
        inputs = case_inputs(case, case.seed(0))
        floats = [t for _, t in leaves(inputs) if t.is_floating_point()]
        assert floats and all(t.dtype == torch.float64 for t in floats), case.name
        assert case.tol in (suite.TOL, suite.LOSS_TOL), case.name  # the tolerance policy


def mutant_module(name, tmp_path):
    from grader.authoring import write_mutant
    write_mutant("vit", name, tmp_path / name)
    module = load_assignment("vit", tmp_path / name)
    import sys
    sys.modules.pop("vit", None)
    return module


def test_masking_draws_one_permutation_per_image(tmp_path):
    from grader.authoring import case_inputs, run_case
    case = suite.suite["mae/forward_encoder_random"]
    inputs = case_inputs(case, case.seed(0))
    assert bool(run_case(case, ref, inputs)["distinct_permutations"])
    shared = mutant_module("mask_shared_permutation", tmp_path)
    out = run_case(case, shared, inputs)
    assert not bool(out["distinct_permutations"])
    assert bool(out["ids_restore_is_permutation"]) and bool(out["two_calls_differ"])


def test_a_drawn_output_must_belong_to_its_ids_restore():
    """A random path whose output is not the one its ids_restore describes (here the kept
    tokens reversed: the mask and ids_restore still agree) fails the case's check."""
    import types

    from grader.authoring import case_inputs, run_case

    class Reversed(ref.MaskedAutoEncoder):
        def forward_encoder(self, images, ids_shuffle=None):
            out, mask, ids_restore = super().forward_encoder(images, ids_shuffle)
            if ids_shuffle is None:
                out = torch.cat([out[:, :1], out[:, 1:].flip(1)], dim=1)
            return out, mask, ids_restore

    case = suite.suite["mae/forward_encoder_random"]
    inputs = case_inputs(case, case.seed(0))
    assert bool(run_case(case, ref, inputs)["output_of_the_returned_shuffle"])
    fake = types.SimpleNamespace(**{**vars(ref), "MaskedAutoEncoder": Reversed})
    out = run_case(case, fake, inputs)
    assert not bool(out["output_of_the_returned_shuffle"])
    assert bool(out["mask_agrees_with_ids_restore"]) and bool(out["distinct_permutations"])


def test_default_patch_size_is_named_not_a_shape_error(tmp_path):
    from grader.authoring import case_inputs, run_case
    for mutant, case_name in (("vit_patchify_default_size", "vit/forward"),
                              ("mae_patchify_default_size", "mae/forward_encoder")):
        case = suite.suite[case_name]
        with pytest.raises(ValueError, match="without the model's patch_size"):
            run_case(case, mutant_module(mutant, tmp_path), case_inputs(case, case.seed(0)))


def test_batch_of_one_keeps_its_batch_dimension(tmp_path):
    from grader.authoring import case_inputs, run_case
    case = suite.suite["vit/forward"]
    inputs = case_inputs(case, case.seed(0))
    good = run_case(case, ref, inputs)["batch_of_one"]
    squeezed = run_case(case, mutant_module("vit_squeeze_drops_batch", tmp_path),
                        inputs)["batch_of_one"]
    assert bool(good["keeps_batch_dim"]) and not bool(squeezed["keeps_batch_dim"])
    assert torch.equal(good["values"], squeezed["values"])  # only the shape is wrong


def test_mae_loss_case_separates_kept_and_removed_patches():
    """The loss case's inputs make a loss over all patches differ a lot from the right one."""
    from grader.authoring import case_inputs
    x = case_inputs(suite.suite["mae/loss"], 0)
    right = ref.mae_loss(x["predicted"], x["target"], x["mask"])
    everywhere = ((x["predicted"] - x["target"]) ** 2).mean()
    assert everywhere > 3 * right


def test_named_patch_size_message_is_the_mutants_description():
    """The suite names the default-patch-size mistake itself (the student's code would
    only show a matrix-shape error); its text must stay that of the known mistakes."""
    from grader.authoring import mutants
    known = mutants("vit")
    for name in ("vit_patchify_default_size", "mae_patchify_default_size"):
        assert known[name][0] == suite.PATCHIFY_DEFAULT
