"""Warm start: workers are forked from a zygote, a trusted process that has imported torch,
the grader and every suite, and never runs student code or sees a submission.

A zygote runs where a worker would (namespace mode: inside its own bubblewrap sandbox, with
the seccomp filter; container mode: as root on the host, where it loads the filter itself;
limits only: as the grader's user) and waits for requests on a control socket:

    fork {config} + a channel   fork a worker on that channel (grader/worker.py `forked`)
    wait {timeout}              the worker's wait status, once it has exited
    clean {uid}                 kill every process of the worker's uid, remove what it left
                                in the temporary folders, and say whether that worked

Forking costs milliseconds where a fresh interpreter spends about a second importing
torch. Nothing of one worker reaches the next: each runs as its own uid in its own cgroup
(the grader moves it there before it drops privileges), and before the zygote is used
again every process of that uid is gone and no file of it is left in /tmp or /dev/shm
(`clean`), or the zygote is stopped and a fresh one started. Where workers cannot get
their own uid (not root, or limits only) a zygote serves one worker and is stopped.

The grader side (`Zygote`, `checkout`, `checkin`) keeps a few idle zygotes per mode.
"""
import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

START_TIME = 180.0  # seconds for a zygote to import torch (a loaded 2-core machine)
MAX_IDLE = 4        # idle zygotes kept per grader process
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
# The zygote runs isolated (-I: no PYTHONPATH, no user site) but imports the grader from
# where the grader did (a checkout, site-packages, or Gradescope's source folder).
PACKAGES = str(Path(__file__).resolve().parent.parent)
BOOT = ("import sys, runpy; sys.path.insert(0, sys.argv[1]); "
        "runpy.run_module('grader.zygote', run_name='__main__', alter_sys=True)")


class Failed(Exception):
    """The zygote died or did not answer: it is stopped; the caller starts another."""


@dataclass(frozen=True)
class Key:
    """What a zygote is built for: workers of any submission with the same key share it."""
    mode: str        # namespace | container | limits only
    device: str
    threads: int
    tmp_bytes: int
    filtered: bool   # the seccomp filter is loaded


# ---------------------------------------------------------------------------------------
# The grader's side
# ---------------------------------------------------------------------------------------

