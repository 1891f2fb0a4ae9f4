"""Timings for the `clip_dino` assignment with the reference solution.

    .venv/bin/python tests/bench_clip_dino.py [--no-training] [--set public|autograder]

1. Wall time of `python -m grader grade clip_dino --impl solutions --no-training`.
2. The segmentation case in this process (training time, its three mean IoU scores, and
   the same scores for an untrained classifier, the baseline the thresholds must stay above).
3. Unless --no-training: training time of the small CLIP and the small DINO ViT with the
   notebook's full recipes (one thread, no cache), and what they reach on 300 held-out
   scenes: zero-shot accuracy over the 15 colour-shape prompts (the big object), retrieval
   precision at 5, and the one-shot segmentation IoU from the DINO patch tokens.
"""
import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlkit import captions  # noqa: E402
from dlkit import clip_dino_models as models  # noqa: E402
from dlkit.utils import load_assignment  # noqa: E402
from grader import paths  # noqa: E402
from grader.authoring import SETS, case_inputs  # noqa: E402
from grader.suites import clip_dino as suite  # noqa: E402

ref = load_assignment("clip_dino", paths.SOLUTIONS)


def bench_grading() -> None:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "grader", "grade", "clip_dino", "--impl",
                    "solutions", "--no-training", "--device", "cpu"], cwd=ROOT, check=True,
                   capture_output=True)
    print(f"grade clip_dino --impl solutions --no-training: {time.monotonic() - started:.1f} s")


class Untrained:
    def __init__(self, device, num_classes, inp_dim=384):
        self.inner = ref.DINOSegmentation(device, num_classes, inp_dim)

    def train(self, X_train, Y_train, num_iters=500):
        pass

    def inference(self, X_test):
        return self.inner.inference(X_test)


def bench_segmentation_case(which: str) -> None:
    case = suite.suite["segmentation/one_shot"]
    inputs = case_inputs(case, case.seed(SETS[which]))
    data = case.reference(inputs)["data"]
    started = time.monotonic()
    predictions = case.call(ref, inputs, torch.device("cpu"))
    seconds = time.monotonic() - started
    scores = case.evaluate(ref, predictions, data, "cpu")

    class Module:
        DINOSegmentation = Untrained
    baseline = case.evaluate(ref, case.call(Module, inputs, "cpu"), data, "cpu")
    shown = ", ".join(f"{name} {scores[name].item():.3f} (needs >= {needed}; untrained "
                      f"{baseline[name].item():.3f})" for name, needed in case.min_scores.items())
    print(f"segmentation/one_shot ({which} set): {seconds:.1f} s, {shown}")


def bench_models() -> None:
    test_images, _, test_texts = models.make_scenes_with_masks(300, seed=99)
    hwc = models.to_hwc(test_images)
    started = time.monotonic()
    clip, preprocess = models.load_small_clip(ref.clip_contrastive_loss, models.CLIP_RECIPE,
                                              progress=False, cache=None)
    clip_s = time.monotonic() - started
    classes = [f"a {c} {s}" for c in captions.COLORS for s in captions.SHAPES]
    predicted = ref.clip_zero_shot_classifier(clip, preprocess, hwc, classes, "cpu")
    big = [" ".join(t.split()[:3]) for t in test_texts]
    zero_shot = statistics.mean(p == b for p, b in zip(predicted, big))
    retriever = ref.CLIPImageRetriever(clip, preprocess, hwc, "cpu")
    hits = [q.split(" ", 1)[1] in test_texts[i] for q in classes for i in retriever.retrieve(q, 5)]
    print(f"small CLIP ({models.CLIP_RECIPE['epochs']} epochs, {models.CLIP_RECIPE['scenes']} "
          f"scenes): {clip_s:.0f} s; zero-shot (15 prompts, chance 0.067) {zero_shot:.3f}, "
          f"retrieval precision at 5 {statistics.mean(hits):.3f}")
    started = time.monotonic()
    vit = models.load_small_dino(ref.dino_loss, ref.update_center, ref.ema_update,
                                 models.DINO_RECIPE, progress=False, cache=None)
    dino_s = time.monotonic() - started
    ious = []
    for seed in range(10):
        frames, masks = models.scene_video(seed)
        X, Y = models.dino_patch_tokens(vit, frames), models.patch_labels(masks)
        torch.manual_seed(231)
        seg = ref.DINOSegmentation("cpu", int(Y.max()) + 1, inp_dim=X.shape[-1])
        seg.train(X[0], Y[0])
        ious.append(statistics.mean(ref.compute_iou(seg.inference(X[t]), Y[t], int(Y.max()) + 1)
                                    for t in range(1, len(X))))
    print(f"small DINO ViT ({models.DINO_RECIPE['epochs']} epochs, "
          f"{models.DINO_RECIPE['scenes']} scenes): {dino_s:.0f} s; one-shot segmentation "
          f"from its patch tokens, held-out mean IoU over 10 videos {min(ious):.3f}-"
          f"{max(ious):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--set", choices=sorted(SETS), default="public")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_grading()
    bench_segmentation_case(args.set)
    if not args.no_training:
        bench_models()


if __name__ == "__main__":
    main()
