"""Timings of the captioning suite with the reference solution, as the grader runs it.

    .venv/bin/python tests/bench_captioning.py            # everything (a few minutes on 2 cores)
    .venv/bin/python tests/bench_captioning.py --no-training
    .venv/bin/python tests/bench_captioning.py --calibrate 0 1000000 7   # raw figures

Prints the wall time of grading every non-training case (sandbox included), then, for each
training case, its result (the reference's held-out accuracy or whether the loss target was
met), its threshold and its wall time. A training case's `time_limit` should stay several
times above what is printed here.

--calibrate runs the training cases in this process (no sandbox) on the inputs of the given
fixture-set bases (0 = public, 1000000 = autograder, anything else = extra seeds) and prints
the raw figures behind the thresholds: each overfit case's final loss, the held-out accuracy.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader.grade import grade  # noqa: E402
from grader.suites import load_suite  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--calibrate", nargs="+", type=int, metavar="BASE")
    parser.add_argument("--set", default="public", choices=["public", "autograder"],
                        help="fixture set (the two sets have different training seeds)")
    args = parser.parse_args()
    suite = load_suite("captioning")
    if args.calibrate:
        return calibrate(suite, args.calibrate)

    started = time.monotonic()
    result = grade("captioning", "solutions", device="cpu", which=args.set, training=False)
    seconds = time.monotonic() - started
    print(f"non-training cases: {len(result.verdicts)} cases, "
          f"{result.score:g}/{result.max_score:g} points, {seconds:.1f} s wall "
          f"(grading {result.seconds:.1f} s)")
    if args.no_training:
        return 0

    total = 0.0
    for case in suite:
        if not case.is_training:
            continue
        started = time.monotonic()
        (verdict,) = grade("captioning", "solutions", device="cpu", which=args.set,
                           cases=[case.name]).verdicts
        seconds = time.monotonic() - started
        total += seconds
        print(f"{case.name:<22} {'pass' if verdict.passed else 'FAIL'}  {seconds:6.1f} s wall "
              f"(limit {case.time_limit:.0f} s)  {verdict.message}")
    print(f"all training cases: {total:.1f} s wall")
    return 0


def calibrate(suite, bases) -> int:
    import torch

    import grader.suites.captioning as S
    from dlkit.utils import load_assignment, seed_everything
    from grader import paths
    reference = load_assignment("captioning", paths.SOLUTIONS)
    for case in suite:
        if not case.is_training:
            continue
        for base in bases:
            inputs = case.inputs(torch.Generator().manual_seed(case.seed(base)))
            seed_everything(case.seed(0))  # as the sandbox seeds it
            started = time.monotonic()
            if case.name == "train/heldout_attn":
                predictions = S.held_out_call(reference, inputs, torch.device("cpu"))
                answers = S.held_out_reference(inputs)
                value = predictions.eq(answers).all(dim=1).float().mean().item()
                figure = f"exact-caption accuracy {value:.3f} (needs >= {case.min_accuracy})"
            else:
                cell = case.name.rsplit("_", 1)[1]
                value = S.overfit_loss(reference, inputs, torch.device("cpu"), cell)
                figure = f"final loss {value:.4f} (needs < {S.OVERFIT[cell]['target']})"
            print(f"{case.name:<22} base {base:<8} {figure}  "
                  f"{time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
