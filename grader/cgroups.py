"""Control groups: one per worker, created and removed by the trusted parent.

A cgroup counts what per-process rlimits cannot: the memory of every child process, of
shared memory and of files written to tmpfs (/tmp, /dev/shm, memfd), the number of tasks
(processes and threads together) and CPU time across all of them. cgroup v2 (one unified
hierarchy, Gradescope and modern hosts) and v1 (one hierarchy per controller) are both
used where the grader runs as root and the hierarchy is writable; each controller that
cannot be used is named in one line (`missing()`), and grading goes on with the others.

Groups are named `grader-<pid>-<n>` below the grader's own cgroup (v1: in each
controller's hierarchy; v2: below its own group when it may enable controllers there,
else beside it), so groups of a grader that died are recognised and swept.
"""
import functools
import itertools
import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
WHAT = {"memory": "memory across child processes and shared memory",
        "pids": "tasks across processes", "cpu": "CPU share"}
PERIOD_US = 100_000  # CPU quota period
_names = itertools.count()
_lock = threading.Lock()


@dataclass(frozen=True)
class Hierarchy:
    """Where groups are made: v1 has a folder per controller, v2 one for all."""
    version: int
    bases: tuple  # ((controller, folder below which groups are made), ...)
    problems: tuple  # one line per controller that cannot be used

    def base(self, controller: str) -> Path | None:
        return dict(self.bases).get(controller)


def own_paths() -> dict[str, str]:
    """{controller or '' (v2): the grader's cgroup path} from /proc/self/cgroup."""
    found = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            found[name] = path
    return found


def writable(folder: Path) -> bool:
    return folder.is_dir() and os.access(folder, os.W_OK)


def v1_hierarchy(own: dict) -> Hierarchy:
    bases, problems = [], []
    for controller in CONTROLLERS:
        folder = ROOT / controller / own.get(controller, "/").lstrip("/")
        if controller in own and writable(folder):
            bases.append((controller, folder))
        else:
            problems.append(f"{controller} (cgroup v1 folder {folder} is not writable)")
    return Hierarchy(1, tuple(bases), tuple(problems))


def v2_hierarchy(own: dict) -> Hierarchy:
    """Groups below the grader's own group if it can enable the controllers there (it
    cannot while it holds processes, unless it is the root), else beside it."""
    mine = ROOT / own.get("", "/").lstrip("/")
    wanted = set(CONTROLLERS)
    enabled = set((mine / "cgroup.subtree_control").read_text().split()) if mine.is_dir() else set()
    if not wanted <= enabled and writable(mine):
        for controller in wanted - enabled:
            try:
                (mine / "cgroup.subtree_control").write_text(f"+{controller}")
                enabled.add(controller)
            except OSError:
                pass
    base = mine
    if not wanted <= enabled and mine != ROOT and writable(mine.parent):
        beside = set((mine / "cgroup.controllers").read_text().split())
        if len(beside & wanted) > len(enabled & wanted):
            base, enabled = mine.parent, beside  # the parent enables them for its children
    usable = [c for c in CONTROLLERS if c in enabled and writable(base)]
    problems = [f"{c} (cgroup v2: not enabled below {base}, which holds processes)"
                for c in CONTROLLERS if c not in usable]
    return Hierarchy(2, tuple((c, base) for c in usable), tuple(problems))


def controls(controller: str) -> bool:
    """Whether this grader can limit `controller` ("memory", "pids", "cpu") here."""
    found = hierarchy()
    return found is not None and found.base(controller) is not None


@functools.lru_cache(maxsize=None)
def hierarchy() -> Hierarchy | None:
    """The cgroup hierarchy this grader can use, or None (not root, none mounted)."""
    if os.geteuid() != 0:
        return None
    try:
        own = own_paths()
        if (ROOT / "cgroup.controllers").is_file():
            found = v2_hierarchy(own)
        elif (ROOT / "memory").is_dir() or (ROOT / "pids").is_dir():
            found = v1_hierarchy(own)
        else:
            return None
    except OSError:
        return None
    sweep(found)
    return found


