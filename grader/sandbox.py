"""Executing: student code runs only in a sandboxed worker process (grader/worker.py).

Each worker is a fresh `python -m grader.worker` inside bubblewrap (grader/isolation.py):
an allowlisted read-only root, private /tmp, /dev/shm and /proc, its own PID, network, IPC
and UTS namespaces, a per-run uid (as root), no capabilities, a minimal environment and no
descriptor but its channel. It imports torch, checks that isolation holds, and only then
compiles the module and runs its cases, sending one frame per reply (grader/worker_protocol.py:
a JSON header + raw tensor bytes, bounded before it is read, nothing that can execute or
inflate). A worker that dies, hangs or floods costs the case it was on; a fresh worker goes
on with the next case. Killing bubblewrap ends the PID namespace: nothing a case started
survives it.

If the sandbox cannot be built, no student code runs: every case reports "sandbox
unavailable: <why>". `Limits(insecure=True)` (`grade --insecure`) runs with limits only; `None`
(what `make grade` passes) does so only where there is nothing to protect (the student bundle).
"""
import json
import math
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from grader import isolation
from grader.worker_protocol import Closed, TimedOut, WireError, decode, encode, read_frame


# The worker runs isolated (-I: no PYTHONPATH, no user site) but imports the grader from
# where this process did (a checkout, site-packages, or Gradescope's source folder).
PACKAGES = str(Path(__file__).resolve().parent.parent)
BOOT = ("import sys, runpy; sys.path.insert(0, sys.argv[1]); "
        "runpy.run_module('grader.worker', run_name='__main__', alter_sys=True)")

# Test-only suites: {assignment: path of a file defining `suite`}, sent into the worker.
EXTRA_SUITES: dict = {}


@dataclass
class Limits:
    """Per-worker resource limits. Times are seconds, sizes bytes."""
    memory: int = 4 << 30          # address space on top of what torch already maps
    output: int = 64 << 20         # bytes of one case's outputs (checked before reading)
    processes: int = 64            # tasks (processes + threads) of the run's own uid
    import_time: float = 60.0      # starting the worker and importing the student module
    case_time: float | None = None  # caps every case's own time limit (tests, quick runs)
    submission_time: float | None = None  # total for all of a submission's cases
    threads: int = 0               # torch intra-op threads; 0 keeps torch's default
    tmp_bytes: int = 256 << 20     # size of the private /tmp and of /dev/shm
    file_bytes: int = 256 << 20    # largest file the worker may write
    insecure: bool | None = False  # True: limits only; None: only where nothing is secret


@dataclass
class Result:
    """What came back for one case: outputs, or a one-line reason why not."""
    outputs: object = None
    error: str | None = None
    seconds: float = 0.0
    todo: bool = False


def sandbox_mode(limits: Limits) -> tuple[bool, str | None, str | None]:
    """(secure, why it is unavailable, note to show): how workers run here."""
    if limits.insecure is True:
        return False, None, "insecure: running submissions with limits only (--insecure)"
    problem = isolation.probe()
    if problem is None:
        return True, None, None
    if limits.insecure is None and isolation.nothing_to_protect():
        return False, None, (f"sandbox unavailable ({problem}): grading with limits only, "
                             "as nothing here is secret (student bundle)")
    return True, problem, None


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
    results, pending = {}, list(jobs)
    total = limits.submission_time
    budget_end = time.monotonic() + total if total else math.inf

    def settle(case, result):
        result.error = clean_message(result.error) if result.error is not None else None
        results[case.name] = on_result(case, result) if on_result else result
        if progress:
            progress(case.name)

    while pending:
        if time.monotonic() >= budget_end:
            for case, _ in pending:
                settle(case, Result(error=f"not run: the submission's total time budget "
                                          f"({total:.0f} s) ran out"))
            break
        done = run_worker(assignment, source, pending, device, limits, mode, budget_end,
                          settle)
        pending = pending[done:]
    return results


