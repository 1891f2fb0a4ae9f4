"""Timings for the `simclr` assignment with the reference solution.

    .venv/bin/python tests/bench_simclr.py [--no-training] [--set public|autograder]

1. The SimCLR loss for a batch of N = 256 pairs (D = 128, float32): the naive loop version
   against the vectorized one, and their ratio, measured in this run.
2. Wall time of `python -m grader grade simclr --impl solutions --no-training`.
3. Unless --no-training: the training case of the cpu profile run in this process with the
   suite's own settings (pretraining time, kNN accuracy on the held-out digits), and the
   same evaluation of the randomly initialised encoder, the baseline the threshold must
   stay above.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlkit.utils import load_assignment, seed_everything  # noqa: E402
from grader import paths  # noqa: E402
from grader.authoring import SETS, case_inputs  # noqa: E402
from grader.cases import judge  # noqa: E402
from grader.suites import simclr as suite  # noqa: E402

ref = load_assignment("simclr", paths.SOLUTIONS)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def bench_loss(n: int = 256, d: int = 128) -> None:
    g = torch.Generator().manual_seed(0)
    left = torch.randn(n, d, generator=g)
    right = left + 0.5 * torch.randn(n, d, generator=g)
    naive = best_of(lambda: ref.simclr_loss_naive(left, right, 0.5), 1)
    vectorized = best_of(lambda: ref.simclr_loss_vectorized(left, right, 0.5), 20)
    agree = abs(ref.simclr_loss_naive(left[:16], right[:16], 0.5).item()
                - ref.simclr_loss_vectorized(left[:16], right[:16], 0.5).item())
    print(f"SimCLR loss, N = {n} pairs, D = {d}: naive {naive:.2f} s, vectorized "
          f"{1e3 * vectorized:.2f} ms: {naive / vectorized:.0f}x faster "
          f"(N = 16 values agree to {agree:.1e} in float32)")


def bench_grading() -> None:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "grader", "grade", "simclr", "--impl", "solutions",
                    "--no-training", "--device", "cpu"], cwd=ROOT, check=True,
                   capture_output=True)
    print(f"grade simclr --impl solutions --no-training: {time.monotonic() - started:.1f} s")


def bench_training(which: str) -> None:
    case = suite.suite["train/ssl_beats_random"]
    p = suite.PROFILES["cpu"]
    inputs = case_inputs(case, case.seed(SETS[which]))
    expected = case.reference(inputs)
    cpu = torch.device("cpu")
    seed_everything(case.seed(0))
    started = time.monotonic()
    weights = case.call(ref, inputs, cpu)
    pretraining = time.monotonic() - started
    started = time.monotonic()
    verdict = judge(case, case.evaluate(ref, weights, expected["data"], cpu), expected["labels"])
    evaluation = time.monotonic() - started
    print(f"train/ssl_beats_random ({which} split, {p['epochs']} epochs): pretraining "
          f"{pretraining:.1f} s, evaluation {evaluation:.1f} s; {verdict.message}")
    torch.manual_seed(p["seed"])
    random_init = ref.Model(**p["model"]).state_dict()
    baseline = judge(case, case.evaluate(ref, random_init, expected["data"], cpu),
                     expected["labels"])
    print(f"  the same kNN monitor on the randomly initialised encoder: held-out accuracy "
          f"{baseline.error:.3f} (must stay below {case.min_accuracy})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--set", choices=sorted(SETS), default="public")
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench_loss()
    bench_grading()
    if not args.no_training:
        bench_training(args.set)


if __name__ == "__main__":
    main()
