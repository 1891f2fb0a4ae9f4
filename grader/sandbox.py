"""Executing: student code runs only in a forked, limited child process.

A forkserver (a fresh interpreter that imports torch once and never sees a fixture) forks
one worker per submission. The worker isolates itself, imports the student module, runs
the cases it was given one by one and streams each case's outputs back as `torch.save`
bytes. The parent reads them with `weights_only=True`, under a size cap, with a time limit
per case; a worker that dies, hangs or floods costs only the case it was on, and a new
worker picks up with the next case.

Isolation in the worker, before any student code is imported:
- its own session and process group; killed with the parent (PR_SET_PDEATHSIG);
- a fresh temporary working directory; stdout/stderr go to a capped file there;
- where the OS allows (root, or unprivileged user namespaces): new network namespace
  (no network), new mount namespace with empty read-only tmpfs over fixtures/ and
  solutions/, and, as root, a switch to an unprivileged uid/gid;
- rlimits: address space, file size, CPU time and number of processes.
"""
import ctypes
import io
import os
import resource
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass

import torch

from grader import paths
from grader.forkserver import context

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_REC, MS_PRIVATE = 1, 0x4000, 0x40000
PR_SET_PDEATHSIG, PR_SET_KEEPCAPS, PR_SET_NO_NEW_PRIVS = 1, 8, 38
CAP_DAC_READ_SEARCH = 2
SANDBOX_UID = 61000  # + slot: an unused uid per parallel slot, so slots cannot signal each other


@dataclass
class Limits:
    """Per-worker resource limits. Times are seconds, sizes bytes."""
    memory: int = 4 << 30          # address space on top of what torch already maps
    output: int = 64 << 20         # bytes of one case's serialized outputs
    stdout: int = 1 << 20          # bytes the student may print (the rest is dropped)
    processes: int = 2             # beyond the worker's own threads (Linux counts threads)
    import_time: float = 60.0      # importing the student module
    case_time: float | None = None  # caps every case's own time limit (tests, quick runs)
    threads: int = 0               # torch intra-op threads; 0 keeps torch's default


@dataclass
class Result:
    """What came back for one case: outputs, or a one-line reason why not."""
    outputs: object = None
    error: str | None = None
    seconds: float = 0.0


def run_cases(assignment: str, module_path, jobs: list, *, device: str = "cpu",
              limits: Limits | None = None, slot: int = 0, progress=None) -> dict:
    """Run `jobs` = [(case, inputs)] against the module at `module_path` in sandboxed workers.

    Returns {case name: Result}. Never raises for anything the student code does.
    `progress(name)` is called after each case.
    """
    limits = limits or Limits()
    results, pending = {}, list(jobs)
    while pending:
        workdir = tempfile.mkdtemp(prefix="grader-sandbox-")
        worker, reader = start_worker(assignment, module_path, pending, device, limits, slot,
                                      workdir)
        try:
            done = collect(worker, reader, pending, limits, results, progress)
        finally:
            stop(worker)
            reader.close()
            shutil.rmtree(workdir, ignore_errors=True)
        pending = pending[done:]
    return results


def start_worker(assignment, module_path, jobs, device, limits, slot, workdir):
    reader, writer = context().Pipe(duplex=False)
    # One bytes object: tensors passed as process arguments would each travel as a file
    # descriptor of shared memory.
    work = pack([(case.name, inputs, case.seed(0)) for case, inputs in jobs])
    # CPU seconds are a backstop behind the wall-clock limits (threads add up CPU time).
    cpu_seconds = int((limits.import_time + sum(case.time_limit for case, _ in jobs))
                      * (os.cpu_count() or 1)) + 1
    worker = context().Process(
        target=worker_main, daemon=True,
        args=(assignment, str(module_path), work, device, limits, slot, workdir, cpu_seconds,
              writer))
    worker.start()
    writer.close()  # only the worker holds the write end: EOF means it is gone
    return worker, reader


def collect(worker, reader, jobs, limits, results, progress) -> int:
    """Read results until the worker finishes or fails; returns how many jobs were settled."""
    message = receive(reader, limits.import_time, limits)
    body = message.outputs if isinstance(message.outputs, dict) else {}
    if message.error or body.get("status") != "ready":
        reason = message.error or str(body.get("message", "could not import the module"))[:500]
        if reason.startswith("time limit"):
            reason = f"importing the module took longer than {limits.import_time:.0f} s"
        for case, _ in jobs:
            results[case.name] = Result(error=reason)
        return len(jobs)
    for index, (case, _) in enumerate(jobs):
        started = time.monotonic()
        budget = min(case.time_limit, limits.case_time or case.time_limit)
        result, clean = reply(case.name, receive(reader, budget, limits, worker))
        result.seconds = time.monotonic() - started
        results[case.name] = result
        if progress:
            progress(case.name)
        if not clean:
            return index + 1  # a crash may have left debris: a fresh worker goes on
    return len(jobs)


