"""The sandbox's forkserver: a fresh interpreter that imports torch once and then forks
one worker per submission. It never sees a fixture: it is exec'd, not forked from us.

Kept free of torch imports so the command line can start it first and let both processes
import torch at the same time.
"""
import multiprocessing
import multiprocessing.forkserver

# "__main__": a script that starts grading is imported once here, not in every worker.
PRELOAD = ["__main__", "torch", "grader.sandbox", "grader.cases", "grader.suites", "dlkit"]
_context = None


def context():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def start() -> None:
    """Start the forkserver now (it preloads in the background)."""
    context()
    multiprocessing.forkserver.ensure_running()
