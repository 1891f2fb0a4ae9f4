"""Executing: student code runs only in a sandboxed worker process (grader/worker.py).

Each worker is forked from a zygote (grader/zygote.py: torch already imported, no student
code ever) and runs in one of two modes, with one contract:

- namespace mode (bubblewrap works): the zygote lives in an allowlisted read-only root with
  a private /tmp, /dev/shm and /proc, its own PID, network, IPC and UTS namespaces
  (grader/isolation.py); each worker switches to a per-run uid (as root);
- container mode (root, but no namespaces: Gradescope, Docker): each worker runs as a fresh
  unprivileged uid on the host's root, with the grader's secrets made root-only and network
  sockets refused by the seccomp filter; what it leaves in /tmp and /dev/shm is removed.

Both: a cgroup per worker (memory with children and shared memory, tasks, CPU) where the
host allows it (grader/cgroups.py), the seccomp filter (grader/seccomp.py), rlimits, no
capabilities, a minimal environment and no descriptor but its channel. The worker checks
that isolation holds, and only then compiles the module and runs its cases, sending one
frame per reply (grader/worker_protocol.py: bounded before it is read, nothing that can
execute or inflate). A worker that dies, hangs or floods costs the case it was on; a fresh
worker goes on with the next case; after two time-outs in a row the rest are not run.

If no mode works, no student code runs: every case reports "sandbox unavailable: <why>".
`Limits(insecure=True)` (`grade --insecure`) runs with limits only; `None` (what `make
grade` passes) does so only where there is nothing to protect (the student bundle).
"""
import functools
import math
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from grader import cgroups, isolation, seccomp, zygote
from grader.worker_protocol import (MAX_DEPTH, Closed, TimedOut, WireError, decode, encode,
                                    read_frame)

# Test-only suites: {assignment: path of a file defining `suite`}, sent into the worker.
EXTRA_SUITES: dict = {}
LIMITS_ONLY = "limits only"
BUDGET_FACTOR = 0.5  # a submission's default budget: this share of its cases' time limits
TIMEOUTS_IN_A_ROW = 2  # then the remaining cases are not run
NOT_RUN = "not run: earlier cases hit the time limit"


@dataclass
class Limits:
    """Per-worker resource limits. Times are seconds, sizes bytes."""
    memory: int = 4 << 30          # the worker's cgroup (children, shared memory and tmpfs
    #                                files included), and address space per process on top
    #                                of what torch already maps
    output: int = 64 << 20         # bytes of one case's outputs (checked before reading)
    processes: int = 64            # tasks (processes + threads) of one worker
    import_time: float = 60.0      # starting the worker and importing the student module
    case_time: float | None = None  # caps every case's own time limit (tests, quick runs)
    submission_time: float | None = None  # total for all of a submission's cases
    threads: int = 0               # torch intra-op threads; 0 keeps torch's default
    cpu_share: float | None = None  # cores the worker's cgroup may use; None: `threads` (or
    #                                every core). The tests hold training cases to 2/3: what
    #                                a 2-core machine leaves one beside two busy processes
    tmp_bytes: int = 256 << 20     # size of the private /tmp and of /dev/shm
    file_bytes: int = 256 << 20    # largest file the worker may write
    insecure: bool | None = False  # True: limits only; None: only where nothing is secret
    mode: str = "auto"             # auto | namespace | container

    def case_limit(self, case) -> float:
        return min(case.time_limit, self.case_time or case.time_limit)


def submission_budget(cases, limits: Limits) -> float:
    """The default total time of one submission (grade, Gradescope and batch alike): the
    time to start plus half the sum of its cases' time limits, training included. Correct
    code stays far below it (each limit is a generous backstop); two time-outs in a row
    end a submission long before it."""
    return limits.import_time + BUDGET_FACTOR * sum(limits.case_limit(c) for c in cases)


@dataclass
class Result:
    """What came back for one case: outputs, or a one-line reason why not."""
    outputs: object = None
    error: str | None = None
    seconds: float = 0.0
    todo: bool = False
    timed_out: bool = False
    inputs: list | None = None  # the input tensors after the call, as the code left them


@dataclass
class Mode:
    """How workers run here: `name` is namespace, container or limits only; `problem` says
    why none may run (then no student code runs); `notes` are one line each for the report."""
    name: str
    problem: str | None = None
    notes: list = field(default_factory=list)

    @property
    def secure(self) -> bool:
        return self.name in ("namespace", "container")


