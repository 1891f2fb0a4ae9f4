"""Timings for the `vit` assignment with the reference solution.

    .venv/bin/python tests/bench_vit.py [--set public|autograder|both] [--skip-grade]

1. Wall time of `python -m grader grade vit --impl solutions --no-training` (the sandbox,
   fixtures and all non-training cases).
2. For each training case of the cpu profile, run in this process with the suite's own
   settings and held-out evaluation every few steps: the time until the held-out
   accuracy first reaches the case's threshold, the final accuracy and the total time
   (MAE pretraining counts towards both MAE cases, as it does when they are graded alone).
   Also the linear probe on a randomly initialised (not pretrained) encoder, the baseline
   the probe threshold must stay above.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlkit import vision  # noqa: E402
from dlkit.utils import load_assignment  # noqa: E402
from grader import paths  # noqa: E402
from grader.suites import vit as suite  # noqa: E402

ref = load_assignment("vit", paths.SOLUTIONS)
EVAL_EVERY = 20  # steps


def grading_time() -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "grader", "grade", "vit", "--impl", "solutions",
                    "--no-training", "--device", "cpu"], cwd=ROOT, check=True,
                   capture_output=True)
    return time.monotonic() - started


class Clock:
    """Held-out accuracy over time; `offset` adds time spent before (MAE pretraining)."""

    def __init__(self, model, x, labels, stats, offset=0.0):
        self.model, self.x, self.labels, self.stats = model, x, labels, stats
        self.started, self.offset, self.points = time.monotonic(), offset, []

    def __call__(self):
        eval_started = time.monotonic()
        acc = vision.accuracy(self.model, self.x, self.labels, self.stats)
        self.started += time.monotonic() - eval_started  # evaluation time is not training
        self.points.append((time.monotonic() - self.started + self.offset, acc))
        return acc

    def time_to(self, threshold):
        return next((t for t, acc in self.points if acc >= threshold), None)


def held_out(inputs):
    """The held-out images and labels the grader's reference evaluates on."""
    reference = suite.digits_held_out(inputs)
    return reference["data"]["images"], reference["labels"]


def report(name, clock, threshold):
    reached = clock.time_to(threshold)
    final_t, final_acc = clock.points[-1]
    reached_text = f"{reached:6.1f} s" if reached is not None else "   never"
    print(f"{name:<26} threshold {threshold:.2f}: reached after {reached_text}; "
          f"final accuracy {final_acc:.3f} after {final_t:6.1f} s "
          f"(margin {final_acc - threshold:+.3f})", flush=True)


def bench_set(which: str):
    kind = "public" if which == "public" else "autograder_inputs"
    cases = torch.load(paths.fixture_file("vit", kind), weights_only=True)["cases"]
    x = cases["train/vit"]["inputs"]
    test_x, labels = held_out(x)
    p = suite.PROFILES["cpu"]
    stats, train_x, train_y = suite.training_data(x, "cpu")
    print(f"-- {which} set: {len(train_x)} training and {len(test_x)} held-out digits, "
          f"{p['threads']} thread(s)", flush=True)
    with suite.torch_threads(p["threads"]):
        torch.manual_seed(0)
        model = ref.ClassificationViT(**p["vit"]["model"])
        clock = Clock(model, test_x, labels, stats)
        vision.fit(model, vision.classification_loss, train_x, train_y, stats,
                   epochs=p["vit"]["epochs"], batch_size=p["batch_size"], lr=p["vit"]["lr"],
                   progress=False, evaluate=clock, eval_every=EVAL_EVERY)
        report("train/vit", clock, p["vit"]["min_accuracy"])

        # Each MAE case uses its own inputs (its own split), as when graded.
        for case, stage in (("train/mae_linear_probe", "probe"), ("train/mae_finetune",
                                                                   "finetune")):
            xs = cases[case]["inputs"]
            test_x, labels = held_out(xs)
            stats, train_x, train_y = suite.training_data(xs, "cpu")
            suite._pretrained.clear()
            started = time.monotonic()
            mae = suite.pretrained_mae(ref, xs, torch.device("cpu"), "cpu")
            pretraining = time.monotonic() - started
            torch.manual_seed(2)
            model = ref.ClassificationMAE(10, mae, p["mae"]["encoder"]["embedding_dim"],
                                          detach=stage == "probe")
            clock = Clock(model, test_x, labels, stats, offset=pretraining)
            vision.fit(model, vision.classification_loss, train_x, train_y, stats,
                       epochs=p[stage]["epochs"], batch_size=p["batch_size"], lr=p[stage]["lr"],
                       seed=2, progress=False, evaluate=clock, eval_every=EVAL_EVERY)
            report(f"{case} ({pretraining:.0f} s pretraining)", clock, p[stage]["min_accuracy"])

        # Baseline: the same probe on an encoder that was never pretrained.
        torch.manual_seed(1)
        cfg = p["mae"]
        mae = ref.MaskedAutoEncoder(ref.Transformer(**cfg["encoder"]),
                                    ref.Transformer(**cfg["decoder"]), **cfg["model"])
        torch.manual_seed(2)
        model = ref.ClassificationMAE(10, mae, cfg["encoder"]["embedding_dim"], detach=True)
        xs = cases["train/mae_linear_probe"]["inputs"]
        stats, train_x, train_y = suite.training_data(xs, "cpu")
        test_x, labels = held_out(xs)
        clock = Clock(model, test_x, labels, stats)
        vision.fit(model, vision.classification_loss, train_x, train_y, stats,
                   epochs=p["probe"]["epochs"], batch_size=p["batch_size"], lr=p["probe"]["lr"],
                   seed=2, progress=False, evaluate=clock, eval_every=EVAL_EVERY)
        report("probe, random encoder", clock, p["probe"]["min_accuracy"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="public", choices=["public", "autograder", "both"])
    parser.add_argument("--skip-grade", action="store_true")
    args = parser.parse_args()
    if not args.skip_grade:
        print(f"grading without training (solutions, cpu): {grading_time():.1f} s", flush=True)
    for which in (["public", "autograder"] if args.set == "both" else [args.set]):
        bench_set(which)


if __name__ == "__main__":
    main()
