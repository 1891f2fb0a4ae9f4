"""`clip_dino`: the scene masks and videos, the tokenizer and preprocessing, the cached
training recipes (deterministic rebuild), the adapters for real checkpoints (on tiny random
models of the same interface), and the segmentation case's contract."""
import numpy as np
import pytest
import torch
from torch import nn

from dlkit import captions
from dlkit import clip_dino_models as models
from dlkit.utils import load_assignment
from grader import paths
from grader.authoring import oracles
from grader.cases import difference, judge
from grader.suites import clip_dino as suite_module

ref = load_assignment("clip_dino", paths.SOLUTIONS)
TINY_CLIP = dict(models.CLIP_RECIPE, scenes=48, epochs=1, batch_size=16,
                 model=dict(embed_dim=8, width=4, text_width=8, heads=2))
TINY_DINO = dict(models.DINO_RECIPE, scenes=16, epochs=1, batch_size=8, local_views=1,
                 out_dim=16, model=dict(width=8, depth=1, heads=2))


# ---------------------------------------------------------------------------------------
# Scenes, masks, videos
# ---------------------------------------------------------------------------------------

def colour_of(image, rgb):
    return (image == torch.tensor(rgb, dtype=image.dtype)[:, None, None]).all(0)


def test_scenes_with_masks_are_the_captioning_scenes_bit_for_bit():
    images, masks, texts = models.make_scenes_with_masks(40, seed=5)
    same_images, same_captions = captions.make_scenes(40, seed=5)
    assert torch.equal(images, same_images)
    decoded = captions.decode_captions(same_captions, captions.SCENE_VOCAB["idx_to_token"],
                                       skip_special=True)
    assert texts == decoded
    assert masks.shape == (40, 32, 32) and masks.dtype == torch.long


def test_masks_agree_with_the_drawn_pixels():
    images, masks, texts = models.make_scenes_with_masks(60, seed=11)
    for image, mask, text in zip(images, masks, texts):
        words = text.split()
        first, second = captions.COLORS[words[1]], captions.COLORS[words[-2]]
        assert colour_of(image, first)[mask == 1].all()
        assert colour_of(image, second)[mask == 2].all()
        assert torch.equal(colour_of(image, second), mask == 2)
        assert torch.equal(colour_of(image, first), mask == 1)  # the second never hides it all
        assert (mask == 1).any() and (mask == 2).any()


def test_video_masks_follow_the_moving_shapes():
    frames, masks = models.scene_video(seed=3, frames=10)
    assert frames.shape == (10, 3, 32, 32) and masks.shape == (10, 32, 32)
    colours = [rgb for rgb in captions.COLORS.values() if colour_of(frames[0], rgb).any()]
    assert len(colours) == 2
    moved = False
    for t in range(10):
        drawn = colour_of(frames[t], colours[0]) | colour_of(frames[t], colours[1])
        assert torch.equal(drawn, masks[t] > 0)
        moved |= not torch.equal(masks[t], masks[0])
    assert moved
    again = models.scene_video(seed=3, frames=10)
    assert torch.equal(again[0], frames) and torch.equal(again[1], masks)


def test_patch_labels_take_the_majority():
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[0, :4, :4] = 1                 # patch 0: all ones
    mask[0, :3, 4:] = 2                 # patch 1: 12 of 16 are twos
    mask[0, 4:6, :4] = 1                # patch 2: half ones: the tie goes to 1
    labels = models.patch_labels(mask, patch=4)
    assert labels.tolist() == [[1, 2, 1, 0]]


def test_synthetic_features_are_deterministic_and_separate_colours():
    frames, _ = models.scene_video(seed=1, frames=2)
    a = models.synthetic_patch_features(frames, seed=4)
    assert a.shape == (2, 64, 384) and a.dtype == torch.float32
    assert torch.equal(a, models.synthetic_patch_features(frames, seed=4))
    assert not torch.equal(a, models.synthetic_patch_features(frames, seed=5))


# ---------------------------------------------------------------------------------------
# Tokenizer and preprocessing
# ---------------------------------------------------------------------------------------

