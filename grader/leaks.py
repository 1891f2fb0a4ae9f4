"""`python -m grader leaks [A]`: nothing students receive or a submission can import computes
a graded answer.

For every student part of an assignment (the function or method around each `# BEGIN
SOLUTION` block), every function and method of the code students receive and the worker can
import (the packages the sandbox binds, `grader` and `dlkit`, and the skeletons
`assignments/*.py`) whose arity fits is plugged in as that part of the reference module
(every other part correct) and run, in this process, on the public cases that call the part
(they fail when only that part is missing, as in the skeleton). A candidate that passes one
of them is a leak.

Parts are plugged with the part's own calling convention: the arguments it receives, bound
to its signature, are passed on positionally, as many as the candidate takes (a loss written
as `def loss(a, b, tau, device=None): return formula(a, b, tau)` is found). To stay fast,
each candidate is first called once on the arguments the part received in the reference's
run; where the part returns plain data (tensors, numbers, strings and containers of them),
only a candidate that returns the same goes on to the cases. Each part is tried on the
three cheapest cases that call it (those that call it first preferred), leaving out any
that a part doing nothing passes (weights loaded over what an initialisation drew).

Candidates run on one torch thread, with file writes, process starts, sockets, signals and
sleeping disabled, on copies of the inputs, each under a time limit; a candidate that runs
out of time, or takes more than SLOW_PROBE on a part's smallest call (it loads data or
builds models), is not tried again, and is listed. The grader's process machinery (the
worker, the sandbox, its zygotes, cgroups and seccomp filter, batch grading, the command
line) is not a candidate: it starts processes and changes the process's own limits, filter
and descriptors, and holds no tensor code.
"""
import builtins
import contextlib
import copy
import functools
import importlib
import importlib.util
import inspect
import io
import os
import pkgutil
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

import torch

from grader import paths

PACKAGES = ("grader", "dlkit")   # what the sandbox binds (grader/isolation.py)
MACHINERY = {"grader.__main__", "grader.worker", "grader.sandbox", "grader.isolation",
             "grader.zygote", "grader.seccomp", "grader.cgroups", "grader.selftest",
             "grader.batch", "grader.cluster", "grader.leaks"}  # never candidates (see above)
TRIAL_SECONDS = 1                # a candidate taking longer is stopped (it is not a leak)
REFERENCE_SECONDS = 120          # the reference's own run of a case (a backstop)
MEMORY_BYTES = 2 << 30           # address space the check may add to what is mapped already
CASES_PER_PART = 3
SLOW_PROBE = 0.25                # seconds: a candidate this slow on a part's smallest call
                                 # loads or builds something (data, models), and is not
                                 # tried again
PART = re.compile(r'raise NotImplementedError\("([\w.]+): not implemented yet"\)')


@dataclass
class Leak:
    assignment: str
    part: str
    candidate: str
    case: str

    def __str__(self) -> str:
        return (f"{self.assignment}: {self.candidate} passes {self.case} in place of "
                f"{self.part}")


# ---------------------------------------------------------------------------------------
# What a student part is, and what it could be replaced by
# ---------------------------------------------------------------------------------------

def parts(assignment: str) -> list[str]:
    """The qualified names of the student parts, from the skeleton's stubs."""
    text = (paths.ASSIGNMENTS / f"{assignment}.py").read_text()
    return list(dict.fromkeys(PART.findall(text)))


def owner_of(module, part: str):
    """(object holding the part, attribute name): the module or the class."""
    owner, _, name = part.rpartition(".")
    return (getattr(module, owner) if owner else module), name


def surface_modules() -> list:
    """Every module of the packages the worker can import, and the skeletons."""
    found = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        found.append(package)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            if info.name not in MACHINERY:
                found.append(importlib.import_module(info.name))
    for path in sorted(paths.ASSIGNMENTS.glob("*.py")):
        name = f"skeleton_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up by name
        spec.loader.exec_module(module)
        found.append(module)
    return found