def run_worker(assignment, source, jobs, device, limits, mode, budget_end, settle) -> int:
    """One worker for `jobs`; returns how many of them were settled."""
    secure, unavailable, _ = sandbox_mode(limits)
    if unavailable:
        for case, _ in jobs:
            settle(case, Result(error=f"sandbox unavailable: {unavailable}"))
        return len(jobs)
    job_dir = tempfile.mkdtemp(prefix="grader-job-")
    worker = None
    try:
        worker = Worker(assignment, source, jobs, device, limits, mode, job_dir, secure)
        return worker.collect(jobs, limits, budget_end, settle)
    except isolation.Unavailable as exc:
        for case, _ in jobs:
            settle(case, Result(error=f"sandbox unavailable: {exc}"))
        return len(jobs)
    finally:
        if worker is not None:
            worker.stop()
        shutil.rmtree(job_dir, ignore_errors=True)


class Worker:
    """A started worker process and the parent's end of its channel."""

    def __init__(self, assignment, source, jobs, device, limits, mode, job_dir, secure):
        os.chmod(job_dir, 0o755)  # the run's uid reads it (bound read-only at /job)
        if source is not None:
            write_file(os.path.join(job_dir, f"{assignment}.py"), source)
        if mode == "decode":  # the file to decode, and no jobs
            write_file(os.path.join(job_dir, "outputs.pt"), jobs[0][1])
            work = []
        else:
            work = [(case.name, inputs, case.seed(0)) for case, inputs in jobs]
        write_file(os.path.join(job_dir, "work.bin"), encode(work, 1 << 40))
        if assignment in EXTRA_SUITES:
            write_file(os.path.join(job_dir, "suite.py"), Path(EXTRA_SUITES[assignment]).read_bytes())
        self.secure, self.uid, self.proc, self.mode = secure, None, None, mode
        inside = isolation.JOB if secure else job_dir
        cores = os.cpu_count() or 1
        cpu_seconds = int((limits.import_time + sum(c.time_limit for c, _ in jobs)) * cores) + 1
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp" if secure else job_dir,
               "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        if limits.threads:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(limits.threads)
        prefix = isolation.bwrap_command(job_dir, device, limits) if secure else []
        if secure and os.geteuid() == 0:
            self.uid = isolation.RunUid()
        ours, theirs = socket.socketpair()
        self.channel = ours
        config = {"fd": theirs.fileno(), "assignment": assignment, "mode": mode,
                  "device": device, "threads": limits.threads, "memory": limits.memory,
                  "cpu_seconds": cpu_seconds, "file_bytes": limits.file_bytes,
                  "processes": limits.processes, "output_bytes": limits.output,
                  "suite_file": assignment in EXTRA_SUITES,
                  "uid": self.uid.uid if self.uid else None, "secure": secure, "job": inside,
                  "forbidden": isolation.forbidden_paths() if secure else []}
        command = [sys.executable, "-I", "-c", BOOT, PACKAGES, json.dumps(config)]
        if secure:
            for key, value in env.items():
                prefix += ["--setenv", key, value]
            command = prefix + ["--"] + command
        self.stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self.stderr, env=env, close_fds=True, pass_fds=(theirs.fileno(),),
                start_new_session=True, cwd=job_dir)
        except OSError as exc:
            if self.uid is not None:
                self.uid.release()
            raise isolation.Unavailable(f"could not start the worker ({exc.strerror})") from None
        finally:
            theirs.close()  # only the worker holds its end: EOF means it is gone

    def receive(self, deadline: float, limits: Limits):
        header, payload = read_frame(self.channel, deadline, limits.output)
        body = decode(header, payload)
        if type(body) is not dict:
            raise WireError("malformed reply")
        return body

    def collect(self, jobs, limits, budget_end, settle) -> int:
        """Read replies until the worker finishes or fails; returns how many jobs settled."""
        started = time.monotonic()
        stage = "start"
        try:
            deadline = min(started + limits.import_time, budget_end)
            while True:
                body = self.receive(deadline, limits)
                status = body.get("status")
                if status == "isolated":
                    stage = "import"
                    continue
                break
        except (TimedOut, Closed, WireError) as exc:
            reason = self.start_failure(exc, stage, limits, deadline == budget_end)
            for case, _ in jobs:
                settle(case, Result(error=reason))
            return len(jobs)
        if self.mode == "decode" and stage == "import":
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
            budget = min(case.time_limit, limits.case_time or case.time_limit)
            result, fit = self.one_case(case, case_started + budget, budget, budget_end, limits)
            result.seconds = time.monotonic() - case_started
            settle(case, result)
            if not fit:
                return index + 1  # a crash may have left debris: a fresh worker goes on
        return len(jobs)

    def one_case(self, case, deadline, budget, budget_end, limits) -> tuple[Result, bool]:
        """The case's result, and whether the worker is still fit to go on."""
        progress = None
        while True:
            try:
                body = self.receive(min(deadline, budget_end), limits)
            except TimedOut:
                if budget_end < deadline and time.monotonic() >= budget_end:
                    why = "the submission's total time budget ran out"
                else:
                    why = f"time limit exceeded ({budget:.0f} s)"
                return Result(error=why + progress_text(progress)), False
            except Closed:
                return Result(error=self.exit_reason() + progress_text(progress)), False
            except (WireError, RecursionError, ValueError, TypeError) as exc:
                return Result(error=f"returned something that is not plain tensors ({exc})"), False
            if body.get("status") == "progress" and body.get("case") == case.name:
                progress = body
                continue
            break
        if body.get("case") != case.name:
            return Result(error="the worker sent a malformed reply"), False
        status = body.get("status")
        if status == "ok":
            return Result(outputs=body.get("outputs")), True
        message = str(body.get("message"))[:500]
        return Result(error=message, todo=status == "todo"), status == "todo"

    def start_failure(self, exc, stage, limits, budget_ran_out) -> str:
        """Why a worker never became ready: the sandbox, the import, or the time budget."""
        if isinstance(exc, TimedOut) and budget_ran_out:
            return "the submission's total time budget ran out"
        if stage == "start":
            if isinstance(exc, TimedOut):
                return f"the worker did not start within {limits.import_time:.0f} s"
            self.stop()
            return f"sandbox unavailable: {self.stderr_line() or self.exit_reason()}"
        if isinstance(exc, TimedOut):
            return f"importing the module took longer than {limits.import_time:.0f} s"
        if isinstance(exc, Closed):
            return f"importing the module ended the process: {self.exit_reason()}"
        return f"importing the module failed: malformed reply ({exc})"

    def exit_reason(self) -> str:
        try:
            code = self.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            return "the process stopped answering"
        if self.secure and code > 128 and code - 128 in signal.valid_signals():
            code = -(code - 128)  # bubblewrap reports a signal as 128 + its number
        if code < 0:
            name = signal.Signals(-code).name
            if -code == signal.SIGKILL:
                return f"the process was killed ({name}): out of memory or a resource limit"
            if -code == signal.SIGXCPU:
                return f"the process was killed ({name}): CPU time limit"
            return f"the process died from signal {name}"
        return f"the process exited (code {code}) in the middle of the case (sys.exit / os._exit?)"

    def stderr_line(self) -> str:
        if self.stderr.closed:
            return ""
        self.stderr.seek(0)
        lines = [l for l in self.stderr.read(65536).decode("utf-8", "replace").splitlines()
                 if l.strip()]
        return lines[-1][:300] if lines else ""

    def stop(self) -> None:
        """Kill the worker (and with bubblewrap its whole PID namespace), wait, free the uid."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.kill()
            self.proc.wait()
        self.channel.close()
        self.stderr.close()
        if self.uid is not None:
            self.uid.release()
            self.uid = None


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
    if sandbox_mode(loose)[1]:  # no sandbox: still a separate, limited process
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


def plain(value, cap: int | None = None, budget: list | None = None):
    """Outputs as plain CPU tensors and containers; anything else is named, not sent.
    `budget` counts values: a structure sharing itself exponentially stops early."""
    cap = cap or OUTPUT_CAP
    budget = budget if budget is not None else [200_000]
    budget[0] -= 1
    if budget[0] < 0:
        return {"__not_a_tensor__": "a structure of more than 200000 values"}
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
        return {"__not_a_tensor__": f"a tensor subclass ({type(value).__name__})"}
    if isinstance(value, dict):  # OrderedDict (a state_dict) travels as a plain dict
        return {str(k): plain(v, cap, budget) for k, v in dict.items(value)}
    if isinstance(value, (tuple, list)):
        kind = tuple if isinstance(value, tuple) else list
        return kind(plain(v, cap, budget) for v in kind.__iter__(value))
    return {"__not_a_tensor__": f"a {type(value).__name__}"}


# ---------------------------------------------------------------------------------------

def clean_message(text) -> str:
    """One printable line of at most 500 characters, whatever the worker sent."""
    text = str(text).encode("utf-8", "replace").decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text.strip()[:500]


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


def write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)