def test_tokenize_pads_truncates_and_marks_unknown_words():
    ids = models.tokenize(["a red circle", "A Zebra"])
    w = models.WORD_TO_ID
    assert ids.shape == (2, models.CONTEXT_LENGTH) and ids.dtype == torch.long
    assert ids[0, :5].tolist() == [w["<sot>"], w["a"], w["red"], w["circle"], w["<eot>"]]
    assert ids[0, 5:].eq(0).all()
    assert ids[1, 2].item() == w["<unk>"]
    long = models.tokenize(" ".join(["a"] * 40))
    assert long[0, -1].item() == w["<eot>"]
    with pytest.raises(TypeError, match="list of strings"):
        models.tokenize([1, 2])


def test_preprocess_scales_normalises_and_rejects_bad_shapes():
    image = np.full((32, 32, 3), 255, dtype=np.uint8)
    x = models.Preprocess()(image)
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x, torch.full_like(x, (1 - 0.45) / 0.25))
    assert models.Preprocess(size=16)(image).shape == (3, 16, 16)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        models.Preprocess()(np.zeros((3, 32, 32), dtype=np.uint8))


def test_models_expose_the_source_interfaces():
    clip = models.SmallCLIP(**TINY_CLIP["model"])
    tokens = clip.tokenize(["a red circle", "a blue square left of a red circle"])
    assert clip.encode_text(tokens).shape == (2, 8)
    assert clip.encode_image(torch.zeros(3, 3, 32, 32)).shape == (3, 8)
    vit = models.SmallViT(width=8, depth=2, heads=2)
    x = torch.randn(2, 3, 32, 32)
    assert vit.get_intermediate_layers(x)[0].shape == (2, 65, 8)
    attention = vit.get_last_selfattention(x)
    assert attention.shape == (2, 2, 65, 65)
    assert torch.allclose(attention.sum(-1), torch.ones(2, 2, 65))
    assert vit.get_intermediate_layers(torch.randn(1, 3, 16, 16))[0].shape == (1, 17, 8)


# ---------------------------------------------------------------------------------------
# Cached recipes
# ---------------------------------------------------------------------------------------

def refuse(*args, **kwargs):
    raise AssertionError("the cache was not used")


def test_clip_cache_rebuild_is_deterministic(tmp_path):
    first, _ = models.load_small_clip(ref.clip_contrastive_loss, TINY_CLIP, progress=False,
                                      cache=tmp_path / "a")
    second, _ = models.load_small_clip(ref.clip_contrastive_loss, TINY_CLIP, progress=False,
                                       cache=tmp_path / "b")
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    cached, preprocess = models.load_small_clip(refuse, TINY_CLIP, progress=False,
                                                cache=tmp_path / "a")
    assert torch.equal(cached.logit_scale, first.logit_scale)
    assert isinstance(preprocess, models.Preprocess)
    assert len(list((tmp_path / "a").glob("clip_*.pt"))) == 1


def test_dino_cache_rebuild_is_deterministic_and_moves_the_teacher(tmp_path):
    args = (ref.dino_loss, ref.update_center, ref.ema_update)
    first = models.load_small_dino(*args, recipe=TINY_DINO, progress=False, cache=tmp_path)
    second = models.load_small_dino(*args, recipe=TINY_DINO, progress=False, retrain=True,
                                    cache=None)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    torch.manual_seed(TINY_DINO["seed"])
    initial = models.SmallViT(**TINY_DINO["model"])
    assert not torch.equal(initial.patch_embed.weight, first.patch_embed.weight)
    cached = models.load_small_dino(refuse, refuse, refuse, recipe=TINY_DINO, progress=False,
                                    cache=tmp_path)
    assert torch.equal(cached.pos_embed, first.pos_embed)


def test_recipe_changes_change_the_cache_file():
    assert models._recipe_tag("clip", TINY_CLIP) != models._recipe_tag(
        "clip", dict(TINY_CLIP, epochs=2))


# ---------------------------------------------------------------------------------------
# Adapters (tiny random models with the real interfaces)
# ---------------------------------------------------------------------------------------

