"""The leak check (grader/leaks.py): no function of the student bundle or of the worker's
import surface passes a case in place of a student part; a planted one is found."""
import importlib.util
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch

from grader import leaks
from grader.authoring import solution_names

PLANTED = '''
import torch


def planted_cosine_matrix(a, b):
    """An answer to clip_dino's get_similarity_no_loop, hidden among harmless code."""
    a = a / a.norm(dim=-1, keepdim=True)
    return a @ (b / b.norm(dim=-1, keepdim=True)).T


def planted_writer(a, b):
    """Grader code that writes a file when called with odd arguments."""
    with open(TARGET, "w") as f:
        f.write("written")
    return a


class PlantedClip:
    def contrastive(self, image, text, logit_scale):  # a method: never a function part
        return torch.zeros(())
'''


def check_with(assignment: str, planted: str | None):
    """leaks.check, with the functions of the module file `planted` among the candidates."""
    if planted:
        spec = importlib.util.spec_from_file_location("planted", planted)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        pool = leaks.candidates() + leaks.candidates_of([module])
        leaks.candidates = lambda: pool
    return leaks.check(assignment)


def child():
    """A child process for leaks.check: whatever a candidate does to its process (limits, a
    seccomp filter, signal handlers) never reaches this test process. Spawned, not forked: a
    fork of a process whose OpenMP threads ran can deadlock in libgomp. A child that dies
    fails the test (BrokenProcessPool), where multiprocessing.Pool would wait forever."""
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))


def checked_apart(assignment: str, planted: str | None = None):
    """leaks.check in a fresh child process."""
    with child() as pool:
        return pool.submit(check_with, assignment, planted).result()


@pytest.fixture(scope="module")
def checker():
    """One child for every assignment's check this worker runs, as `python -m grader leaks`
    checks them all in one process (torch and the candidates are imported once)."""
    with child() as pool:
        yield lambda assignment: pool.submit(check_with, assignment, None).result()


@pytest.mark.parametrize("assignment", solution_names())
def test_nothing_students_receive_or_the_worker_imports_passes_a_case(assignment, checker):
    report = checker(assignment)
    assert not report.leaks, "\n".join(map(str, report.leaks))
    assert report.probed > 0  # candidates were really tried in place of the parts


def test_a_planted_answer_is_found_and_odd_calls_stay_harmless(tmp_path):
    target = tmp_path / "written.txt"
    path = tmp_path / "planted.py"
    path.write_text(PLANTED.replace("TARGET", repr(str(target))))
    report = checked_apart("clip_dino", str(path))
    found = {(leak.part, leak.candidate) for leak in report.leaks}
    assert found == {("get_similarity_no_loop", "planted.planted_cosine_matrix")}
    assert not target.exists()  # the writer was called and refused


def test_a_part_is_plugged_with_its_own_calling_convention():
    def part(left, right, tau, device="cuda"):
        raise NotImplementedError

    def formula(a, b, tau):
        return (a, b, tau)
    plugged = leaks.plugged(part, formula, False, False)
    assert plugged(1, 2, 0.5, device="cpu") == (1, 2, 0.5)
    assert leaks.plugged(part, lambda a, b, c, d, e: 0, False, False) is None  # needs more
    assert leaks.plugged(part, lambda *, key: 0, False, False) is None       # a keyword

    class Module:
        def forward(self, x):
            raise NotImplementedError
    plugged = leaks.plugged(Module.forward, lambda x: x + 1, True, False)
    assert plugged(Module(), 1) == 2  # a function in place of a method drops self
    assert leaks.plugged(part, Module.forward, False, True) is None  # no instance to give


def test_candidates_cannot_write_start_processes_or_sleep(tmp_path):
    import os
    import subprocess
    import time
    with leaks.harmless():
        for attempt in (lambda: open(tmp_path / "x", "w"), lambda: os.mkdir(tmp_path / "d"),
                        lambda: subprocess.Popen(["true"]), lambda: time.sleep(0),
                        lambda: torch.save({}, tmp_path / "t.pt")):
            with pytest.raises(leaks.Refused):
                attempt()
        with open(leaks.__file__) as f:  # reading goes on
            assert f.read(1)
        with pytest.raises(leaks.Refused):
            open(0)  # a descriptor of the process's own: its file object would close it
    assert not list(tmp_path.iterdir())
    open(tmp_path / "after", "w").close()  # everything is back
