"""Authoring (the instructor's side): student skeletons and fixtures from the reference.

Skeletons: every `# BEGIN SOLUTION` ... `# END SOLUTION` block of `solutions/<a>.py` becomes a
`raise NotImplementedError` with the block's `# HINT:` line as a TODO comment.

Fixtures: the reference runs on the CPU over each case's inputs, built from fixed seeds, and
the results are saved as tensors and plain containers (loadable with weights_only=True):

    public.pt               inputs + expected + known-mistake outputs (ships to students)
    autograder_inputs.pt    inputs of the autograder set, other seeds (ships to students)
    autograder_expected.pt  its expected values and known-mistake outputs (instructors only)
"""
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
    """The student version of a solution file's text."""
    out, scope, block = [HEADER.format(name=name)], [], None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if block is not None:
            if stripped == END:
                indent, hint = block
                qualname = ".".join(s for _, s in scope)
                if hint:
                    out.append(f"{indent}# TODO: {hint}\n")
                out.append(f'{indent}raise NotImplementedError("{qualname}: not implemented yet")\n')
                block = None
            elif stripped.startswith(BEGIN):
                raise AuthoringError(f"{name}.py:{number}: nested {BEGIN}")
            elif stripped.startswith(HINT) and not block[1]:
                block = (block[0], stripped[len(HINT):].strip())
            continue
        if stripped == BEGIN:
            block = (line[: len(line) - len(line.lstrip())], "")
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
                  if not p.stem.endswith("_mutants") and not p.stem.startswith("_"))


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
# Known mistakes ("mutants"): the solution with one small, plausible change
# ---------------------------------------------------------------------------------------

def mutants(assignment: str) -> dict:
    """`solutions/<a>_mutants.py`: MUTANTS = {name: (description, [(old, new), ...])}."""
    path = paths.SOLUTIONS / f"{assignment}_mutants.py"
    if not path.is_file():
        return {}
    spec = importlib.util.spec_from_file_location(f"{assignment}_mutants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MUTANTS


def mutant_source(assignment: str, mutant: str) -> str:
    """The solution's text with the mutant's replacements applied (each must match once)."""
    _, replacements = mutants(assignment)[mutant]
    source = (paths.SOLUTIONS / f"{assignment}.py").read_text()
    for old, new in replacements:
        if source.count(old) != 1:
            raise AuthoringError(f"mutant {mutant}: {old!r} occurs {source.count(old)} times "
                                 f"in solutions/{assignment}.py (must be exactly once)")
        source = source.replace(old, new)
    return source


def write_mutant(assignment: str, mutant: str, folder: Path) -> Path:
    """Write the mutant as `<folder>/<assignment>.py`, ready to grade with --impl folder."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{assignment}.py"
    target.write_text(mutant_source(assignment, mutant))
    return target


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------

def run_case(case, module, inputs):
    """Run one case in this process on the CPU, seeded as the sandbox seeds it."""
    seed_everything(case.seed(0))
    return case.call(module, inputs, torch.device("cpu"))


def build_fixtures(assignment: str) -> dict[str, dict]:
    """All three fixture files of an assignment, as objects, built on the CPU."""
    suite = load_suite(assignment)
    reference = load_assignment(assignment, paths.SOLUTIONS)
    with tempfile.TemporaryDirectory() as tmp:
        known = {}
        for name, (description, _) in mutants(assignment).items():
            write_mutant(assignment, name, Path(tmp) / name)
            known[name] = (description, load_assignment(assignment, Path(tmp) / name))
        sys.modules.pop(assignment, None)
        meta = {"assignment": assignment, "torch": torch.__version__.split("+")[0]}
        files = {"public": {"meta": meta, "cases": {}},
                 "autograder_inputs": {"meta": meta, "cases": {}},
                 "autograder_expected": {"meta": meta, "cases": {}}}
        for set_name, base in SETS.items():
            for case in suite:
                seed = case.seed(base)
                with torch.random.fork_rng():
                    inputs = case.inputs(torch.Generator().manual_seed(seed))
                expected = (case.reference(inputs) if case.reference
                            else run_case(case, reference, inputs))
                diagnosed = {} if case.is_training else mistake_outputs(case, known, inputs,
                                                                         expected)
                entry = {"seed": seed, "expected": expected, "mutants": diagnosed}
                if set_name == "public":
                    files["public"]["cases"][case.name] = {"inputs": inputs, **entry}
                else:
                    files["autograder_inputs"]["cases"][case.name] = {"inputs": inputs}
                    files["autograder_expected"]["cases"][case.name] = entry
    return files


def mistake_outputs(case, known: dict, inputs, expected) -> dict:
    """Outputs of each known mistake that differ from the reference on this case."""
    from grader.cases import distance, validate
    found = {}
    for name, (description, module) in known.items():
        try:
            outputs = run_case(case, module, inputs)
        except Exception:  # a mistake that crashes here has nothing to recognise
            continue
        if (validate(outputs, expected, finite=False) is None and informative(outputs)
                and distance(outputs, expected) > case.tol):
            found[name] = {"description": description, "outputs": outputs}
    return found


def informative(outputs) -> bool:
    """False when every floating value is NaN or Inf: many mistakes look alike then."""
    from grader.cases import leaves
    floats = [t for t in leaves(outputs) if t.is_floating_point()]
    return not floats or any(torch.isfinite(t).any() for t in floats)


def serialize(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def fixtures(assignment: str, check: bool) -> list[str]:
    """Write (or, with check, compare) the fixture files; returns the out-of-date ones."""
    stale = []
    for kind, obj in build_fixtures(assignment).items():
        path = paths.fixture_file(assignment, kind)
        data = serialize(obj)
        if path.is_file() and same_content(path, obj):
            continue
        stale.append(str(path.relative_to(paths.ROOT)))
        if not check:
            write_atomic(path, data)
    return stale


def same_content(path: Path, obj) -> bool:
    """Structural equality of a saved fixture with a freshly built one (exact tensors)."""
    return equal(torch.load(path, weights_only=True), obj)


def equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape):
            return False
        if a.is_floating_point():  # NaN where a known mistake produces NaN equals NaN
            return bool(((a == b) | (a.isnan() & b.isnan())).all())
        return torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
