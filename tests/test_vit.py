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

def test_training_inputs_hold_no_held_out_labels():
    cases = torch.load(paths.fixture_file("vit", "public"), weights_only=True)["cases"]
    for name in ("train/vit", "train/mae_linear_probe", "train/mae_finetune"):
        inputs = cases[name]["inputs"]
        assert set(inputs) == {"train_images", "train_labels", "test_images"}
        labels = suite.digits_labels(inputs)
        assert torch.equal(labels, cases[name]["expected"])
        assert len(inputs["test_images"]) == suite.DIGITS_HELD_OUT


def test_profile_on_cpu_and_fixture_size():
    assert suite.profile_name(torch.device("cpu")) == "cpu"
    total = sum(f.stat().st_size for f in (paths.FIXTURES / "vit").glob("*.pt"))
    assert total < 4 << 20
    for case in suite.suite:
        if case.is_training:
            assert case.gpu_min_accuracy in (0.65, 0.30, 0.70)


def test_gpu_profile_code_path_on_a_fake_cifar10(tmp_path, monkeypatch):
    """The CIFAR-10 branch of the training cases runs (here on the CPU, tiny settings)."""
    write_cifar(tmp_path / "cifar-10-batches-py")
    monkeypatch.setattr(vision, "DATA_ROOT", tmp_path)
    monkeypatch.setattr(suite, "profile_name", lambda device: "gpu")
    gpu = {**suite.PROFILES["gpu"], "batch_size": 4}
    for stage in ("vit", "mae", "probe", "finetune"):
        gpu[stage] = {**gpu[stage], "epochs": 1}
    monkeypatch.setitem(suite.PROFILES, "gpu", gpu)
    suite._pretrained.clear()
    cpu = torch.device("cpu")
    assert suite.train_vit_call(ref, {}, cpu).shape == (3,)
    for stage in ("probe", "finetune"):
        predictions = suite.train_mae_classifier(ref, {}, cpu, stage)
        assert predictions.dtype == torch.int64 and predictions.shape == (3,)
    assert torch.equal(suite.cifar10_test_labels(), vision.load_cifar10().test_labels)