@functools.lru_cache(maxsize=None)
def candidates() -> tuple[tuple[str, object, bool], ...]:
    """Every function and method of the surface (see `candidates_of`)."""
    return candidates_of(surface_modules())


def candidates_of(modules) -> tuple[tuple[str, object, bool], ...]:
    """(name, function, is_method) of every function and method defined in `modules`."""
    found, seen = [], set()
    for module in modules:
        for name, obj in list(vars(module).items()):
            if getattr(obj, "__module__", None) != module.__name__:
                continue  # imported from elsewhere: listed where it is defined
            if inspect.isfunction(obj) and id(obj) not in seen:
                seen.add(id(obj))
                found.append((f"{module.__name__}.{name}", obj, False))
            elif inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    function = getattr(member, "__func__", member)
                    if inspect.isfunction(function) and id(function) not in seen:
                        seen.add(id(function))
                        method = not isinstance(member, (staticmethod, classmethod))
                        found.append((f"{module.__name__}.{name}.{attr}", function, method))
    return tuple(found)


def positional(function) -> tuple[int, float]:
    """(required, most) positional arguments a function takes."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return 0, -1
    required, most = 0, 0
    for p in parameters:
        if p.kind == p.VAR_POSITIONAL:
            most = float("inf")
        elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            most += 1
            required += p.default is p.empty
        elif p.kind == p.KEYWORD_ONLY and p.default is p.empty:
            return 0, -1  # needs a keyword the part cannot give it
    return required, most


def plugged(part_function, candidate, is_method_part: bool, is_method_candidate: bool):
    """`candidate` with the part's calling convention, or None when it cannot take the
    part's place (a method needs the part's instance)."""
    if is_method_candidate and not is_method_part:
        return None
    signature = inspect.signature(part_function)
    required, most = positional(candidate)
    own = [p for p in signature.parameters.values()
           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    given = len(own) - (is_method_part and not is_method_candidate)
    needed = sum(p.default is p.empty for p in own) - (is_method_part and not is_method_candidate)
    if most < 0 or required > given or most < needed:
        return None
    drop = 1 if is_method_part and not is_method_candidate else 0

    def replacement(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = [bound.arguments[p.name] for p in own][drop:]
        return candidate(*values[:int(min(most, len(values)))])
    return replacement


# ---------------------------------------------------------------------------------------
# Running candidates safely
# ---------------------------------------------------------------------------------------

class Refused(Exception):
    """A candidate tried to write, start a process, open a socket or sleep."""


def importing() -> bool:
    """True while a module is being imported (a lazy import inside a candidate's call: the
    library's own module code runs unrestricted, or its import would be left half done)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def guard(name: str, original, allowed=None):
    """`original`, refused (Refused) unless `allowed(*args)` or an import is running."""
    def guarded(*args, **kwargs):
        if (allowed is not None and allowed(*args, **kwargs)) or importing():
            return original(*args, **kwargs)
        raise Refused(f"{name} is not allowed while checking for leaks")
    return guarded


def reading(file=None, mode="r", *_args, **_kwargs) -> bool:
    """A path opened to read (a descriptor number is refused: closing the file object would
    close the process's own descriptor)."""
    return (isinstance(file, (str, bytes, os.PathLike)) and isinstance(mode, str)
            and not any(flag in mode for flag in "wax+"))


def reading_fd(path=None, flags=0, *_args, **_kwargs) -> bool:
    return not flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)


REFUSED = [(os, name) for name in (
    "remove", "unlink", "rmdir", "rename", "replace", "mkdir", "makedirs", "symlink", "link",
    "chmod", "chown", "truncate", "fork", "system", "kill", "killpg", "_exit", "setsid",
    "execv", "execve", "spawnv", "dup2", "close", "closerange", "setuid", "setgid",
    "setresuid", "setresgid", "setgroups", "chdir") if hasattr(os, name)]
