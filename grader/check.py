"""Inline checks for the notebooks: `check(module, "attention/causal")` prints pass or fail.

These run your code in the notebook's own process on the public fixture set (whose expected
values ship with the course), with the same comparison and hints as `make grade`. A float
output's "scaled error" is the largest |yours - expected| divided by the largest |expected|
in that output: rounding near zero does not count, a wrong formula does.
"""
import torch

from grader import paths
from grader.authoring import run_case
from grader.cases import judge
from grader.suites import load_suite

_public: dict = {}


def public_cases(assignment: str) -> dict:
    if assignment not in _public:
        _public[assignment] = torch.load(paths.fixture_file(assignment, "public"),
                                         weights_only=True)["cases"]
    return _public[assignment]


def library_shortcuts(module, suite) -> dict[str, str]:
    """{case: message} for cases whose part uses a library call it asks you to write (read
    from the module's source file, as the grader does; see grader/policy.py)."""
    from grader.policy import violations
    path = getattr(module, "__file__", None)
    try:
        source = open(path, "rb").read() if path else b""
    except OSError:
        source = b""
    return violations(source, suite) if source else {}


def check(module, *names: str, assignment: str | None = None) -> bool:
    """Run the named cases (a prefix such as "attention/" selects a group) on `module`."""
    assignment = assignment or module.__name__
    suite = load_suite(assignment)
    chosen = [c for c in suite if not c.is_training and
              (not names or any(c.name == n or c.name.startswith(n) for n in names))]
    if not chosen:
        raise ValueError(f"no case matches {names}; cases are: {', '.join(suite.cases)}")
    fixtures = public_cases(assignment)
    shortcuts = library_shortcuts(module, suite)
    all_passed = True
    for case in chosen:
        fixture = fixtures[case.name]
        if case.name in shortcuts:
            print(f"FAIL  {case.name}: {shortcuts[case.name]}")
            all_passed = False
            continue
        try:
            outputs = run_case(case, module, fixture["inputs"])
        except NotImplementedError:
            print(f"TODO  {case.name}: not implemented yet")
            all_passed = False
            continue
        except Exception as exc:  # noqa: BLE001 - show the learner one line, not a wall
            print(f"FAIL  {case.name}: {type(exc).__name__}: {exc}")
            all_passed = False
            continue
        v = judge(case, outputs, fixture["expected"], fixture.get("mutants"))
        error = f"scaled error {v.error:.1e} <= {v.tol:.0e}" if v.error is not None else ""
        print(f"PASS  {case.name} ({error})" if v.passed else f"FAIL  {case.name}: {v.message}")
        all_passed &= v.passed
    return all_passed