def sandbox_mode(limits: Limits) -> Mode:
    """The mode workers run in: namespace mode where bubblewrap works, else container mode
    where the grader is root, else none (or limits only where nothing is secret)."""
    if limits.insecure is True:
        return Mode(LIMITS_ONLY, notes=["insecure: running submissions with limits only "
                                        "(--insecure)"])
    problems = []
    if limits.mode in ("auto", "namespace"):
        problem = isolation.probe()
        if problem is None:
            return Mode("namespace", notes=["sandbox: namespace mode (bubblewrap)",
                                            *missing_limits(True)])
        problems.append(problem)
    if limits.mode in ("auto", "container"):
        problem = isolation.container_problem()
        if problem is None:
            why = f" ({problems[0]})" if problems else ""
            return Mode("container", notes=[f"sandbox: container mode{why}: each worker runs "
                                            "as a fresh uid", *missing_limits(False),
                                            *isolation.unreadable_interpreter()])
        problems.append(problem)
    why = "; ".join(problems)
    if limits.insecure is None and isolation.nothing_to_protect():
        return Mode(LIMITS_ONLY, notes=[f"sandbox unavailable ({why}): grading with limits "
                                        "only, as nothing here is secret (student bundle)"])
    return Mode("unavailable", problem=why)


class NoSandbox(Exception):
    """No mode can run student code here: one line for staff (the CLI exits 3)."""


def require_sandbox(limits: Limits) -> None:
    """Raise NoSandbox before anything is graded when no mode can run student code."""
    problem = sandbox_mode(limits).problem
    if problem:
        raise NoSandbox(f"sandbox unavailable: {problem}. No student code ran and no "
                        "results were written; fix the grading host (see README, Security)")


def missing_limits(with_seccomp: bool) -> list[str]:
    """One line per limit this host cannot enforce (container mode requires the filter)."""
    found = [cgroups.missing()] + ([seccomp.missing()] if with_seccomp else [])
    return [f"limits: {line}" for line in found if line]


@functools.lru_cache(maxsize=None)
def protect_secrets_once() -> None:
    isolation.protect_secrets()


def run_cases(assignment: str, module_path, jobs: list, *, device: str = "cpu",
              limits: Limits | None = None, progress=None, mode: str = "call",
              on_result=None) -> dict:
    """Run `jobs` = [(case, inputs)] against the module at `module_path` in sandboxed workers.

    Returns {case name: Result} (or what `on_result(case, Result)` returns for each, called
    as soon as its reply arrives, so outputs can be judged and dropped). Never raises for
    anything the student code does. `progress(name)` is called after each case. `mode`:
    "call" (case.call) or "evaluate" (case.evaluate; inputs are {"weights", "data"}).
    """
    limits = limits or Limits()
    source = read_source(module_path)
    results, pending, in_a_row = {}, list(jobs), [0]
    total = limits.submission_time
    budget_end = time.monotonic() + total if total else math.inf

    def settle(case, result):
        result.error = clean_message(result.error) if result.error is not None else None
        in_a_row[0] = in_a_row[0] + 1 if result.timed_out else 0
        results[case.name] = on_result(case, result) if on_result else result
        if progress:
            progress(case.name)

    while pending:
        if time.monotonic() >= budget_end:
            for case, _ in pending:
                settle(case, Result(error=f"not run: the submission's total time budget "
                                          f"({total:.0f} s) ran out"))
            break
        if in_a_row[0] >= TIMEOUTS_IN_A_ROW:
            for case, _ in pending:
                settle(case, Result(error=NOT_RUN))
            break
        done = run_worker(assignment, source, pending, device, limits, mode, budget_end,
                          settle)
        pending = pending[done:]
    return results


def cpu_limits(jobs, device: str) -> dict:
    """Each case's CPU-second limit (`Case.cpu_time`), on the CPU only: on a GPU the host's
    CPU time counts kernel launches and waits, not work, and the wall-clock limit applies."""
    if str(device) != "cpu":
        return {}
    return {c.name: c.cpu_time for c, _ in jobs if c.cpu_time}