REFUSED += [(shutil, name) for name in ("rmtree", "copy", "copy2", "copyfile", "copytree",
                                        "move")]
REFUSED += [(builtins, "input"), (subprocess.Popen, "__init__"), (socket.socket, "__init__"),
            (time, "sleep"), (torch, "save"), (resource, "setrlimit"), (signal, "signal"),
            (sys, "exit")]


@contextlib.contextmanager
def harmless():
    """File writes, process starts, sockets, signals, limits, sleeping and exiting raise
    `Refused` (reading files, and imports, go on)."""
    patches = [(builtins, "open", guard("open", builtins.open, reading)),
               (io, "open", guard("open", io.open, reading)),
               (os, "open", guard("os.open", os.open, reading_fd))]
    patches += [(owner, name, guard(name, getattr(owner, name))) for owner, name in REFUSED]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


class TimeUp(Exception):
    """A candidate ran past TRIAL_SECONDS."""


SET_SIGNAL = signal.signal  # harmless() refuses these to candidates, not to the check
SET_LIMIT = resource.setrlimit


@contextlib.contextmanager
def memory_cap(extra: int = MEMORY_BYTES):
    """Cap the address space at what is mapped now plus `extra`: a candidate that allocates
    without bound fails with MemoryError instead of taking the machine down."""
    mapped = 0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                mapped = int(line.split()[1]) * 1024
    before = resource.getrlimit(resource.RLIMIT_AS)
    limit = mapped + extra
    if before[1] != resource.RLIM_INFINITY:
        limit = min(limit, before[1])
    SET_LIMIT(resource.RLIMIT_AS, (limit, before[1]))
    try:
        yield
    finally:
        SET_LIMIT(resource.RLIMIT_AS, before)