class FakeOpenAICLIP(nn.Module):
    """OpenAI CLIP's interface: encode_image on preprocessed batches, encode_text on ids."""

    def __init__(self):
        super().__init__()
        self.visual = nn.Linear(3 * 8 * 8, 6)
        self.text = nn.EmbeddingBag(50, 6)

    def encode_image(self, x):
        return self.visual(x.flatten(1))

    def encode_text(self, tokens):
        return self.text(tokens)


def fake_tokenizer(texts):
    return torch.tensor([[len(w) % 50 for w in t.split()][:4] + [0] * (4 - len(t.split()[:4]))
                         for t in texts])


def pil_transform(image):  # stands in for CLIP's PIL-based preprocessing
    return torch.from_numpy(np.asarray(image.resize((8, 8)), dtype=np.float32) / 255).permute(
        2, 0, 1)


def test_clip_adapter_runs_the_student_functions():
    torch.manual_seed(0)
    model = models.CLIPAdapter(FakeOpenAICLIP(), fake_tokenizer)
    preprocess = models.ArrayPreprocess(pil_transform)
    images = models.to_hwc(models.make_scenes_with_masks(6, seed=2)[0])
    classes = ["a red circle", "a big blue square", "x"]
    predicted = ref.clip_zero_shot_classifier(model, preprocess, images, classes, "cpu")
    assert len(predicted) == 6 and set(predicted) <= set(classes)
    top = ref.CLIPImageRetriever(model, preprocess, images, "cpu").retrieve("a red circle", 3)
    assert len(top) == 3 and all(isinstance(i, int) for i in top)
    with pytest.raises(TypeError, match="not a CLIP"):
        models.CLIPAdapter(nn.Linear(2, 2), fake_tokenizer)


def test_dino_interface_check_and_missing_files():
    models.check_dino_interface(models.SmallViT(width=8, depth=1, heads=2))
    with pytest.raises(TypeError, match="get_intermediate_layers"):
        models.check_dino_interface(nn.Linear(2, 2))
    with pytest.raises(FileNotFoundError, match="hubconf.py"):
        models.load_dino("/nonexistent/dino")
    for loader, args in ((models.load_openai_clip, ("/nonexistent.pt",)),
                         (models.load_open_clip, ("ViT-B-32", "/nonexistent.bin"))):
        with pytest.raises((ImportError, FileNotFoundError)):
            loader(*args)


# ---------------------------------------------------------------------------------------
# The segmentation case: an untrained classifier fails it, a trained one passes
# ---------------------------------------------------------------------------------------

def segmentation_scores(module, seed: int) -> dict:
    case = suite_module.suite["segmentation/one_shot"]
    x = {"video_seed": torch.tensor(seed)}
    predictions = case.call(module, x, torch.device("cpu"))
    scores = case.evaluate(ref, predictions, case.reference(x)["data"], "cpu")
    return {name: value.item() for name, value in scores.items()}


class Untrained:
    """The reference's classifier, never trained."""

    def __init__(self, device, num_classes, inp_dim=384):
        self.inner = ref.DINOSegmentation(device, num_classes, inp_dim)

    def train(self, X_train, Y_train, num_iters=500):
        pass

    def inference(self, X_test):
        return self.inner.inference(X_test)


@pytest.mark.parametrize("seed", [0, 1])
def test_segmentation_thresholds_separate_trained_from_untrained(seed):
    class Module:
        DINOSegmentation = Untrained
    thresholds = suite_module.MIN_IOU
    trained, untrained = segmentation_scores(ref, seed), segmentation_scores(Module, seed)
    assert set(trained) == set(untrained) == set(thresholds)
    assert all(trained[name] >= thresholds[name] for name in thresholds)
    assert all(untrained[name] < thresholds[name] for name in thresholds)


def test_segmentation_verdict_names_every_score():
    case = suite_module.suite["segmentation/one_shot"]
    low = {name: torch.tensor(t + (0.1 if i else -0.1), dtype=torch.float64)
           for i, (name, t) in enumerate(suite_module.MIN_IOU.items())}
    target = {name: torch.zeros((), dtype=torch.float64) for name in suite_module.MIN_IOU}
    verdict = judge(case, low, target)
    assert not verdict.passed
    assert all(name in verdict.message for name in suite_module.MIN_IOU)