def reply(name: str, message: Result) -> tuple[Result, bool]:
    """The case's result from one message, and whether the worker is still fit to go on
    (it is after a success or a plain "not implemented yet")."""
    if message.error:
        return message, False
    body = message.outputs
    if not isinstance(body, dict) or body.get("case") != name:
        return Result(error="the worker sent a malformed reply"), False
    if body.get("status") == "ok":
        return Result(outputs=body.get("outputs")), True
    return Result(error=str(body.get("message"))[:500]), body.get("status") == "todo"


def receive(reader, timeout, limits, worker=None) -> Result:
    """One message from the worker, loaded with weights_only=True, or why there is none."""
    if not reader.poll(timeout):
        return Result(error=f"time limit exceeded ({timeout:.0f} s)")
    try:
        data = reader.recv_bytes(maxlength=limits.output)
    except EOFError:
        code = None
        if worker is not None:
            worker.join(1.0)
            code = worker.exitcode
        return Result(error=exit_reason(code))
    except OSError:
        return Result(error=f"outputs larger than {limits.output >> 20} MB")
    try:
        return Result(outputs=torch.load(io.BytesIO(data), weights_only=True))
    except Exception as exc:  # noqa: BLE001 - anything unreadable is the submission's fault
        return Result(error=f"returned something that is not plain tensors "
                            f"({type(exc).__name__})")


def exit_reason(code) -> str:
    if code is None:
        return "the process stopped answering"
    if code < 0:
        name = signal.Signals(-code).name
        if -code == signal.SIGKILL:
            return f"the process was killed ({name}): out of memory or a resource limit"
        return f"the process died from signal {name}"
    return f"the process exited (code {code}) in the middle of the case (sys.exit / os._exit?)"


def stop(worker, grace: float = 10.0) -> None:
    """Kill the worker and everything in its process group, and wait until they are gone:
    a dying process still counts against its uid's process limit, which the next worker
    of this slot shares."""
    worker.kill()
    deadline = time.monotonic() + grace
    while worker.pid and time.monotonic() < deadline:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            break
        time.sleep(0.005)
    worker.join(grace)


# ---------------------------------------------------------------------------------------
# Inside the worker (a child of the forkserver)
# ---------------------------------------------------------------------------------------

def worker_main(assignment, module_path, work, device, limits, slot, workdir, cpu_seconds,
                writer):
    """Isolate, import the student module, run each case, stream the outputs back."""
    def send(body):
        writer.send_bytes(pack(body))

    work = torch.load(io.BytesIO(work), weights_only=True)
    source = read_source(module_path)  # before privileges drop and folders are hidden
    isolate(limits, slot, workdir, cpu_seconds)
    try:
        module = import_student(assignment, module_path, source)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, SystemExit, anything
        send({"status": "import_error", "message": import_message(exc, module_path)})
        return
    send({"status": "ready"})
    from grader.suites import load_suite
    from dlkit.utils import seed_everything
    suite = load_suite(assignment)
    target = torch.device(device)
    for name, inputs, seed in work:
        try:
            seed_everything(seed)
            outputs = suite[name].call(module, to_device(inputs, target), target)
            body = {"case": name, "status": "ok", "outputs": plain(outputs)}
        except NotImplementedError as exc:
            body = {"case": name, "status": "todo",
                    "message": f"not implemented yet ({exc})" if str(exc) else "not implemented yet"}
        except BaseException as exc:  # noqa: BLE001 - the student's exception, reported
            body = {"case": name, "status": "error", "message": error_line(exc, module_path)}
        try:
            send(body)
        except Exception as exc:  # noqa: BLE001 - e.g. outputs that cannot be saved
            send({"case": name, "status": "error",
                  "message": f"outputs could not be sent back ({type(exc).__name__})"})


def pack(body) -> bytes:
    buffer = io.BytesIO()
    torch.save(body, buffer)
    return buffer.getvalue()


def plain(value):
    """Outputs as plain CPU tensors and containers; anything else is named, not sent."""
    if type(value) is torch.Tensor:
        return value.detach().to("cpu").contiguous().clone()
    if isinstance(value, torch.Tensor):
        return {"__not_a_tensor__": f"a tensor subclass ({type(value).__name__})"}
    if type(value) is dict:
        return {str(k): plain(v) for k, v in value.items()}
    if type(value) in (tuple, list):
        return type(value)(plain(v) for v in value)
    return {"__not_a_tensor__": f"a {type(value).__name__}"}


