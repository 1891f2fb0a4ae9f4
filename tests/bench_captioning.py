"""Timings of the captioning suite with the reference solution, as the grader runs it.

    .venv/bin/python tests/bench_captioning.py            # everything (a few minutes on 2 cores)
    .venv/bin/python tests/bench_captioning.py --no-training
    .venv/bin/python tests/bench_captioning.py --calibrate 0 1000000 7   # raw figures

Prints the wall time of grading every non-training case (sandbox included), then, for each
training case, its result (the reference's held-out accuracy or whether the loss target was
met), its threshold and its wall time. A training case's `time_limit` should stay several
times above what is printed here.

--calibrate runs the training cases in this process (no sandbox) on the inputs of the given
fixture-set bases (0 = public, 1000000 = autograder, anything else = extra seeds), through
the same call -> weights -> evaluate -> judge path as the grader, and prints the raw figures
behind the thresholds: each overfit case's final loss, the held-out accuracy, the times.
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
    """Each training case in this process, as the sandboxed grader runs it: `call` trains and
    returns the weights, `evaluate` (the reference) measures them, `judge` decides."""
    import torch

    from dlkit.utils import load_assignment, seed_everything
    from grader import paths
    from grader.cases import judge
    reference = load_assignment("captioning", paths.SOLUTIONS)
    cpu = torch.device("cpu")
    for case in suite:
        if not case.is_training:
            continue
        for base in bases:
            inputs = case.inputs(torch.Generator().manual_seed(case.seed(base)))
            held_out = case.reference(inputs)
            seed_everything(case.seed(0))  # as the sandbox seeds it
            started = time.monotonic()
            weights = case.call(reference, inputs, cpu)
            trained = time.monotonic() - started
            seed_everything(case.seed(0))
            outputs = case.evaluate(reference, weights, held_out["data"], cpu)
            expected = held_out.get("labels", torch.zeros((), dtype=torch.float64))
            verdict = judge(case, outputs, expected)
            print(f"{case.name:<22} base {base:<8} {'pass' if verdict.passed else 'FAIL'}  "
                  f"{verdict.message}  training {trained:.1f} s, evaluation "
                  f"{time.monotonic() - started - trained:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
