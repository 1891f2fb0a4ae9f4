"""Authoring (the instructor's side): student skeletons and fixtures from the reference.

Skeletons: every `# BEGIN SOLUTION` ... `# END SOLUTION` block of `solutions/<a>.py` becomes a
`raise NotImplementedError` with the block's `# HINT:` line as a TODO comment.

Fixtures: the reference runs on the CPU over each case's inputs, built from fixed seeds, and
the results are saved as tensors and plain containers (loadable with weights_only=True):

    public.pt               inputs + expected + known-mistake outputs (ships to students)
    autograder_inputs.pt    inputs of the autograder set, other seeds (ships to students)
    autograder_expected.pt  its expected values and known-mistake outputs (instructors only)

Expected values come from the case's oracle in `solutions/<a>_oracles.py` when it has one
(formulas written independently of the reference, `torch.nn` layers with copied weights),
else from the reference. Oracles live beside the reference: the student bundle never holds
them and the sandbox cannot import them.
"""
import contextlib
import copy
import difflib
import functools
import importlib.util
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import torch

from dlkit.utils import load_assignment, seed_everything
from grader import paths
from grader.suites import load_suite

BEGIN, END, HINT = "# BEGIN SOLUTION", "# END SOLUTION", "# HINT:"
HEADER = ("# Generated from solutions/{name}.py by `python -m grader skeletons`.\n"
          "# Fill in every TODO; keep names, signatures and attribute names as they are.\n")
SETS = {"public": 0, "autograder": 1_000_000}
DEFINITION = re.compile(r"^(\s*)(?:def|class)\s+(\w+)")


class AuthoringError(Exception):
    """A problem in instructor material (markers, mutants): reported as one line."""


# ---------------------------------------------------------------------------------------
# Skeletons
# ---------------------------------------------------------------------------------------

def make_skeleton(source: str, name: str) -> str:
    """The student version of a solution file's text.

    A block's hint is its `# HINT:` line and the comment lines right after it that are
    indented past the `#` (`#       more of the hint`)."""
    out, scope, block = [HEADER.format(name=name)], [], None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if block is not None:
            indent, hint, open_hint = block
            if stripped == END:
                qualname = ".".join(s for _, s in scope)
                for i, text in enumerate(hint):
                    out.append(f"{indent}{'# TODO:' if i == 0 else '#      '} {text}\n")
                out.append(f'{indent}raise NotImplementedError("{qualname}: not implemented yet")\n')
                block = None
            elif stripped.startswith(BEGIN):
                raise AuthoringError(f"{name}.py:{number}: nested {BEGIN}")
            elif stripped.startswith(HINT) and not hint:
                block = (indent, [stripped[len(HINT):].strip()], True)
            elif open_hint and stripped.startswith("#  "):
                block = (indent, hint + [stripped[1:].strip()], True)
            else:
                block = (indent, hint, False)
            continue
        if stripped == BEGIN:
            block = (line[: len(line) - len(line.lstrip())], [], False)
            continue
        if stripped == END:
            raise AuthoringError(f"{name}.py:{number}: {END} without {BEGIN}")
        match = DEFINITION.match(line)
        if match:
            depth = len(match.group(1))
            scope = [(d, s) for d, s in scope if d < depth] + [(depth, match.group(2))]
        out.append(line)
    if block is not None:
        raise AuthoringError(f"{name}.py: {BEGIN} is never closed")
    return "".join(out)


def solution_names() -> list[str]:
    return sorted(p.stem for p in paths.SOLUTIONS.glob("*.py")
                  if not p.stem.endswith(("_mutants", "_equivalents", "_oracles"))
                  and not p.stem.startswith("_"))


def sync_text(generated: dict[Path, str], check: bool) -> list[str]:
    """Write each generated file whose content differs (unless `check`); returns them."""
    stale = []
    for target, text in generated.items():
        if target.is_file() and target.read_text() == text:
            continue
        stale.append(str(target.relative_to(paths.ROOT)))
        if not check:
            write_atomic(target, text.encode())
    return stale


def skeletons(check: bool) -> list[str]:
    """Write (or, with check, compare) every skeleton; returns the out-of-date file names."""
    return sync_text({paths.ASSIGNMENTS / f"{name}.py": make_skeleton(
        (paths.SOLUTIONS / f"{name}.py").read_text(), name) for name in solution_names()}, check)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(data)
    os.chmod(f.name, 0o644)
    Path(f.name).replace(path)


