"""Where workers run: bubblewrap's allowlisted root (namespace mode) or, where namespaces
cannot be created but the grader is root (Gradescope, Docker), the host's root as a
fresh unprivileged uid (container mode). Also: per-run uids, job folders, secrets.

Namespace mode: the zygote (grader/zygote.py) sees only read-only system libraries (/usr),
the Python interpreter and its site-packages, the grader's own packages (grader/, dlkit/),
the job folders (read-only, one per worker, owned by its uid), a private size-limited /tmp
and /dev/shm, a private /proc in its own PID namespace, and no network. Never the
checkout, .git, fixtures/, solutions/, build/ or another grader's files.

Container mode: the worker sees the host's files as an unprivileged uid; the grader's
secrets (`forbidden_paths`) are made root-only first (`protect_secrets`), network sockets
are refused by the seccomp filter, and whatever the uid leaves in the shared temporary
folders is removed after it.
"""
import fcntl
import functools
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import dlkit
import grader
from grader import paths

UID_RANGE = range(62000, 64000)  # per-run uids; never one with a live process
# One lock folder for every grader on the host, whatever its TMPDIR: root-only, fixed.
LOCK_FOLDERS = [Path("/run/grader-uids"), Path("/var/lib/grader/uids")]
# What of /etc the interpreter and torch read (dynamic loader, names, time zone).
ETC = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group",
       "localtime", "alternatives"]
JOB = "/job"  # the job folders' root inside the namespace sandbox
SHARED_TMP = ["/tmp", "/var/tmp", "/dev/shm"]  # what a container-mode worker may litter
CAP_SETGID, CAP_SETUID = 6, 7


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


def git_folders(root: Path) -> list[Path]:
    """The checkout's git data: `.git`, and for a worktree (`.git` is a file naming its
    folder) that folder and the repository's common folder, which hold every object."""
    dot_git = root / ".git"
    if not dot_git.is_file():
        return [dot_git]
    match = re.match(r"gitdir:\s*(.+)", dot_git.read_text(errors="replace").strip())
    if not match:
        return [dot_git]
    own = (root / match.group(1)).resolve()
    common = own / "commondir"
    found = [dot_git, own]
    if common.is_file():
        found.append((own / common.read_text().strip()).resolve())
    return found


def forbidden_paths() -> list[str]:
    """Paths a worker must not read: absent in namespace mode, root-only in container mode.
    The worker checks each before importing student code."""
    root = paths.ROOT
    found = [*git_folders(root), paths.FIXTURES, paths.SOLUTIONS, root / "build",
             paths.SUBMISSIONS, root / "tests", root / "assignments", root / "notebooks",
             *LOCK_FOLDERS]
    return sorted({str(p) for p in found} - {"/", "/tmp"})


def protect_secrets() -> None:
    """Container mode: every forbidden path and held-out data file that exists becomes
    root-only (folders 0700, files 0600), so a worker's uid cannot read it."""
    for path in forbidden_paths() + held_out_data_files():
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode):
            continue
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