def test_separable_classifier_case_catches_an_untrained_classifier():
    case = suite_module.suite["segmentation/train_and_infer"]
    x = case.inputs(torch.Generator().manual_seed(0))
    expected = oracles("clip_dino")[case.name](x)

    class Module:
        DINOSegmentation = Untrained
    assert difference(case.call(ref, x, torch.device("cpu")), expected).error == 0
    assert difference(case.call(Module, x, torch.device("cpu")), expected).error == 1


def test_segmentation_evaluation_rejects_scores_and_wrong_shapes():
    case = suite_module.suite["segmentation/one_shot"]
    data = case.reference({"video_seed": torch.tensor(0)})["data"]
    with pytest.raises(ValueError, match="one label per patch"):
        case.evaluate(ref, {"predictions": torch.zeros(12, 3, dtype=torch.long)}, data, "cpu")
    with pytest.raises(ValueError, match="integer class labels"):
        case.evaluate(ref, {"predictions": torch.zeros(12, 64)}, data, "cpu")


def test_compute_iou_counts_every_class():
    pred = torch.tensor([0, 0, 1, 1])
    gt = torch.tensor([0, 1, 1, 1])
    assert ref.compute_iou(pred, gt, 2) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert ref.compute_iou(pred, gt, 3) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    with pytest.raises(ValueError, match="labels"):
        ref.compute_iou(pred, gt[:3], 2)


# ---------------------------------------------------------------------------------------
# Zero-shot and retrieval with the constructed ColourCLIP: meaningful on held-out scenes
# ---------------------------------------------------------------------------------------

def softmax_over_images(clip_model, clip_preprocess, images, class_texts, device):
    """The known mistake: a softmax over the images before the argmax over the classes."""
    with torch.no_grad():
        text = clip_model.encode_text(clip_model.tokenize(class_texts).to(device))
        image = clip_model.encode_image(torch.stack([clip_preprocess(i) for i in images]))
        similarity = ref.get_similarity_no_loop(text, image)
    return [class_texts[i] for i in (100 * similarity).softmax(dim=1).argmax(dim=0).tolist()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_colour_clip_zero_shot_finds_the_dominant_colour(seed):
    case = suite_module.suite["clip/zero_shot"]
    x = case.inputs(torch.Generator().manual_seed(seed))
    truth = suite_module.dominant_classes(x)
    predicted = case.call(ref, x, torch.device("cpu"))["predictions"]
    assert (predicted == truth).float().mean() == 1.0

    class Mistaken:
        clip_zero_shot_classifier = staticmethod(softmax_over_images)
    wrong = case.call(Mistaken, x, torch.device("cpu"))["predictions"]
    assert (wrong == truth).float().mean() < 0.9


def test_colour_clip_retrieval_finds_the_query_colour():
    case = suite_module.suite["clip/retrieval"]
    x = case.inputs(torch.Generator().manual_seed(0))
    _, _, texts = models.make_scenes_with_masks(suite_module.SCENES, int(x["scene_seed"]))
    top4 = case.call(ref, x, torch.device("cpu"))["k4"]
    colours = [next(w for w in q.split() if w in captions.COLORS) for q in suite_module.QUERIES]
    hits = [sum(c in texts[i].split() for i in row.tolist()) for c, row in zip(colours, top4)]
    assert sum(hits) / top4.numel() >= 0.75


def test_colour_clip_rotation_keeps_cosine_similarities():
    weights = models.colour_clip_weights(torch.Generator().manual_seed(0))
    plain = dict(weights, rotation=torch.eye(weights["rotation"].shape[0], dtype=torch.float64))
    rotated, axis_aligned = models.ColourCLIP(**weights), models.ColourCLIP(**plain)
    images, _, _ = models.make_scenes_with_masks(4, 3)
    pixels = torch.stack([models.Preprocess()(i) for i in models.to_hwc(images)])
    tokens = models.tokenize(suite_module.CLASSES)
    sims = [ref.get_similarity_no_loop(m.encode_text(tokens), m.encode_image(pixels))
            for m in (rotated, axis_aligned)]
    assert torch.allclose(sims[0], sims[1], atol=1e-12)
