"""`python -m grader.selftest`: can this machine grade for credit? Gradescope's setup.sh runs
it while the image is built, so a host where no sandbox works fails the build, saying why,
instead of publishing zeros later.

It prints the mode workers would run in (namespace or container) and every limit that is
missing, then grades the reference of one case of each bundled assignment through the
sandbox (the worker checks its own isolation before it imports anything). Exit 0 when all
of that passed, 1 otherwise.
"""
import sys

from grader import paths
from grader.grade import grade
from grader.sandbox import Limits, sandbox_mode
from grader.suites import available, load_suite


def main() -> int:
    mode = sandbox_mode(Limits())
    if mode.problem:
        print(f"sandbox self-test FAILED: no sandbox can run student code here: {mode.problem}",
              file=sys.stderr)
        return 1
    for note in mode.notes:
        print(note)
    graded_any = False
    for assignment in available():
        if not (paths.SOLUTIONS / f"{assignment}.py").is_file():
            continue
        case = load_suite(assignment).select(None, training=False)[0]
        (verdict,) = grade(assignment, "solutions", cases=[case.name]).verdicts
        if not verdict.passed:
            print(f"sandbox self-test FAILED: the reference of {assignment} failed "
                  f"{case.name} in the sandbox: {verdict.message}", file=sys.stderr)
            return 1
        graded_any = True
    print(f"sandbox self-test passed ({mode.name} mode"
          + ("" if graded_any else "; no reference here to grade") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