# ---------------------------------------------------------------------------------------
# Known mistakes ("mutants") and known-correct alternatives ("equivalents"): the solution
# with one small, plausible change
# ---------------------------------------------------------------------------------------

KINDS = {"mutants": "MUTANTS", "equivalents": "EQUIVALENTS"}


def variants(assignment: str, kind: str = "mutants") -> dict:
    """`solutions/<a>_<kind>.py`: {name: (description, [(old, new), ...])}.

    kind is "mutants" (MUTANTS: each must lose points and be named) or "equivalents"
    (EQUIVALENTS: correct code written another way; each must score 100%)."""
    path = paths.SOLUTIONS / f"{assignment}_{kind}.py"
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location(f"{assignment}_{kind}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, KINDS[kind])


def mutants(assignment: str) -> dict:
    return variants(assignment, "mutants")


def equivalents(assignment: str) -> dict:
    return variants(assignment, "equivalents")


def variant_source(assignment: str, name: str, kind: str = "mutants") -> str:
    """The solution's text with the variant's replacements applied (each must match once)."""
    known = variants(assignment, kind)
    if name not in known:
        raise AuthoringError(f"no {kind[:-1]} {name!r} in solutions/{assignment}_{kind}.py; "
                             f"known: {', '.join(known) or 'none'}")
    source, problem = applied(paths.SOLUTIONS / f"{assignment}.py", known[name][1])
    if problem:
        raise AuthoringError(f"{kind[:-1]} {name}: {problem.splitlines()[0]}")
    return source


def applied(reference: Path, replacements) -> tuple[str, str | None]:
    """(the reference's text with each (old, new) applied in turn, None), or (the text so
    far, why the first replacement that does not apply fails, with the closest lines)."""
    source = reference.read_text()
    for number, (old, new) in enumerate(replacements, start=1):
        if source.count(old) != 1:
            return source, (f"the text of replacement {number} occurs {source.count(old)} times "
                            f"in solutions/{reference.name} (must be exactly once)\n"
                            + closest_lines(source, old))
        source = source.replace(old, new)
    return source, None


def closest_lines(source: str, text: str) -> str:
    """The lines of `source` most like `text` (as many as `text` has), as a diff from
    `text` to them: what an edit of the reference changed under a variant."""
    lines, wanted = source.splitlines(), text.strip("\n").splitlines() or [text]
    width = len(wanted)
    scored = [(difflib.SequenceMatcher(None, "\n".join(wanted),
                                       "\n".join(lines[i:i + width])).ratio(), i)
              for i in range(max(1, len(lines) - width + 1))]
    _, start = max(scored, key=lambda item: (item[0], -item[1]))
    found = lines[start:start + width]
    diff = difflib.unified_diff(wanted, found, "the variant expects", "the reference has",
                                lineterm="", n=1)
    return (f"    closest: lines {start + 1}-{start + len(found)}\n"
            + "\n".join("    " + line for line in list(diff)[2:]))


def stale_variants(assignment: str) -> list[str]:
    """Every mutant and equivalent that no longer applies to the reference, each as
    "<kind> <name>: why" followed by the closest lines of the reference, as a diff."""
    reference = paths.SOLUTIONS / f"{assignment}.py"
    found = []
    for kind in KINDS:
        for name, (_, replacements) in variants(assignment, kind).items():
            _, problem = applied(reference, replacements)
            if problem:
                found.append(f"  {kind[:-1]} {name}: {problem}")
    return found


def mutant_source(assignment: str, mutant: str) -> str:
    return variant_source(assignment, mutant, "mutants")


def write_variant(assignment: str, name: str, folder: Path, kind: str = "mutants") -> Path:
    """Write the variant as `<folder>/<assignment>.py`, ready to grade with --impl folder."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{assignment}.py"
    target.write_text(variant_source(assignment, name, kind))
    return target


def write_mutant(assignment: str, mutant: str, folder: Path) -> Path:
    return write_variant(assignment, mutant, folder, "mutants")


def write_equivalent(assignment: str, name: str, folder: Path) -> Path:
    return write_variant(assignment, name, folder, "equivalents")


# ---------------------------------------------------------------------------------------
# Oracles: expected values computed without the reference (instructor side only)
# ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def oracle_module(assignment: str):
    """`solutions/<a>_oracles.py`, loaded once (None when the assignment has none)."""
    path = paths.SOLUTIONS / f"{assignment}_oracles.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"{assignment}_oracles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def oracles(assignment: str) -> dict:
    """{case name: callable(inputs) -> expected outputs} of `solutions/<a>_oracles.py`."""
    module = oracle_module(assignment)
    found = dict(getattr(module, "ORACLES", {})) if module else {}
    unknown = sorted(set(found) - set(load_suite(assignment).cases))
    if unknown:
        raise AuthoringError(f"solutions/{assignment}_oracles.py: ORACLES names no case "
                             f"{unknown[0]!r} of the suite")
    return found


def expected_outputs(case, inputs, reference, known_oracles: dict):
    """A case's expected values: its oracle's, else the case's own held-out split (training
    cases' `reference`), else the reference module's outputs."""
    if case.name in known_oracles:
        return known_oracles[case.name](inputs)
    if case.reference:
        return case.reference(inputs)
    return run_on_copy(case, reference, inputs)[0]


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------

def run_case(case, module, inputs):
    """Run one case in this process on the CPU, seeded as the sandbox seeds it."""
    seed_everything(case.seed(0))
    return case.call(module, inputs, torch.device("cpu"))


def run_on_copy(case, module, inputs):
    """(outputs, message or None): `run_case` on a copy of `inputs`, and whether the code
    changed that copy (`cases.changed_input`), as the sandbox checks a student's code; the
    inputs themselves (a fixture's, shared by many runs) are never touched."""
    from grader.cases import changed_input, input_tensors
    given = copy.deepcopy(inputs)
    received = [tensor for _, tensor in input_tensors(given)]
    outputs = run_case(case, module, given)
    return outputs, changed_input(inputs, received)


def case_inputs(case, seed: int, set_name: str = "") -> dict:
    """The case's inputs from its seeded generator (the global RNG left untouched); in the
    public set, the source homework's own example where the case replays one."""
    with torch.random.fork_rng():
        if set_name == "public" and case.source_inputs is not None:
            return case.source_inputs()
        return case.inputs(torch.Generator().manual_seed(seed))


def load_variants(assignment: str, kind: str, folder: Path) -> dict:
    """{name: (description, module)} of every mutant or equivalent, written under `folder`."""
    loaded = {}
    for name, (description, _) in variants(assignment, kind).items():
        write_variant(assignment, name, folder / kind / name, kind)
        loaded[name] = (description, load_assignment(assignment, folder / kind / name))
    sys.modules.pop(assignment, None)
    return loaded


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: results then do not depend on the machine's core count, and
    the many small kernels of fixtures and audits run faster than with contended threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_fixtures(assignment: str, ran=None) -> dict[str, dict]:
    """All three fixture files of an assignment, as objects, built on the CPU.

    ran(set_name, case_name, mutant) -> `audit.run_here`'s (outputs, error, changed) of that
    mutant on that set's inputs, when the caller has them already (the tests do); by default
    every mutant runs here."""
    with one_thread():
        return build_fixture_objects(assignment, ran)


def build_fixture_objects(assignment: str, ran=None) -> dict[str, dict]:
    suite = load_suite(assignment)
    reference = load_assignment(assignment, paths.SOLUTIONS)
    known_oracles = oracles(assignment)
    with tempfile.TemporaryDirectory() as tmp:
        known = load_variants(assignment, "mutants", Path(tmp))
        meta = {"assignment": assignment, "torch": torch.__version__.split("+")[0]}
        files = {"public": {"meta": meta, "cases": {}},
                 "autograder_inputs": {"meta": meta, "cases": {}},
                 "autograder_expected": {"meta": meta, "cases": {}}}
        for set_name, base in SETS.items():
            for case in suite:
                seed = case.seed(base)
                inputs = case_inputs(case, seed, set_name)
                expected = expected_outputs(case, inputs, reference, known_oracles)
                diagnosed = {} if case.is_training else mistake_outputs(
                    case, known, inputs, expected,
                    ran and functools.partial(ran, set_name, case.name))
                entry = {"seed": seed, "expected": expected, "mutants": diagnosed}
                if set_name == "public":
                    files["public"]["cases"][case.name] = {"inputs": inputs, **entry}
                else:
                    files["autograder_inputs"]["cases"][case.name] = {"inputs": inputs}
                    files["autograder_expected"]["cases"][case.name] = entry
    return files


def mistake_outputs(case, known: dict, inputs, expected, ran=None) -> dict:
    """Outputs of each known mistake that differ from the reference on this case (a wrong
    shape or dtype included: a `.squeeze()` that drops a batch of one is named too).
    ran(mutant) -> (outputs, error, changed) of a run made already."""
    from grader.audit import run_here
    from grader.cases import distance, only_tensors, validate
    found = {}
    for name, (description, module) in known.items():
        outputs, error, _ = ran(name) if ran else run_here(case, module, inputs)
        if error is not None:  # a mistake that crashes here has nothing to recognise
            continue
        if not only_tensors(outputs) or not informative(outputs):
            continue
        if (validate(outputs, expected, finite=False) is not None
                or distance(outputs, expected) > case.tol):
            found[name] = {"description": description, "outputs": outputs}
    return found


def informative(outputs) -> bool:
    """False when every floating value is NaN or Inf: many mistakes look alike then."""
    from grader.cases import leaves
    floats = [t for _, t in leaves(outputs) if t.is_floating_point()]
    return not floats or any(torch.isfinite(t).any() for t in floats)


def serialize(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


DRIFT = 100   # fixtures --check allows floats to move by a case's tolerance / DRIFT,
ULPS = 16     # or by 16 units of the dtype's precision at the tensor's scale, if larger


def fixtures(assignment: str, check: bool, ran=None) -> tuple[list[str], float]:
    """Write (or, with check, compare) the fixture files (`ran`: see `build_fixtures`).

    Returns the out-of-date files and the largest rounding drift (as a fraction of its
    case's tolerance) between the saved and the rebuilt floats. Float kernels round
    differently on other CPUs, so floats may drift by up to tol / DRIFT (or ULPS units of
    their dtype's precision, for tolerances close to it); structure, integers and booleans
    must be identical.
    """
    suite = load_suite(assignment)
    stale, largest = [], 0.0
    for kind, obj in build_fixtures(assignment, ran).items():
        path = paths.fixture_file(assignment, kind)
        problem = "missing"
        if path.is_file():
            try:
                saved = torch.load(path, weights_only=True)
            except Exception as exc:  # noqa: BLE001 - truncated or not a torch file: rebuild
                saved, problem = None, f"unreadable: {type(exc).__name__}"
            if saved is not None:
                problem, drift = fixture_difference(saved, obj, suite)
                largest = max(largest, drift)
        if problem is None:
            continue
        stale.append(f"{paths.shown(path)} ({problem})")
        if not check:
            write_atomic(path, serialize(obj))
    return stale, largest


def fixture_difference(saved: dict, built: dict, suite) -> tuple[str | None, float]:
    """(None or where the files differ, largest drift / tolerance) of two fixture objects."""
    if type(saved) is not dict or type(saved.get("cases")) is not dict:
        return "not a fixture file", 0.0
    if saved.keys() != built.keys() or saved.get("meta") != built.get("meta"):
        return "metadata differs", 0.0
    if saved["cases"].keys() != built["cases"].keys():
        return "the set of cases differs", 0.0
    largest = 0.0
    for name, entry in built["cases"].items():
        tol = suite[name].tol if name in suite.cases else 0.0
        problem, drift = compare(saved["cases"][name], entry, tol / DRIFT, name)
        largest = max(largest, drift / tol if tol else 0.0)
        if problem:
            return problem, largest
    return None, largest


def compare(a, b, allowed: float, where: str) -> tuple[str | None, float]:
    """Structural comparison; floats may differ by `allowed` (scaled error) or ULPS units
    of their precision. Returns the first difference (or None) and the largest drift."""
    from grader.cases import scaled_error
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape):
            return f"{where}: type, dtype or shape differs", 0.0
        if not a.is_floating_point():
            return (None if torch.equal(a, b) else f"{where}: values differ"), 0.0
        if not torch.equal(a.isnan(), b.isnan()) or not torch.equal(a.isinf(), b.isinf()):
            return f"{where}: NaN or Inf in other places", 0.0
        finite = torch.isfinite(a)
        drift = scaled_error(a[finite], b[finite]) if finite.any() else 0.0
        limit = max(allowed, ULPS * torch.finfo(a.dtype).eps)
        return (f"{where}: floats moved by {drift:.1e} (> {limit:.0e})" if drift > limit
                else None), drift
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: keys differ", 0.0
        pairs = [(a[k], b[k], f"{where}.{k}") for k in a]
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: lengths differ", 0.0
        pairs = [(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b))]
    else:
        return (None if type(a) is type(b) and a == b else f"{where}: {a!r} != {b!r}"), 0.0
    largest = 0.0
    for x, y, inner in pairs:
        problem, drift = compare(x, y, allowed, inner)
        largest = max(largest, drift)
        if problem:
            return problem, largest
    return None, largest
