"""Test selection and the session's shared work.

`--assignment A` (make test A=...) keeps A's tests and the engine's: a test belongs to an
assignment through its `assignment` parameter or its file (`tests/test_<a>.py`), and every
other test is the engine's. `--full` (make test-full) adds the tests marked `full` and audits
on FULL_AUDIT_SEEDS seeds. `--busy N` runs the training cases beside N busy processes
(without it, each is held to 2/3 of a core by its cgroup where the cpu controller exists).
The longest tests come first, so that with `pytest -n 2 --dist load --maxschedchunk 1` (make
test) no worker is left with a long test while the other has nothing to do.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import ASSIGNMENTS, Proof, recorded_run_uids, sandbox_trained  # noqa: E402

AUDIT_SEEDS = 1        # make test: a fresh seed per case (the two stored sets are judged too)
FULL_AUDIT_SEEDS = 20  # make test-full
# The tests that take half a minute or more (measured with tests/benchtests.py), run first
# in this order, so that only short tests are left for the end; the last five mostly wait
# (on sleeping cases, another user, a cluster) and overlap with the others' work.
LONGEST_FIRST = ["test_reference_reaches_training_threshold",
                 "test_notebook_executes_with_the_reference",
                 "test_the_whole_corpus_in_one_batch",
                 "test_audit_is_clean_on_fresh_seeds",
                 "test_generated_files_are_in_sync",
                 "test_a_local_cluster_writes_the_same_gradebook_as_jobs",
                 "test_a_worker_killed_mid_batch_costs_a_retry_not_a_row",
                 "test_a_worker_and_its_children_share_one_limited_cgroup",
                 "test_another_user_cannot_read_a_job_folder_or_the_lock_folder",
                 "test_the_whole_corpus_in_container_mode"]


def pytest_addoption(parser):
    group = parser.getgroup("course", "the course's test selection")
    group.addoption("--assignment", default="all", metavar="A",
                    help="only assignment A's tests and the engine's (make test A=...)")
    group.addoption("--full", action="store_true",
                    help="release checks too: tests marked full, audits on "
                         f"{FULL_AUDIT_SEEDS} seeds (make test-full)")
    group.addoption("--busy", type=int, default=0, metavar="N",
                    help="run the training cases beside N processes that each keep a core busy")


def pytest_configure(config):
    config.addinivalue_line("markers", "full: repetition for releases, run by make test-full")
    wanted = config.getoption("assignment")
    if wanted != "all" and wanted not in ASSIGNMENTS:
        raise pytest.UsageError(f"--assignment {wanted}: no such assignment; known: "
                                f"{', '.join(ASSIGNMENTS)}")


def assignment_of(item) -> str | None:
    """The assignment a test belongs to, or None for the engine's tests."""
    params = getattr(item, "callspec", None)
    if params is not None and params.params.get("assignment") in ASSIGNMENTS:
        return params.params["assignment"]
    name = item.path.stem.removeprefix("test_")
    return name if name in ASSIGNMENTS else None


def pytest_collection_modifyitems(config, items):
    wanted, full = config.getoption("assignment"), config.getoption("full")
    kept, dropped = [], []
    for item in items:
        owner = assignment_of(item)
        unwanted = wanted != "all" and owner not in (None, wanted)
        (dropped if unwanted or (item.get_closest_marker("full") and not full) else
         kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    kept.sort(key=rank)  # stable: the rest keep their order
    items[:] = kept


def rank(item) -> int:
    name = getattr(item, "originalname", item.name)
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


@pytest.fixture(scope="session")
def audit_seeds(request) -> int:
    return FULL_AUDIT_SEEDS if request.config.getoption("full") else AUDIT_SEEDS


@pytest.fixture(scope="session")
def proof(request, tmp_path_factory, shared_folder):
    """proof(A): assignment A's `Proof`, built once per session (per xdist worker; their
    runs of each variant are shared); with --full every variant runs every case."""
    built = {}

    def of(assignment: str) -> Proof:
        if assignment not in built:
            built[assignment] = Proof(assignment, tmp_path_factory.mktemp(assignment),
                                      shared_folder, every_case=request.config.getoption("full"))
        return built[assignment]
    return of


@pytest.fixture(scope="session")
def shared_folder(tmp_path_factory) -> Path:
    """A folder this whole run shares, every xdist worker included (for `helpers.once`)."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # this run's folder, holding one folder per worker
    return shared


@pytest.fixture(scope="session")
def trained(request, shared_folder):
    """trained(A, case): the reference's sandboxed verdict on one training case, run once per
    session (xdist workers share it), beside `--busy N` busy processes, or held to 2/3 of a
    core without them (`helpers.sandbox_trained`)."""
    busy = request.config.getoption("busy")
    return lambda assignment, case: sandbox_trained(assignment, case, busy, shared_folder)


@pytest.fixture
def run_uids() -> set:
    """The per-run uids this test's workers got (other graders may be running meanwhile)."""
    with recorded_run_uids() as got:
        yield got
