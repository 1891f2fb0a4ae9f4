"""Inline checks for the notebooks: `check(module, "attention/causal")` prints pass or fail.

These run your code in the notebook's own process on the public fixture set (whose expected
values ship with the course), with the same comparison and hints as `make grade`. A float
output's "scaled error" is the largest |yours - expected| divided by the largest |expected|
in that output: rounding near zero does not count, a wrong formula does.
"""
from grader.authoring import run_case
from grader.cases import judge, matches
from grader.grade import load_fixture
from grader.suites import load_suite

_public: dict = {}


def public_cases(assignment: str) -> dict:
    if assignment not in _public:  # a missing or corrupt file is one line (GradingError)
        _public[assignment] = load_fixture(assignment, "public")
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
    """Run the named cases on `module`: each name is a case ("attention/head") or a group
    ending in "/" ("attention/"); no name runs every case that runs inline (not training)."""
    assignment = assignment or module.__name__
    suite = load_suite(assignment)
    inline = [c for c in suite if not c.is_training]
    unknown = [n for n in names if not any(matches(c.name, (n,)) for c in inline)]
    if unknown:
        raise ValueError(f"no case or group {', '.join(map(repr, unknown))}; cases are: "
                         f"{', '.join(c.name for c in inline)}")
    chosen = [c for c in inline if not names or matches(c.name, names)]
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