def run_worker(assignment, source, jobs, device, limits, kind, budget_end, settle) -> int:
    """One worker for `jobs`; returns how many of them were settled."""
    mode = sandbox_mode(limits)
    if mode.problem:
        for case, _ in jobs:
            settle(case, Result(error=f"sandbox unavailable: {mode.problem}"))
        return len(jobs)
    worker = Worker(mode, kind, limits)
    try:
        try:
            worker.start(assignment, source, jobs, device)
        except OSError as exc:  # a full disk, a worker gone before it was placed
            raise isolation.Unavailable(f"could not start the worker ({exc})") from None
        return worker.collect(jobs, budget_end, settle)
    except isolation.Unavailable as exc:
        for case, _ in jobs:
            settle(case, Result(error=f"sandbox unavailable: {exc}"))
        return len(jobs)
    finally:
        worker.stop()


class Worker:
    """A worker forked from a zygote, and the grader's end of its channel."""

    def __init__(self, mode: Mode, kind: str, limits: Limits):
        self.mode, self.kind, self.limits = mode, kind, limits
        self.zygote = self.uid = self.cgroup = self.job = self.channel = self.pid = None

    def start(self, assignment, source, jobs, device) -> None:
        """Job folder, uid, cgroup; fork from the zygote; move the worker into its cgroup."""
        limits, mode = self.limits, self.mode
        own_uid = mode.secure and os.geteuid() == 0
        if mode.name == "container":
            protect_secrets_once()
        if own_uid:
            self.uid = isolation.RunUid()
        uid = self.uid.uid if self.uid else None
        key = zygote.Key(mode.name, device, limits.threads, limits.tmp_bytes,
                         filtered=mode.secure and seccomp.missing() is None)
        self.zygote = zygote.checkout(key, reusable=own_uid)
        self.job = isolation.job_folder(uid)
        self.write_job(assignment, source, jobs, uid)
        if mode.secure and cgroups.hierarchy() and cgroups.hierarchy().bases:
            try:
                self.cgroup = cgroups.Cgroup(limits.memory, limits.processes,
                                             limits.cpu_share or limits.threads
                                             or os.cpu_count() or 1)
            except OSError:
                self.cgroup = None  # named by missing_limits() when it is the host's doing
        config = self.config(assignment, jobs, device, uid)
        self.channel, theirs = socket.socketpair()
        if hasattr(socket, "SO_PASSCRED"):
            self.channel.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        try:
            seen_by_zygote = self.zygote.fork(config, theirs)
        except zygote.Failed as exc:
            raise isolation.Unavailable(f"the zygote failed ({exc})") from None
        finally:
            theirs.close()  # only the worker holds its end: EOF means it is gone
        self.pid = self.hello(time.monotonic() + limits.import_time) or seen_by_zygote
        if self.cgroup:
            self.cgroup.add(self.pid)
        self.channel.sendall(b"G")

    def write_job(self, assignment, source, jobs, uid) -> None:
        """The job folder: the module, the work (inputs only), a test suite if any."""
        if source is not None:
            isolation.write_job_file(self.job, f"{assignment}.py", source, uid)
        if self.kind == "decode":  # the file to decode, and no jobs
            isolation.write_job_file(self.job, "outputs.pt", jobs[0][1], uid)
            work = []
        else:
            work = [(case.name, inputs, case.seed(0)) for case, inputs in jobs]
        isolation.write_job_file(self.job, "work.bin", encode(work, 1 << 40), uid)
        if assignment in EXTRA_SUITES:
            isolation.write_job_file(self.job, "suite.py",
                                     Path(EXTRA_SUITES[assignment]).read_bytes(), uid)

    def config(self, assignment, jobs, device, uid) -> dict:
        """What the worker is told: its job, its limits, and what isolation to check."""
        limits, name = self.limits, self.mode.name
        cores = os.cpu_count() or 1
        cpu_seconds = int((limits.import_time + sum(c.time_limit for c, _ in jobs)) * cores) + 1
        inside = f"{isolation.JOB}/{os.path.basename(self.job)}" if name == "namespace" \
            else self.job
        forbidden = isolation.forbidden_paths() if self.mode.secure else []
        if name == "container":
            forbidden += isolation.held_out_data_files()
        pids_cgroup = self.cgroup is not None and self.cgroup.found.base("pids") is not None
        return {"assignment": assignment, "mode": self.kind, "device": device,
                "threads": limits.threads, "memory": limits.memory, "cpu_seconds": cpu_seconds,
                "cpu_limits": cpu_limits(jobs, device),
                "file_bytes": limits.file_bytes, "processes": limits.processes,
                "nproc": uid is not None and not pids_cgroup, "output_bytes": limits.output,
                "suite_file": assignment in EXTRA_SUITES, "uid": uid, "secure": self.mode.secure,
                "sandbox": name, "job": inside, "forbidden": forbidden,
                "grader_pid_namespace": os.readlink("/proc/self/ns/pid") if
                os.path.exists("/proc/self/ns/pid") else None,
                "seccomp": self.mode.secure and seccomp.missing() is None,
                "env": {"HOME": "/tmp"} if name == "namespace" else
                {"HOME": inside, "TMPDIR": inside},
                "cwd": "/tmp" if name == "namespace" else inside}

    def hello(self, deadline: float) -> int | None:
        """The worker's pid as this process sees it (the kernel translates it across PID
        namespaces), from the credentials of its first message; None where the system has
        no such credentials (limits only, not Linux: the zygote's pid is the same)."""
        if not select.select([self.channel], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise isolation.Unavailable("the worker did not start")
        size = socket.CMSG_SPACE(struct.calcsize("3i"))
        greeting, ancillary, _, _ = self.channel.recvmsg(1, size)
        if greeting != b"H":
            raise isolation.Unavailable("the worker did not start")
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == getattr(socket, "SCM_CREDENTIALS", None):
                return struct.unpack("3i", data[:struct.calcsize("3i")])[0]
        if self.mode.name == "namespace":  # the zygote's pid would be inside its namespace
            raise isolation.Unavailable("the worker's pid could not be learned")
        return None

    def receive(self, deadline: float):
        header, payload = read_frame(self.channel, deadline, self.limits.output)
        body = decode(header, payload)
        if type(body) is not dict:
            raise WireError("malformed reply")
        return body

    def collect(self, jobs, budget_end, settle) -> int:
        """Read replies until the worker finishes or fails; returns how many jobs settled."""
        limits = self.limits
        started = time.monotonic()
        stage = "start"
        try:
            deadline = min(started + limits.import_time, budget_end)
            while True:
                body = self.receive(deadline)
                status = body.get("status")
                if status == "isolated":
                    stage = "import"
                    continue
                break
        except (TimedOut, Closed, WireError) as exc:
            reason = self.start_failure(exc, stage, deadline == budget_end)
            for case, _ in jobs:
                settle(case, Result(error=reason))
            return len(jobs)
        if self.kind == "decode" and stage == "import":
            ok = status == "ok"
            settle(jobs[0][0], Result(outputs=body.get("outputs")) if ok else
                   Result(error=str(body.get("message"))[:500]))
            return 1
        if status == "unavailable" and stage == "start":
            reason = f"sandbox unavailable: {str(body.get('message'))[:300]}"
        elif status != "ready":
            reason = str(body.get("message", "could not import the module"))[:500]
        if status != "ready":
            for case, _ in jobs:
                settle(case, Result(error=reason))
            return len(jobs)
        for index, (case, _) in enumerate(jobs):
            case_started = time.monotonic()
            budget = limits.case_limit(case)
            result, fit = self.one_case(case, case_started + budget, budget, budget_end)
            result.seconds = time.monotonic() - case_started
            settle(case, result)
            if not fit:
                return index + 1  # a crash may have left debris: a fresh worker goes on
        return len(jobs)

    def one_case(self, case, deadline, budget, budget_end) -> tuple[Result, bool]:
        """The case's result, and whether the worker is still fit to go on."""
        progress = None
        while True:
            try:
                body = self.receive(min(deadline, budget_end))
            except TimedOut:
                if budget_end < deadline and time.monotonic() >= budget_end:
                    return Result(error="the submission's total time budget ran out"
                                  + progress_text(progress)), False
                return Result(error=f"time limit exceeded ({budget:.0f} s)"
                              + progress_text(progress), timed_out=True), False
            except Closed:
                return Result(error=self.exit_reason(case) + progress_text(progress)), False
            except WireError as exc:
                return Result(error=f"returned something that is not plain tensors ({exc})"), False
            if body.get("status") == "progress" and body.get("case") == case.name:
                progress = body
                continue
            break
        if body.get("case") != case.name:
            return Result(error="the worker sent a malformed reply"), False
        status = body.get("status")
        if status == "ok":
            return Result(outputs=body.get("outputs"), inputs=body.get("inputs")), True
        message = str(body.get("message"))[:500]
        return Result(error=message, todo=status == "todo"), status == "todo"

    def start_failure(self, exc, stage, budget_ran_out) -> str:
        """Why a worker never became ready: the sandbox, the import, or the time budget."""
        limits = self.limits
        if isinstance(exc, TimedOut) and budget_ran_out:
            return "the submission's total time budget ran out"
        if stage == "start":
            if isinstance(exc, TimedOut):
                return f"the worker did not start within {limits.import_time:.0f} s"
            return f"sandbox unavailable: {self.exit_reason()}"
        if isinstance(exc, TimedOut):
            return f"importing the module took longer than {limits.import_time:.0f} s"
        if isinstance(exc, Closed):
            return f"importing the module ended the process: {self.exit_reason()}"
        return f"importing the module failed: malformed reply ({exc})"

    def exit_reason(self, case=None) -> str:
        status = self.zygote.wait(2.0)
        if status is None:
            return "the process stopped answering"
        if os.WIFSIGNALED(status):
            number = os.WTERMSIG(status)
            name = signal.Signals(number).name if number in signal.valid_signals() else number
            if number == signal.SIGKILL and self.cgroup and self.cgroup.oom_killed():
                return (f"the process was killed ({name}): out of memory (the submission's "
                        f"{self.limits.memory >> 20} MiB, child processes and shared memory "
                        "included)")
            if number == signal.SIGKILL:
                return f"the process was killed ({name}): out of memory or a resource limit"
            if number == signal.SIGXCPU and case is not None and case.cpu_time:
                return (f"the process was killed ({name}): the case used more than its "
                        f"{case.cpu_time:.0f} s of CPU time (one thread, a fixed number of "
                        "steps: the reference needs a small part of it)")
            if number == signal.SIGXCPU:
                return f"the process was killed ({name}): CPU time limit"
            return f"the process died from signal {name}"
        code = os.WEXITSTATUS(status)
        return f"the process exited (code {code}) in the middle of the case (sys.exit / os._exit?)"

    def stop(self) -> None:
        """Kill every process of the worker, remove what it left, free its uid and cgroup;
        the zygote goes back to the pool only if all of that is certain."""
        if self.cgroup:
            self.cgroup.kill()
        clean = False
        if self.zygote is not None:
            if self.uid is not None and self.zygote.reusable:
                clean = self.zygote.clean(self.uid.uid)
            elif self.pid is not None:
                kill_group(self.pid)  # limits only: the worker's own session
            zygote.checkin(self.zygote, clean)  # stopped unless clean: with it its sandbox
        if self.uid is not None and not clean and self.mode.name == "container":
            isolation.remove_traces(self.uid.uid)  # no PID namespace died with the zygote
        if self.cgroup:
            self.cgroup.remove()
        if self.uid is not None:
            self.uid.release()
        if self.job:
            shutil.rmtree(self.job, ignore_errors=True)
        if self.channel:
            self.channel.close()


def kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def progress_text(progress) -> str:
    if not progress:
        return ""
    text = f" at step {progress.get('step')}/{progress.get('of')}"
    loss = progress.get("loss")
    return text + (f", loss {loss:.3g}" if isinstance(loss, float) else "")


def decode_outputs_file(data: bytes, limits: Limits | None = None) -> tuple[dict | None, str | None]:
    """A submitted autograder.pt, decoded in a worker (no student code runs there, but its
    unpickling is untrusted work): ({case: outputs}, None) or (None, why not)."""
    from grader.cases import Case
    limits = limits or Limits()
    job = Case("decode", 0, inputs=lambda g: {}, call=lambda m, x, d: None, time_limit=60.0)
    got = {}

    def keep(case, result):
        got["result"] = result

    loose = Limits(**{**limits.__dict__, "insecure": limits.insecure})
    if sandbox_mode(loose).problem:  # no sandbox: still a separate, limited process
        loose.insecure = True
    run_worker("decode", None, [(job, data)], "cpu", loose, "decode", math.inf, keep)
    result = got["result"]
    if result.error is not None:
        return None, clean_message(result.error)
    if type(result.outputs) is not dict:
        return None, "the outputs file is not a dict"
    return result.outputs, None


# ---------------------------------------------------------------------------------------
# Used inside the worker
# ---------------------------------------------------------------------------------------

_progress_sender = None
_progress_last = 0.0


def start_progress(sender) -> None:
    """Set by the worker around each case: where report_progress sends."""
    global _progress_sender, _progress_last
    _progress_sender, _progress_last = sender, 0.0


def report_progress(step: int, total: int, loss: float | None = None) -> None:
    """Training loops call this; inside the sandbox it tells the grader how far training got
    (shown if the case runs out of time). A no-op anywhere else."""
    global _progress_last
    if _progress_sender is None:
        return
    now = time.monotonic()
    if now - _progress_last < 0.25 and step != total:
        return  # a few messages a second are plenty
    _progress_last = now
    body = {"status": "progress", "step": int(step), "of": int(total)}
    if loss is not None:
        body["loss"] = float(loss)
    try:
        _progress_sender(body)
    except Exception:  # noqa: BLE001 - progress never breaks training
        pass


OUTPUT_CAP = 64 << 20  # set by the worker from its limits


def plain(value, cap: int | None = None, budget: list | None = None, depth: int = 0):
    """Outputs as plain CPU tensors and containers; anything else is named, not sent.
    `budget` counts values: a structure sharing itself exponentially stops early; so does
    one nested deeper than the wire carries."""
    cap = cap or OUTPUT_CAP
    budget = budget if budget is not None else [200_000]
    budget[0] -= 1
    if budget[0] < 0:
        return {"__not_a_tensor__": "a structure of more than 200000 values"}
    if depth >= MAX_DEPTH - 4:  # room for the reply's own wrapping
        return {"__not_a_tensor__": f"a structure nested more than {MAX_DEPTH - 4} deep"}
    if type(value) is torch.Tensor:
        if value.layout != torch.strided:
            return {"__not_a_tensor__": f"a tensor with layout {value.layout}"}
        if value.is_meta or value.is_quantized or value.is_nested:
            return {"__not_a_tensor__": "a meta, quantized or nested tensor"}
        size = value.numel() * value.element_size()
        if size > cap:
            return {"__not_a_tensor__": f"a tensor of {size} bytes (over {cap >> 20} MB)"}
        return value.detach().to("cpu")
    if isinstance(value, torch.Tensor):
        return {"__not_a_tensor__": f"a tensor subclass ({type_name(value)})"}
    if isinstance(value, dict):  # OrderedDict (a state_dict) travels as a plain dict
        return {str(k): plain(v, cap, budget, depth + 1) for k, v in dict.items(value)}
    if isinstance(value, (tuple, list)):
        kind = tuple if isinstance(value, tuple) else list
        return kind(plain(v, cap, budget, depth + 1) for v in kind.__iter__(value))
    return {"__not_a_tensor__": f"a {type_name(value)}"}


def type_name(value) -> str:
    """A value's type name, cut short (a class may be named by the megabyte)."""
    return type(value).__name__[:100]


# ---------------------------------------------------------------------------------------

# Terminal escape sequences (CSI, OSC, and the two-byte ones) are removed from every
# message; anything shaped like a markup tag is shown inert, its brackets replaced, so that
# a token a message names (`<END>`) still reads as one.
ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|"
                     r"\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]")
TAG = re.compile(r"<(/?[A-Za-z!?][^<>]*)>")
TAG_START = re.compile(r"<(?=[/A-Za-z!?])")


def clean_message(text, limit: int = 500) -> str:
    """One printable line of at most `limit` characters, whatever the worker sent: escape
    sequences and control characters gone, markup tags made inert (`<b>` becomes `‹b›`, and
    any other `<` that could open one becomes `‹`), so it can go into results.json, a
    gradebook, an HTML report or a terminal."""
    try:
        text = str(text)[:limit * 8]  # bounded work, whatever the input
    except Exception:  # noqa: BLE001 - an object whose __str__ raises
        return "(unprintable)"
    text = text.encode("utf-8", "replace").decode("utf-8", "replace")
    text = ESCAPES.sub("", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = TAG.sub(r"‹\1›", text)
    return TAG_START.sub("‹", text).strip()[:limit]


def read_source(module_path) -> bytes | None:
    """The module's bytes; None if missing, unreadable or a symbolic link (which could point
    at the reference solution)."""
    if module_path is None:
        return None
    try:
        fd = os.open(module_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read(64 << 20)

