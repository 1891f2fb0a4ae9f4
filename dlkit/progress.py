"""Progress bars that a saved notebook keeps, and the time estimates the notebooks print.

`tqdm(...)` is tqdm's text bar (same arguments). In a terminal it is tqdm as usual; inside
Jupyter it draws into one output that every update replaces, so the saved notebook shows
the bar's final state (tqdm's widget bar is saved as "0%", because widgets are not saved).

`estimate(cpu_seconds)` prints how long the cell takes, in CPU-seconds on one torch thread:
the notebooks run on one thread, like the grader's training cases, so that figure holds on
a busy laptop too, where the wall time grows but the work does not.
"""
import sys

from tqdm.std import tqdm as text_tqdm

# Where the notebooks' estimates were measured (CPU time of the kernel, one torch thread).
MEASURED_ON = "a 2-core Intel Xeon VM, torch 2.13.0, Dec 2026"
# A cell that prints no estimate takes at most this many CPU-seconds.
UNSTATED_CPU_SECONDS = 10.0

stated = None  # the last estimate printed: read by the course's notebook timing test


def in_jupyter() -> bool:
    """True inside a Jupyter kernel (the IPython shell that talks over ZMQ)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return type(shell).__name__ == "ZMQInteractiveShell"


class OutputLine:
    """A file for tqdm that keeps one notebook output holding the latest line it wrote."""
    encoding = "utf-8"  # tqdm draws its bar with block characters, not '#'

    def __init__(self):
        from IPython.display import display
        self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()  # tqdm rewrites the whole line after a '\r'
        if line:  # closing writes blanks: keep the final state instead
            self.handle.update({"text/plain": line}, raw=True)

    def flush(self) -> None:
        pass


def tqdm(*args, **kwargs):
    """tqdm's text progress bar; in Jupyter it updates one output in place (see above)."""
    if in_jupyter() and "file" not in kwargs and not kwargs.get("disable"):
        kwargs.update(file=OutputLine(), ncols=100)
        kwargs.setdefault("mininterval", 0.5)
    return text_tqdm(*args, **kwargs)


def estimate(cpu_seconds: float, what: str = "this cell") -> None:
    """Print how long `what` takes: `cpu_seconds` of CPU time on one torch thread."""
    global stated
    stated = float(cpu_seconds)
    shown = f"{cpu_seconds:.0f}" if cpu_seconds >= 10 else f"{cpu_seconds:.1f}"
    print(f"estimate: {what} takes about {shown} CPU-seconds on one thread ({MEASURED_ON}); "
          "an idle machine takes about that long, a busy one longer on the clock")