class Zygote:
    """A started zygote and the grader's end of its control socket."""

    def __init__(self, key: Key, reusable: bool):
        from grader import isolation
        self.key, self.reusable = key, reusable
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.stderr = tempfile.TemporaryFile()
        bpf = self.filter_file()
        keep = [theirs.fileno()] + ([bpf.fileno()] if bpf else [])
        try:
            # Started from one long-lived thread: bubblewrap's --die-with-parent follows the
            # thread that started it, and a pool thread may end while the zygote is in use.
            self.proc = SPAWNER.submit(
                subprocess.Popen, self.command(theirs.fileno(), bpf), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=self.stderr, env=self.environment(),
                close_fds=True, pass_fds=keep, start_new_session=True,
                cwd=isolation.jobs_root()).result()
        except OSError as exc:
            raise isolation.Unavailable(f"could not start the worker ({exc.strerror})") from None
        finally:
            theirs.close()
            if bpf:
                bpf.close()
        try:
            self.request(None, START_TIME)
        except Failed:
            raise isolation.Unavailable(self.why_not_started()) from None

    def environment(self) -> dict:
        """All the zygote (and so every worker) gets: nothing of the grader's."""
        env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8",
               "PYTHONHASHSEED": "0"}
        if self.key.threads:
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
                env[name] = str(self.key.threads)
        return env

    def filter_file(self):
        """Namespace mode: the compiled seccomp filter in an unnamed file, for bubblewrap."""
        from grader import seccomp
        if self.key.mode != "namespace" or not self.key.filtered:
            return None
        bpf = tempfile.TemporaryFile()
        bpf.write(seccomp.compiled())
        bpf.seek(0)
        return bpf

    def command(self, fd: int, bpf) -> list[str]:
        """`python -I` running this module (in bubblewrap's sandbox in namespace mode)."""
        from grader import isolation
        container = self.key.mode == "container"
        config = {"fd": fd, "load_seccomp": container and self.key.filtered,
                  "temporary": isolation.SHARED_TMP if container else ["/tmp", "/dev/shm"],
                  "preload": self.reusable}
        command = [sys.executable, "-I", "-c", BOOT, PACKAGES, json.dumps(config)]
        if self.key.mode != "namespace":
            return command
        prefix = isolation.bwrap_command(isolation.jobs_root(), self.key.device, self.key,
                                         bpf.fileno() if bpf else None)
        for name, value in self.environment().items():
            prefix += ["--setenv", name, value]
        return prefix + ["--"] + command

    def request(self, body, timeout: float, fds=()) -> dict:
        """Send one request (None: only read) and return the zygote's answer."""
        try:
            if body is not None:
                socket.send_fds(self.control, [json.dumps(body).encode()], list(fds))
            if not select.select([self.control], [], [], timeout)[0]:
                raise Failed("the zygote did not answer")
            data = self.control.recv(1 << 16)
        except OSError as exc:
            raise Failed(str(exc)) from None
        if not data:
            raise Failed("the zygote exited")
        return json.loads(data)

    def fork(self, config: dict, channel: socket.socket) -> int:
        """A new worker on `channel` (whose end the zygote and the worker alone now hold);
        returns its pid as the zygote sees it (in namespace mode, inside its namespace)."""
        try:
            return self.request({"op": "fork", "config": config}, 30.0, [channel.fileno()])["pid"]
        except Failed:
            self.stop()
            raise

    def wait(self, timeout: float) -> int | None:
        """The last worker's wait status once it has exited, None if it has not."""
        try:
            return self.request({"op": "wait", "timeout": timeout}, timeout + 30.0)["status"]
        except Failed:
            self.stop()
            return None

    def clean(self, uid: int) -> bool:
        """Whether every trace of `uid` is gone (processes and temporary files)."""
        try:
            return self.request({"op": "clean", "uid": uid}, 60.0)["clean"]
        except Failed:
            self.stop()
            return False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def why_not_started(self) -> str:
        self.stop()
        self.stderr.seek(0)
        lines = [l for l in self.stderr.read(65536).decode("utf-8", "replace").splitlines()
                 if l.strip()]
        return (f"the sandbox did not start: {lines[-1][:300]}" if lines else
                f"the sandbox did not start (exit {self.proc.returncode})")

    def stop(self) -> None:
        """Kill the zygote and its session (with bubblewrap, its whole PID namespace)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.kill()
        self.proc.wait()
        self.control.close()


SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zygote-spawner")
_idle: list[Zygote] = []
_idle_lock = threading.Lock()


def checkout(key: Key, reusable: bool) -> Zygote:
    """An idle zygote for `key`, or a new one (raises isolation.Unavailable)."""
    with _idle_lock:
        for zygote in list(_idle):
            if not zygote.alive():
                _idle.remove(zygote)
                zygote.stop()
            elif zygote.key == key:
                _idle.remove(zygote)
                return zygote
    return Zygote(key, reusable)


def checkin(zygote: Zygote, clean: bool) -> None:
    """Keep the zygote for the next worker if it is clean, reusable and alive; else stop it."""
    if not (clean and zygote.reusable and zygote.alive()):
        zygote.stop()
        return
    with _idle_lock:
        _idle.append(zygote)
        evicted = _idle[:-MAX_IDLE]
        del _idle[:-MAX_IDLE]
    for old in evicted:
        old.stop()


@atexit.register
def stop_all() -> None:
    with _idle_lock:
        for zygote in _idle:
            zygote.stop()
        _idle.clear()


# ---------------------------------------------------------------------------------------
# The zygote itself
# ---------------------------------------------------------------------------------------

def preload() -> None:
    """What every worker needs, imported once (no torch operation runs: OpenMP's thread
    pool must start in the worker, after the fork)."""
    import numpy  # noqa: F401
    import torch  # noqa: F401
    # torch.optim's first use imports torch._dynamo (and through it cProfile, pstats, ...):
    # in container mode a worker can import from the interpreter's library only what is here
    import torch._dynamo  # noqa: F401
    # which made $TMPDIR/torchinductor_<user> and pointed TORCHINDUCTOR_CACHE_DIR at it: a
    # folder of the zygote's in every worker's /tmp. Each worker makes its own if it needs one.
    cache = os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    if cache and os.path.isdir(cache) and not os.listdir(cache):
        os.rmdir(cache)
    import tqdm.std  # noqa: F401
    from dlkit.utils import seed_everything
    from grader import sandbox, worker, worker_protocol  # noqa: F401
    from grader.suites import available, load_suite
    for name in available():
        load_suite(name)
    seed_everything(0)  # imports numpy.random and torch's seeding paths once


def main() -> None:
    import ctypes
    config = json.loads(sys.argv[-1])
    control = socket.socket(fileno=config["fd"])
    from grader import worker
    leaked = set(os.environ) - worker.ALLOWED_ENV
    if leaked:
        sys.exit(f"the zygote's environment holds {sorted(leaked)[0]}")
    if config["preload"]:  # a zygote for one worker imports nothing: that worker does
        preload()
        # What the course's own modules set while importing (offline switches) is allowed.
        worker.ALLOWED_ENV.update(os.environ)
    if sys.platform.startswith("linux"):  # limits only may run elsewhere (a student's Mac)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of workers come back here
    if config["load_seccomp"]:
        from grader import seccomp
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        seccomp.load()
    control.send(json.dumps({"ready": True}).encode())
    child, last_uid = None, None
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
        except OSError:
            data, fds = b"", []
        if not data:  # the grader is gone: leave nothing behind
            if last_uid is not None:
                clean(last_uid, config["temporary"])
            os._exit(0)
        request = json.loads(data)
        if request["op"] == "fork":
            worker_config = request["config"]
            last_uid = worker_config.get("uid")
            child = os.fork()
            if child == 0:
                control.close()
                from grader.worker import forked
                forked(worker_config, fds[0])  # never returns
            os.close(fds[0])
            answer = {"pid": child}
        elif request["op"] == "wait":
            answer = {"status": wait_for(child, request["timeout"])}
        else:
            answer = {"clean": clean(request["uid"], config["temporary"])}
        control.send(json.dumps(answer).encode())


def wait_for(pid: int | None, timeout: float) -> int | None:
    """The wait status of `pid` (a worker) once it exits within `timeout`, else None."""
    deadline = time.monotonic() + timeout
    while pid is not None:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() > deadline:
            return None
        time.sleep(0.005)
    return None


def clean(uid: int, folders: list[str], tries: int = 5) -> bool:
    """Kill every process of `uid` and remove its files from the temporary folders, as
    `uid` itself (so nothing else can be touched); True once none of either is left."""
    for _ in range(tries):
        helper = os.fork()
        if helper == 0:
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                kill_everything_of_mine()
                for folder in folders:
                    for path in litter(uid, folder):
                        remove(path)
            finally:
                os._exit(0)
        os.waitpid(helper, 0)
        reap()
        if not processes_of(uid) and not any(litter(uid, f) for f in folders):
            return True
    return False


def kill_everything_of_mine(rounds: int = 3) -> None:
    """kill(-1) as the worker's uid reaches every process of that uid in this PID namespace
    (and nothing else); one pass is atomic with fork, the others are for safety. Killed
    processes stay zombies until the zygote reaps them, so kill(-1) keeps succeeding."""
    for _ in range(rounds):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.001)


def reap(wait: float = 2.0) -> None:
    """Collect every exited descendant (the zygote is their subreaper)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.002)  # killed, not yet exited


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/status") as f:
                    if any(l.startswith("Uid:") and int(l.split()[1]) == uid for l in f):
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def litter(uid: int, folder: str, limit: int = 10_000) -> list[str]:
    """What `uid` owns in `folder` or in any world-writable folder below it (the only
    places it can write), found without following links."""
    found, stack, seen = [], [folder], 0
    while stack and seen < limit:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid == uid:
                found.append(entry.path)
            elif entry.is_dir(follow_symlinks=False) and info.st_mode & 0o002:
                stack.append(entry.path)
    return found


def remove(path: str) -> None:
    """Remove a file or a whole tree the caller owns, folders it locked (mode 000) too."""
    if not os.path.isdir(path) or os.path.islink(path):
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    stack = [path]
    while stack:
        folder = stack.pop()
        try:
            os.chmod(folder, 0o700)
            stack += [e.path for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
