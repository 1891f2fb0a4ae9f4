"""Grading a class on a Dask distributed cluster: one task per submission.

The client reads each submission into bytes (a folder is zipped in memory: no shared
filesystem is assumed), submits one task per submission, and gets plain data back; only the
client writes results.json files and the gradebook. Each worker grades exactly as `--jobs`
does locally: `grader.grade.grade`, in its own sandbox, with the worker's own copy of the
grader and fixtures. A worker that dies mid-task costs a retry (Dask reschedules the task);
a task that still fails is reported for its submission only.

`local:N` talks TLS with throwaway credentials made for this run (a client without them is
refused: the scheduler would otherwise run any local user's task as this user). A real
cluster takes its TLS settings from Dask's configuration (README, Security).

Dask is imported only here, and only when `--scheduler` is given.
"""
import contextlib
import io
import logging
import signal
import tempfile
import zipfile
from dataclasses import asdict
from pathlib import Path

from grader.cases import Verdict

RETRIES = 2            # extra tries of one submission after a worker died or the task failed
MAX_FOLDER = 256 << 20  # bytes of one submitted folder, zipped in memory on the client


class ClusterError(Exception):
    """A scheduler address that does not work: one line."""


def submission_bytes(path: Path) -> tuple[str, bytes]:
    """(file name, bytes) of a submission: a .zip or .py as it is, a folder zipped."""
    if path.is_file():
        return ("submission.zip" if path.suffix == ".zip" else path.name), path.read_bytes()
    buffer, total = io.BytesIO(), 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file() and not file.is_symlink():
                total += file.stat().st_size
                if total > MAX_FOLDER:
                    raise ValueError(f"{path.name}: folder larger than {MAX_FOLDER >> 20} MB")
                archive.write(file, file.relative_to(path).as_posix())
    return "submission.zip", buffer.getvalue()


def remote_grade(assignment: str, file_name: str, data: bytes, options: dict) -> dict:
    """On a worker: write the submission to a private folder, grade it, return plain data."""
    from grader.grade import grade
    with tempfile.TemporaryDirectory(prefix="grader-cluster-") as tmp:
        path = Path(tmp) / Path(file_name).name
        path.write_bytes(data)
        graded = grade(assignment, str(path), **options)
    return {"verdicts": [asdict(v) for v in graded.verdicts], "notes": list(graded.notes),
            "seconds": graded.seconds}


def connect(scheduler: str):
    """A Dask client for `ADDRESS` (a running scheduler) or `local:N` (a LocalCluster of N
    single-threaded worker processes on this machine, over TLS with throwaway credentials)."""
    from dask.distributed import Client, LocalCluster
    from distributed.security import Security
    if scheduler.startswith("local:"):
        try:
            workers = int(scheduler.split(":", 1)[1])
        except ValueError:
            raise ClusterError(f"--scheduler {scheduler}: use local:N with a whole number N")
        if workers < 1:
            raise ClusterError(f"--scheduler {scheduler}: N must be at least 1")
        security = Security.temporary()  # a fresh key and certificate, in memory only
        with ctrl_c_ignored():  # the worker processes inherit it
            # Errors only: the client reports each submission's failure itself, and a
            # shutdown after Ctrl-C would log a warning per cancelled task.
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR,
                                   protocol="tls://", security=security)
        return Client(cluster, security=security), cluster
    try:
        return Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"--scheduler {scheduler}: cannot reach the scheduler ({exc})")


@contextlib.contextmanager
def ctrl_c_ignored():
    """SIGINT ignored while processes are started: Ctrl-C in a terminal reaches the whole
    process group, and only the client should answer it (one line, not a traceback from
    every worker)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def grade_on_cluster(items: list[tuple[str, Path]], assignment: str, scheduler: str,
                     options: dict):
    """Yield (submission id, graded data or None, error or None) as tasks finish."""
    from dask.distributed import as_completed
    client, cluster = connect(scheduler)
    try:
        futures = {}
        for sid, path in items:
            try:
                name, data = submission_bytes(path)
            except (OSError, ValueError) as exc:
                yield sid, None, f"could not read the submission ({exc})"
                continue
            future = client.submit(remote_grade, assignment, name, data, options,
                                   key=f"grade-{assignment}-{sid}", pure=False,
                                   retries=RETRIES)
            futures[future] = sid
        for future in as_completed(futures):
            sid = futures[future]
            try:
                yield sid, future.result(), None
            except Exception as exc:  # noqa: BLE001 - one submission's failure, reported
                text = str(exc).splitlines()[0][:200] if str(exc) else ""
                yield sid, None, f"failed to grade on the cluster: {type(exc).__name__}: {text}"
    except (KeyboardInterrupt, GeneratorExit):
        # Closing a cluster in the middle of its tasks logs warnings nobody needs now.
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def verdicts_of(data: dict) -> list[Verdict]:
    return [Verdict(**v) for v in data["verdicts"]]