@contextlib.contextmanager
def time_limit(seconds: int):
    def stop(*_):
        raise TimeUp()
    before = SET_SIGNAL(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        SET_SIGNAL(signal.SIGALRM, before)


@contextlib.contextmanager
def contained(seconds: int = TRIAL_SECONDS, trusted: bool = False):
    """A candidate's run: harmless (unless `trusted`: the reference's own run), time-limited,
    quiet, the process's torch settings restored."""
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    threads = torch.get_num_threads()
    try:
        quiet = io.StringIO()
        with time_limit(seconds), warnings.catch_warnings(), \
                contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            warnings.simplefilter("ignore")
            with contextlib.nullcontext() if trusted else harmless():
                yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
        torch.set_num_threads(threads)


def passes(case, module, fixture, trusted: bool = False) -> bool:
    """Whether `module` passes `case` on its public inputs (anything raised: it does not;
    running out of time raises TimeUp). `trusted`: the reference's own run, unguarded."""
    from grader.authoring import run_case
    from grader.cases import judge
    try:
        with contained(REFERENCE_SECONDS if trusted else TRIAL_SECONDS, trusted):
            outputs = run_case(case, module, copy.deepcopy(fixture["inputs"]))
        return judge(case, outputs, fixture["expected"]).passed
    except TimeUp:
        raise
    except (Exception, SystemExit):  # noqa: BLE001 - whatever goes wrong is a failed case
        return False


def plain(value) -> bool:
    """Tensors, numbers, strings, None and containers of them: comparable outputs."""
    if isinstance(value, (torch.Tensor, int, float, bool, str, type(None))):
        return True
    if isinstance(value, dict):
        return all(plain(v) for v in value.values())
    return isinstance(value, (list, tuple)) and all(plain(v) for v in value)


def same(got, want) -> bool:
    """`got` equals `want` (floats within 1e-6 of the tensor's scale)."""
    from grader.cases import scaled_error
    if isinstance(want, torch.Tensor):
        if not (type(got) is torch.Tensor and got.shape == want.shape
                and got.dtype == want.dtype):
            return False
        if want.is_floating_point():
            return bool(torch.isfinite(got).all()) and scaled_error(got, want) <= 1e-6
        return torch.equal(got.cpu(), want.cpu())
    if isinstance(want, dict):
        return (isinstance(got, dict) and got.keys() == want.keys()
                and all(same(got[k], want[k]) for k in want))
    if isinstance(want, (list, tuple)):
        return (isinstance(got, (list, tuple)) and len(got) == len(want)
                and all(same(g, w) for g, w in zip(got, want)))
    return type(got) is type(want) and got == want


# ---------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------

@dataclass
class Use:
    """How the reference's run uses one part: the cases that call it (cheapest, and those
    that call it first, first) and its smallest call's arguments and result."""
    cases: list
    call: tuple | None = None  # (args, kwargs, result), deep copies
    new: type | None = None    # a constructor's class: its call's first argument is a fresh
                               # instance of it (one whose __init__ has not run)
    working: tuple | None = None  # the copy of `call` the probes share (recopied if changed)
    working_print: object = None

    def arguments(self) -> tuple:
        """(args, kwargs) for one probe: the shared copy, unless a probe changed it."""
        if self.working is None or fingerprint(self.working) != self.working_print:
            self.working = copied(self.call[:2])
            self.working_print = fingerprint(self.working)
        args, kwargs = self.working
        if self.new is not None:
            args = (self.new.__new__(self.new), *args)
        return args, kwargs


def copied(value):
    """A deep copy in which tensors are detached clones (a tensor computed with autograd
    cannot be deep-copied), keeping whether they require gradients."""
    if isinstance(value, torch.Tensor):
        clone = value.detach().clone()
        return clone.requires_grad_(value.requires_grad) if clone.is_floating_point() else clone
    if type(value) in (dict, list, tuple):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        copies = {k: copied(v) for k, v in items}
        return copies if isinstance(value, dict) else type(value)(copies.values())
    return copy.deepcopy(value)


def fingerprint(value):
    """What an in-place change would alter: identities, tensor versions, attribute sets."""
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), value._version)
    if isinstance(value, torch.nn.Module):
        return ("module", id(value), tuple((k, id(v)) for k, v in vars(value).items()),
                tuple(fingerprint(t) for t in value.state_dict(keep_vars=True).values()))
    if isinstance(value, torch.Generator):
        return ("generator", id(value), value.get_state().numpy().tobytes())
    if isinstance(value, dict):
        return ("dict", id(value), tuple((k, fingerprint(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, id(value), tuple(fingerprint(v) for v in value))
    return ("object", id(value))


def size_of(value) -> int:
    """Bytes of the tensors in a value (containers and modules included)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, torch.nn.Module):
        return sum(size_of(t) for t in value.state_dict().values())
    if isinstance(value, dict):
        return sum(size_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(size_of(v) for v in value)
    return 0


def uses(assignment: str, module, cases, fixtures) -> dict[str, Use]:
    """Run every case once with the reference, recording which parts each one calls and the
    smallest call of each part (its arguments and result)."""
    order, smallest, originals = [], {}, {}
    for part in parts(assignment):
        owner, name = owner_of(module, part)
        originals[part] = (owner, name, vars(owner)[name])

        def recorder(*args, part=part, original=vars(owner)[name], **kwargs):
            if part not in order:
                order.append(part)
            constructor = part.endswith(".__init__")  # self is not initialised yet
            snapshot = recordable(part, (args[1:] if constructor else args, kwargs))
            result = original(*args, **kwargs)
            if snapshot is not None:
                try:
                    smallest[part] = (*snapshot, copied(result))
                except Exception:  # noqa: BLE001 - a result that cannot be copied: no probe
                    pass
            return result

        def recordable(part, call):
            """(size, args, kwargs) copied, when smaller than the part's recorded call."""
            try:
                size = size_of(call)
                if size < smallest.get(part, (float("inf"),))[0]:
                    return (size, *copied(call))
            except Exception:  # noqa: BLE001 - e.g. a module whose __init__ has not run
                pass
            return None
        setattr(owner, name, recorder)
    ranked = {part: [] for part in originals}
    try:
        for case in cases:
            order.clear()
            started = time.monotonic()
            passes(case, module, fixtures[case.name], trusted=True)
            seconds = time.monotonic() - started
            for rank, part in enumerate(order):
                ranked[part].append((rank > 0, seconds, case))
    finally:
        for owner, name, original in originals.values():
            setattr(owner, name, original)
    return {part: Use(grading(module, part, [c for *_, c in sorted(found, key=lambda r: r[:2])],
                              fixtures),
                      smallest[part][1:] if part in smallest else None,
                      originals[part][0] if part.endswith(".__init__") else None)
            for part, found in ranked.items()}


def grading(module, part: str, cases, fixtures) -> list:
    """The first CASES_PER_PART of `cases` that a part doing nothing fails: a case that
    passes without the part (it loads weights over what an initialisation drew) does not
    grade it."""
    owner, name = owner_of(module, part)
    original = vars(owner)[name]
    setattr(owner, name, lambda *args, **kwargs: None)
    try:
        chosen = []
        for case in cases:
            if len(chosen) == CASES_PER_PART:
                break
            if not passes(case, module, fixtures[case.name], trusted=True):
                chosen.append(case)
        return chosen
    finally:
        setattr(owner, name, original)


def answers_like(replacement, use: Use) -> bool:
    """False when the part returns plain data and the candidate, given the part's first
    recorded arguments, returns something else (it cannot stand in for the part)."""
    if use.call is None or not plain(use.call[2]):
        return True
    (args, kwargs), want = use.arguments(), use.call[2]
    try:
        with contained():
            return same(replacement(*args, **kwargs), want)
    except TimeUp:
        raise
    except (Exception, SystemExit):  # noqa: BLE001 - a candidate that fails is no answer
        return False


SLOW: set = set()  # candidates found slow, skipped from then on (in every assignment)


@dataclass
class Report:
    leaks: list
    slow: list   # candidates found slow in this check (each then skipped)
    tried: int   # (part, candidate) pairs run on cases
    probed: int = 0  # (part, candidate) pairs whose arity fits, called on the part's inputs


def check(assignment: str, progress=None) -> Report:
    """Every (part, candidate, case) where a candidate passes a case in place of the part."""
    from dlkit.utils import load_assignment
    from grader.authoring import one_thread
    from grader.check import public_cases
    from grader.suites import load_suite
    module = load_assignment(assignment, paths.SOLUTIONS)
    fixtures = public_cases(assignment)
    cases = [c for c in load_suite(assignment) if not c.is_training and c.name in fixtures]
    report = Report([], [], 0)
    pool = candidates()
    # One torch thread: an OpenMP thread started under memory_cap can fail to get its stack,
    # and libgomp then aborts the whole process.
    with torch.random.fork_rng(), one_thread(), memory_cap():
        for part, use in uses(assignment, module, cases, fixtures).items():
            owner, name = owner_of(module, part)
            original = vars(owner)[name]
            for label, function, is_method in pool:
                replacement = plugged(original, function, owner is not module, is_method)
                if replacement is None or not use.cases or label in SLOW:
                    continue
                setattr(owner, name, replacement)
                report.probed += 1
                try:
                    started = time.monotonic()
                    answers = answers_like(replacement, use)
                    if time.monotonic() - started > SLOW_PROBE:
                        SLOW.add(label)
                        report.slow.append(label)
                    if not answers:
                        continue
                    report.tried += 1
                    passed = next((c for c in use.cases
                                   if passes(c, module, fixtures[c.name])), None)
                except TimeUp:
                    SLOW.add(label)
                    report.slow.append(label)
                    continue
                finally:
                    setattr(owner, name, original)
                if passed is not None:
                    report.leaks.append(Leak(assignment, part, label, passed.name))
            if progress:
                progress(part)
    return report
