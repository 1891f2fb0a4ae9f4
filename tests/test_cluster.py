"""Batch grading on a Dask cluster (issue 15): the same gradebook as --jobs, and a worker that
dies mid-batch costs a retry, never a row."""
import csv
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from grader import authoring, paths
from grader.batch import grade_all
from grader.sandbox import Limits
from helpers import NEVER_RETURNS

distributed = pytest.importorskip("distributed")

CORPUS = Path(__file__).parent / "corpus"
LIMITS = Limits(case_time=10.0)


def class_of(tmp_path: Path) -> list[Path]:
    """Correct, broken and hostile `transformer` submissions, as folders, a .py and a zip."""
    reference = (paths.SOLUTIONS / "transformer.py").read_text()
    made = []
    for name, text in [("correct", reference),
                       ("skeleton", (paths.ASSIGNMENTS / "transformer.py").read_text()),
                       ("hangs", reference + NEVER_RETURNS),
                       ("reads_git", reference + "\n" + (CORPUS / "reads_git.py").read_text())]:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "transformer.py").write_text(text)
        made.append(folder)
    mutant = tmp_path / "no_scale"
    authoring.write_mutant("transformer", "no_scale", mutant)
    single = tmp_path / "single.py"
    single.write_text(reference)
    return made + [mutant, single]


def rows(out: Path) -> list[str]:
    return (out / "gradebook.csv").read_text().splitlines()


def test_a_local_cluster_writes_the_same_gradebook_as_jobs(tmp_path):
    submissions = class_of(tmp_path)
    grade_all(submissions, "transformer", tmp_path / "jobs", jobs=2, training=False,
              limits=LIMITS, progress=False)
    grade_all(submissions, "transformer", tmp_path / "dask", training=False, limits=LIMITS,
              progress=False, scheduler="local:2")
    assert rows(tmp_path / "dask") == rows(tmp_path / "jobs")
    with open(tmp_path / "dask" / "gradebook.csv", newline="") as handle:
        table = {row["submission"]: row for row in csv.DictReader(handle)}
    assert table["correct"]["total"] == table["correct"]["max"] == table["single"]["total"]
    assert table["skeleton"]["total"] == "0" and table["correct"]["reason"] == ""
    for sid in table:
        assert (tmp_path / "dask" / sid / "results.json").is_file()


def test_a_worker_killed_mid_batch_costs_a_retry_not_a_row(tmp_path):
    from distributed import Client, LocalCluster
    submissions = class_of(tmp_path)[:3]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        killed = []

        def kill_a_busy_worker():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [w for w, tasks in client.processing().items() if tasks]
                if busy:
                    time.sleep(1.0)  # let it get into the grading
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                time.sleep(0.05)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        results = grade_all(submissions, "transformer", tmp_path / "out", training=False,
                            limits=LIMITS, progress=False, scheduler=cluster.scheduler_address)
        killer.join()
    assert killed, "no worker was ever busy"
    with open(tmp_path / "out" / "gradebook.csv", newline="") as handle:
        table = {row["submission"]: row for row in csv.DictReader(handle)}
    assert len(table) == len(submissions) and len(results) == len(submissions)
    assert {row["status"] for row in table.values()} == {"graded"}  # nothing left ungraded
    assert table["correct"]["total"] == table["correct"]["max"]


def test_a_bad_scheduler_address_is_one_line():
    from helpers import cli
    run = cli("batch", str(paths.SOLUTIONS), "--assignment", "transformer", "--no-training",
              "--scheduler", "local:two", "--out", "/tmp/never-written")
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0
    assert "local:N" in run.stderr


def test_the_local_scheduler_refuses_clients_without_its_credentials():
    """`local:N` speaks TLS with credentials made for this run: a plain client, a client
    with TLS credentials of its own, and a raw TCP connection are all refused."""
    from distributed import Client
    from distributed.security import Security
    from grader.cluster import connect
    client, cluster = connect("local:1")
    try:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        assert client.submit(sum, [40, 2]).result(timeout=60) == 42  # ours gets in
        for attempt in (dict(), dict(security=Security.temporary())):
            with pytest.raises(Exception):
                Client(address, timeout="5s", **attempt).close()
        with pytest.raises(Exception):
            Client(address.replace("tls://", "tcp://"), timeout="5s").close()
    finally:
        client.close()
        cluster.close()
