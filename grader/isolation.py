"""The sandbox's root filesystem and namespaces, built by bubblewrap on an allowlist.

The worker sees only: read-only system libraries (/usr), the Python interpreter and its
site-packages, the grader's own packages (grader/, dlkit/), its job folder (the module to
import and its inputs), a private size-limited /tmp and /dev/shm, a private /proc in its own
PID namespace, and no network. Never the checkout, .git, fixtures/, solutions/, build/ or
another submission. As root, the worker then switches to a uid of its own, allocated per run.
"""
import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import dlkit
import grader
from grader import paths

UID_RANGE = range(62000, 64000)  # per-run uids; never one with a live process
# What of /etc the interpreter and torch read (dynamic loader, names, time zone).
ETC = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group",
       "localtime", "alternatives"]
JOB = "/job"  # the job folder inside the sandbox


class Unavailable(Exception):
    """The sandbox cannot be built here: one line saying why."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def interpreter_folders() -> list[str]:
    """The folders Python needs: the venv, the base installation, the grader's packages."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
               os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
               str(Path(grader.__file__).resolve().parent),
               str(Path(dlkit.__file__).resolve().parent)}
    data = paths.ROOT / "data"  # public data sets training cases may read (CIFAR-10)
    if data.is_dir():
        folders.add(str(data))
    # The checkout itself never: only the named subfolders of it are bound.
    return sorted(f for f in folders if f and f not in ("/", "/usr") and os.path.isdir(f))


# Public data sets whose held-out part is a training case's test set: a submission that read
# the whole set could train on the test images. The child gets its training split as inputs.
HELD_OUT_DATA = [("sklearn", "datasets/data/digits.csv.gz")]


def held_out_data_files() -> list[str]:
    """The files of HELD_OUT_DATA that exist here (found without importing the packages)."""
    import importlib.util
    found = []
    for package, relative in HELD_OUT_DATA:
        spec = importlib.util.find_spec(package)
        if spec and spec.submodule_search_locations:
            path = Path(list(spec.submodule_search_locations)[0]) / relative
            if path.is_file():
                found.append(str(path.resolve()))
    return found


def forbidden_paths() -> list[str]:
    """Paths the worker must not see; it checks each is absent before importing student code."""
    root = paths.ROOT
    found = [root / ".git", paths.FIXTURES, paths.SOLUTIONS, root / "build", paths.SUBMISSIONS,
             root / "tests", root / "assignments", root / "notebooks",
             Path(tempfile.gettempdir()) / ".grader-uids"]
    return sorted({str(p) for p in found} - {"/", "/tmp"})


def bwrap_command(job_dir: str, device: str, limits) -> list[str]:
    """The bubblewrap command line that builds the worker's world (before the worker's own)."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise Unavailable("bubblewrap (bwrap) is not installed")
    command = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
               "--hostname", "sandbox"]
    if os.geteuid() == 0:
        # Root: keep only what the worker needs to switch to its own uid, which drops them.
        command += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-user", "--disable-userns"]
    command += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "lib", "lib32", "lib64", "sbin"):
        target = Path("/") / name
        if target.is_symlink():
            command += ["--symlink", os.readlink(target), str(target)]
        elif target.is_dir():
            command += ["--ro-bind", str(target), str(target)]
    for name in ETC:
        command += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    # Private /tmp first: folders bound below it (a grader unpacked under /tmp) stay visible.
    command += ["--proc", "/proc", "--dev", "/dev",
                "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp",
                "--perms", "1777", "--size", str(limits.tmp_bytes), "--tmpfs", "/dev/shm"]
    folders = interpreter_folders()
    # bubblewrap makes missing parents 0700: make them 0755 first, or the run's uid cannot
    # reach what is bound below them (e.g. Python under /root).
    parents = sorted({str(p) for f in folders for p in Path(f).parents if str(p) != "/"},
                     key=lambda p: p.count("/"))
    for parent in parents:
        command += ["--perms", "0755", "--dir", parent]
    for folder in folders:
        command += ["--ro-bind", folder, folder]
    for data_file in held_out_data_files():  # read as empty: training must use its inputs
        command += ["--ro-bind", "/dev/null", data_file]
    command += ["--ro-bind", job_dir, JOB, "--chdir", "/tmp"]
    if device == "cuda":  # the GPU's device files; nothing else of /dev
        for node in sorted(Path("/dev").glob("nvidia*")):
            command += ["--dev-bind", str(node), str(node)]
        command += ["--ro-bind-try", "/sys", "/sys"]
    return command


@functools.lru_cache(maxsize=None)
def probe() -> str | None:
    """None when a trivial sandbox starts here, else why not (checked once per process)."""
    try:
        with tempfile.TemporaryDirectory(prefix="grader-probe-") as job:
            from grader.sandbox import Limits
            command = bwrap_command(job, "cpu", Limits()) + ["/bin/true" if
                                                             os.path.exists("/bin/true")
                                                             else "/usr/bin/true"]
            run = subprocess.run(command, capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
    except Unavailable as exc:
        return str(exc)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start ({type(exc).__name__})"
    if run.returncode != 0:
        lines = [l for l in run.stderr.splitlines() if l.strip()] or [f"exit {run.returncode}"]
        return f"bubblewrap failed: {lines[-1][:200]}"
    return None


def nothing_to_protect() -> bool:
    """The student bundle: no solutions and no autograder expected values on this machine."""
    if paths.SOLUTIONS.is_dir():
        return False
    return not any(paths.FIXTURES.glob("*/autograder_expected.pt"))


# ---------------------------------------------------------------------------------------
# Per-run uids
# ---------------------------------------------------------------------------------------

class RunUid:
    """A uid no process is using, held (by a lock file) until every process of it is gone.

    The lock keeps other grader instances on this machine off it; the /proc scan keeps off
    uids whose processes are still alive from anywhere."""

    def __init__(self):
        self.uid, self.lock = None, None
        folder = Path(tempfile.gettempdir()) / ".grader-uids"
        folder.mkdir(mode=0o700, exist_ok=True)
        live = live_uids()
        start = (os.getpid() * 7) % len(UID_RANGE)  # spread instances over the range
        for i in range(len(UID_RANGE)):
            uid = UID_RANGE[(start + i) % len(UID_RANGE)]
            if uid in live:
                continue
            fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            if uid in live_uids():  # started between the scan and the lock
                os.close(fd)
                continue
            self.uid, self.lock = uid, fd
            return
        raise Unavailable("no free sandbox uid")

    def release(self, wait: float = 10.0) -> None:
        """Give the uid back once none of its processes is left (they die with the PID
        namespace; a few milliseconds at most)."""
        import time
        deadline = time.monotonic() + wait
        while self.uid in live_uids() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.lock is not None and self.uid not in live_uids():
            os.close(self.lock)  # otherwise stays locked until this process exits
        self.lock = None


def live_uids() -> set[int]:
    """Real uids of every process on the machine (from /proc)."""
    found = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        found.add(int(line.split()[1]))
                        break
        except OSError:
            continue
    return found