def bwrap_command(jobs_root: str, device: str, limits, seccomp_fd: int | None) -> list[str]:
    """The bubblewrap command line that builds the zygote's world (before its own)."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise Unavailable("bubblewrap (bwrap) is not installed")
    command = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--clearenv",
               "--hostname", "sandbox"]
    if os.geteuid() == 0:
        # Root: keep only what the zygote needs to switch its workers to their uids.
        command += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-user", "--disable-userns"]
    if seccomp_fd is not None:
        command += ["--seccomp", str(seccomp_fd)]
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
    command += ["--ro-bind", jobs_root, JOB, "--chdir", "/tmp"]
    if device == "cuda":  # the GPU's device files; nothing else of /dev
        for node in sorted(Path("/dev").glob("nvidia*")):
            command += ["--dev-bind", str(node), str(node)]
        command += ["--ro-bind-try", "/sys", "/sys"]
    return command


@functools.lru_cache(maxsize=None)
def probe() -> str | None:
    """None when a trivial namespace sandbox starts here, else why not (checked once)."""
    try:
        with tempfile.TemporaryDirectory(prefix="grader-probe-") as job:
            from grader.sandbox import Limits
            command = bwrap_command(job, "cpu", Limits(), None) + [
                "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"]
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


def container_problem() -> str | None:
    """None when container mode can run here (root, able to switch uids, with the seccomp
    filter that stands in for the missing network namespace), else why not."""
    if os.geteuid() != 0:
        return "container mode needs root (to run each submission as a fresh uid)"
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    effective = int(status["CapEff"].strip(), 16)
    if not (effective >> CAP_SETUID & 1 and effective >> CAP_SETGID & 1):
        return "container mode needs CAP_SETUID and CAP_SETGID, which this container dropped"
    from grader import seccomp
    problem = seccomp.missing()
    if problem:
        return f"container mode needs the seccomp filter to refuse network sockets: {problem}"
    return None


def remove_traces(uid: int, wait: float = 10.0) -> None:
    """Container mode, when no zygote could clean up after a worker: kill every process of
    `uid` and remove what it owns in the shared temporary folders (as root)."""
    import time
    from grader.zygote import litter, processes_of
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        left = processes_of(uid)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.005)
    for folder in SHARED_TMP:
        for path in litter(uid, folder):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def unreadable_interpreter() -> list[str]:
    """Container mode: a note when other users cannot read the Python installation (say,
    under /root), so a worker can import only what its zygote imported."""
    for folder in interpreter_folders():
        path = Path(folder)
        for step in [*reversed(path.parents), path]:
            if step.stat().st_mode & 0o005 != 0o005:
                return [f"container mode: {step} is not readable by other users, so a "
                        f"submission can import only what the grader preloaded from {folder}"]
    return []


def nothing_to_protect() -> bool:
    """The student bundle: no solutions and no autograder expected values on this machine."""
    if paths.SOLUTIONS.is_dir():
        return False
    return not any(paths.FIXTURES.glob("*/autograder_expected.pt"))


# ---------------------------------------------------------------------------------------
# Job folders: one per worker, below one root per grader process
# ---------------------------------------------------------------------------------------

_jobs_root = None
_jobs_lock = threading.Lock()


def jobs_root() -> str:
    """This grader's folder of job folders (0711: workers reach their own folder by name
    but list nothing); created once, after sweeping those of graders that died."""
    global _jobs_root
    with _jobs_lock:
        if _jobs_root is None or not os.path.isdir(_jobs_root):
            sweep_job_folders()
            _jobs_root = tempfile.mkdtemp(prefix=f"grader-jobs-{os.getpid()}-")
            os.chmod(_jobs_root, 0o711)
        return _jobs_root


def sweep_job_folders() -> None:
    """Remove job roots left by graders that died (their pid is gone), ours or, as root,
    anyone's."""
    folder = tempfile.gettempdir()
    for entry in os.scandir(folder):
        match = re.fullmatch(r"grader-jobs-(\d+)-\w+", entry.name)
        if not match or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            os.kill(int(match.group(1)), 0)
            continue  # its grader is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if os.geteuid() == 0 or entry.stat(follow_symlinks=False).st_uid == os.geteuid():
            shutil.rmtree(entry.path, ignore_errors=True)


def job_folder(uid: int | None) -> str:
    """A new job folder, 0700 and owned by the worker's uid (when it has one)."""
    path = tempfile.mkdtemp(dir=jobs_root(), prefix="")
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def write_job_file(folder: str, name: str, data: bytes, uid: int | None) -> None:
    """A file of the job folder: 0600, owned by the worker's uid."""
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with open(fd, "wb") as f:
        f.write(data)
    if uid is not None:
        os.chown(path, uid, uid)


# ---------------------------------------------------------------------------------------
# Per-run uids
# ---------------------------------------------------------------------------------------

_lock_folder = None


def lock_folder() -> int:
    """A descriptor of the uid lock folder: fixed, root-owned, 0700, never a link."""
    global _lock_folder
    with _jobs_lock:
        if _lock_folder is None:
            _lock_folder = open_lock_folder(next((f for f in LOCK_FOLDERS if f.parent.is_dir()),
                                                 LOCK_FOLDERS[-1]))
        return _lock_folder


def open_lock_folder(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise Unavailable(f"the uid lock folder {path} is not a folder ({exc.strerror})") from None
    info = os.fstat(fd)
    if info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o077:
        os.close(fd)
        raise Unavailable(f"the uid lock folder {path} must be owned by root with mode 0700 "
                          f"(it is owned by uid {info.st_uid}, mode "
                          f"{stat.S_IMODE(info.st_mode):04o})")
    return fd


class RunUid:
    """A uid no process is using, held (by a lock file) until every process of it is gone.

    The lock keeps every other grader on this host off it; the /proc scan keeps off uids
    whose processes are still alive from anywhere."""

    def __init__(self):
        self.uid, self.lock = None, None
        folder = lock_folder()
        live = live_uids()
        start = (os.getpid() * 7) % len(UID_RANGE)  # spread instances over the range
        for i in range(len(UID_RANGE)):
            uid = UID_RANGE[(start + i) % len(UID_RANGE)]
            if uid in live:
                continue
            fd = os.open(str(uid), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o600, dir_fd=folder)
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
        """Give the uid back once none of its processes is left (they are killed before
        this; a few milliseconds at most)."""
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
