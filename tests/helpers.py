"""Shared by the project's tests: grade an implementation, run the command line."""
import functools
import subprocess
import sys
from pathlib import Path

from grader import paths
from grader.authoring import write_mutant
from grader.grade import grade

ROOT = paths.ROOT


@functools.lru_cache(maxsize=None)
def graded(assignment: str, impl: str, training: bool = False):
    """Grade once per session (results are cached: grading is deterministic)."""
    return grade(assignment, impl, device="cpu", training=training)


def graded_mutant(assignment: str, mutant: str, tmp: Path):
    folder = tmp / mutant
    write_mutant(assignment, mutant, folder)
    return grade(assignment, str(folder), device="cpu", training=False)


def cli(*args: str, timeout: float = 600, cwd=ROOT, env=None) -> subprocess.CompletedProcess:
    """`python -m grader ARGS`, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "grader", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_gradescope_schema(data: dict) -> None:
    """The fields Gradescope reads, with the types it expects."""
    assert isinstance(data["score"], (int, float))
    assert isinstance(data["execution_time"], (int, float))
    assert isinstance(data["tests"], list)
    for test in data["tests"]:
        assert isinstance(test["name"], str) and test["name"]
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed")
        assert isinstance(test["output"], str)
        assert test["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
    assert abs(data["score"] - sum(t["score"] for t in data["tests"])) < 1e-9


def browser() -> str | None:
    """The headless browser `make install` provides (Debian's chromium), if any."""
    import shutil
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)


def headless(page: Path, *args: str, tmp: Path) -> subprocess.CompletedProcess:
    """Open `page` in headless Chromium, offline and with a fresh profile, with `args`
    (`--dump-dom`, `--screenshot=FILE`)."""
    return subprocess.run(
        [browser(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp / 'chromium-profile'}", *args,
         page.resolve().as_uri()], capture_output=True, text=True, timeout=120)