def missing() -> str | None:
    """One line naming the limits no cgroup enforces here, or None when all hold."""
    found = hierarchy()
    if found is None:
        why = "not root" if os.geteuid() != 0 else f"no cgroup hierarchy under {ROOT}"
        return (f"no cgroup ({why}): memory is limited per process only (child processes, "
                "shared memory and tmpfs files are not counted), tasks per uid, no CPU share")
    if not found.problems:
        return None
    names = ", ".join(WHAT[p.split()[0]] for p in found.problems)
    return f"cgroup limits missing for {names}: " + "; ".join(found.problems)


class Cgroup:
    """One worker's group: limits written before any process joins, removed after."""

    def __init__(self, memory: int, tasks: int, cpus: float):
        self.found = hierarchy()
        if self.found is None or not self.found.bases:
            raise OSError("no usable cgroup hierarchy")
        with _lock:
            self.name = f"grader-{os.getpid()}-{next(_names)}"
        self.folders = []
        try:
            for controller, base in self.found.bases:
                folder = base / self.name
                if folder not in self.folders:
                    folder.mkdir()
                    self.folders.append(folder)
                self.limit(controller, folder, memory, tasks, cpus)
        except OSError:
            self.remove()
            raise

    def limit(self, controller, folder: Path, memory: int, tasks: int, cpus: float) -> None:
        quota = max(int(cpus * PERIOD_US), 1000)
        if self.found.version == 2:
            settings = {"memory": [("memory.max", memory), ("memory.swap.max", 0)],
                        "pids": [("pids.max", tasks)],
                        "cpu": [("cpu.max", f"{quota} {PERIOD_US}")]}[controller]
        else:
            settings = {"memory": [("memory.limit_in_bytes", memory),
                                   ("memory.memsw.limit_in_bytes", memory)],
                        "pids": [("pids.max", tasks)],
                        "cpu": [("cpu.cfs_period_us", PERIOD_US),
                                ("cpu.cfs_quota_us", quota)]}[controller]
        for name, value in settings:
            if (folder / name).exists():  # no swap accounting: nothing to set there
                (folder / name).write_text(str(value))

    def add(self, pid: int) -> None:
        """Move `pid` (not yet running anything untrusted) into the group."""
        for folder in self.folders:
            (folder / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        found = set()
        for folder in self.folders:
            try:
                found.update(int(p) for p in (folder / "cgroup.procs").read_text().split())
            except OSError:
                continue
        return sorted(found)

    def kill(self, wait: float = 10.0) -> bool:
        """SIGKILL every process in the group until none is left; True when empty."""
        deadline = time.monotonic() + wait
        for folder in self.folders:
            if (folder / "cgroup.kill").exists():
                try:
                    (folder / "cgroup.kill").write_text("1")
                except OSError:
                    pass
        while True:
            left = self.pids()
            if not left:
                return True
            if time.monotonic() > deadline:
                return False
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.002)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of the group for going over its memory."""
        for folder in self.folders:
            for name in ("memory.events", "memory.oom_control"):
                try:
                    text = (folder / name).read_text()
                except OSError:
                    continue
                match = re.search(r"^oom_kill (\d+)", text, re.M)
                if match and int(match.group(1)) > 0:
                    return True
        return False

    def remove(self) -> None:
        """Remove the (emptied) group; a few retries while the last exits settle."""
        for folder in self.folders:
            remove_folder(folder)
        self.folders = []


def remove_folder(folder: Path, wait: float = 2.0) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(found: Hierarchy) -> None:
    """Kill and remove groups left by graders that died (their pid is gone)."""
    for _, base in found.bases:
        for folder in base.glob("grader-*-*"):
            match = re.fullmatch(r"grader-(\d+)-\d+", folder.name)
            if not match or pid_alive(int(match.group(1))):
                continue
            for pid in (folder / "cgroup.procs").read_text().split() if folder.is_dir() else []:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            remove_folder(folder)