def to_device(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    return value


def import_student(assignment, module_path, source):
    """Execute the student's source as the module `assignment`."""
    import types
    if source is None:
        raise FileNotFoundError(f"no file {module_path}")
    module = types.ModuleType(assignment)
    module.__file__ = module_path
    sys.modules[assignment] = module
    exec(compile(source, module_path, "exec"), module.__dict__)  # noqa: S102 - sandboxed
    return module


def import_message(exc, module_path) -> str:
    if isinstance(exc, FileNotFoundError):
        return (f"missing file: {os.path.basename(module_path)} was not submitted "
                "(or is not a readable regular file)")
    if isinstance(exc, SyntaxError):
        return f"syntax error in {os.path.basename(module_path)} line {exc.lineno}: {exc.msg}"
    if isinstance(exc, SystemExit):
        return f"the module called sys.exit({exc.code}) while being imported"
    return f"importing the module failed: {error_line(exc, module_path)}"


def error_line(exc, module_path) -> str:
    """'ValueError at transformer.py:42: message': the student's innermost frame, one line."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code}) during the case"
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == module_path:
            where = f" at {os.path.basename(module_path)}:{frame.lineno}"
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}{where}: {text}" if text else f"{type(exc).__name__}{where}"


def isolate(limits: Limits, slot: int, workdir: str, cpu_seconds: int) -> None:
    """Everything the worker does to itself before student code runs."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    sys.argv = ["sandbox"]
    for key in list(os.environ):
        if key not in ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            del os.environ[key]
    os.environ["HOME"] = workdir
    root = os.geteuid() == 0
    if root:
        namespaces = libc.unshare(CLONE_NEWNS | CLONE_NEWNET) == 0
    else:
        namespaces = enter_user_namespace(libc)
    if namespaces:
        hide_folders(libc)
    if root:
        drop_privileges(libc, SANDBOX_UID + slot, workdir)
    os.chdir(workdir)
    redirect_output(workdir, limits)
    if limits.threads:
        torch.set_num_threads(limits.threads)
    # tqdm would make a multiprocessing lock, which the parent's resource tracker then
    # reports as leaked when the worker is killed; a thread lock is all a worker needs.
    from tqdm.std import tqdm
    tqdm.set_lock(threading.RLock())
    warm_up_threads()
    apply_rlimits(limits, cpu_seconds, own_uid=root)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def drop_privileges(libc, uid: int, workdir: str) -> None:
    """Become an unprivileged uid that keeps one capability: reading any file.

    Python and torch may live under a folder only root can read (/root/.pyenv here), and
    student code may import any module lazily. Reading is all it keeps: it cannot write
    root's files, signal or trace the grader, or unmount the tmpfs hiding the fixtures.
    """
    os.chown(workdir, uid, uid)
    libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    read_search = 1 << CAP_DAC_READ_SEARCH
    data = (ctypes.c_uint32 * 6)(read_search, read_search, 0, 0, 0, 0)  # effective, permitted
    libc.capset(header, data)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def enter_user_namespace(libc) -> bool:
    """Unprivileged: a user namespace lets us make network and mount namespaces too."""
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET) != 0:
        return False
    try:
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError:
        return True  # the namespaces exist; mounts may still fail and are checked
    return True


def hide_folders(libc) -> None:
    """Cover fixtures/ and solutions/ with empty read-only tmpfs in our mount namespace."""
    libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None)
    for folder in (paths.FIXTURES, paths.SOLUTIONS):
        if folder.is_dir():
            libc.mount(b"tmpfs", str(folder).encode(), b"tmpfs", MS_RDONLY, b"size=4k")


def redirect_output(workdir, limits) -> None:
    """fd 1 and 2 go to a file; Python-level prints are capped and then dropped."""
    log = os.open(os.path.join(workdir, "output.txt"), os.O_WRONLY | os.O_CREAT, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    sys.stdout = sys.stderr = CappedWriter(limits.stdout)


class CappedWriter(io.TextIOBase):
    """A text stream that keeps the first `cap` characters and silently drops the rest."""

    def __init__(self, cap: int):
        self.cap, self.size = cap, 0

    def write(self, text):
        if self.size < self.cap:
            os.write(1, text[: self.cap - self.size].encode("utf-8", "replace"))
        self.size += len(text)
        return len(text)


def apply_rlimits(limits: Limits, cpu_seconds: int, own_uid: bool) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the cap fail instead of killing
    mapped = current_address_space()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + limits.memory,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.stdout + (1 << 16),) * 2)
    if own_uid:  # the count is per uid: only meaningful for the sandbox's own uid
        allowed = thread_count() + limits.processes
        resource.setrlimit(resource.RLIMIT_NPROC, (allowed, allowed))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))


def warm_up_threads() -> None:
    """Start torch's thread pool now, so the process limit can be set just above it."""
    a = torch.ones(256, 256)
    (a @ a).sum().item()


def thread_count() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 1


def current_address_space() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def read_source(module_path) -> str | None:
    """The module's text; None if it is missing, unreadable or a symbolic link (which
    could point at the reference solution: it is read while still privileged)."""
    try:
        fd = os.open(module_path, os.O_RDONLY | os.O_NOFOLLOW)
        with open(fd, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None
