"""`make bench-tests`: how long `make test` takes here, and where the time goes.

Runs `make test` (the same pytest arguments; A=, --full and the worker count passed through)
with a JUnit report, then prints its wall time, the CPU time of every process it ran (workers
and sandboxes included), the time per test file and the slowest tests. `--xml FILE` only
summarizes a report written before (e.g. by `pytest --junitxml=FILE`).

    python tests/benchtests.py [--assignment A] [--full] [--jobs N] [--args "..."] [--top 15]
    python tests/benchtests.py --xml FILE

The machine may be shared: say how loaded it was beside the numbers (the load average is
printed before and after).
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


CPUACCT = Path("/sys/fs/cgroup/cpuacct")  # cgroup v1 CPU accounting (root)
TARGET_MINUTES = 15  # issue 25: the whole `make test`, idle, on a 2-core machine


def run_make_test(report: Path, assignment: str, full: bool, jobs: int,
                  extra: str) -> tuple[float, float, str, int]:
    """(wall seconds, CPU seconds, how the CPU was counted, exit status)."""
    command = ["make", "-s", "test-full" if full else "test", f"A={assignment}", f"JOBS={jobs}",
               f"ARGS=--junitxml={report} {extra}".strip()]
    print("running:", " ".join(command), flush=True)
    group = CPUACCT / f"benchtests-{os.getpid()}"
    try:  # every process the run starts, sandboxes included (rusage loses killed ones)
        group.mkdir()
    except OSError:
        group = None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    enter = (lambda: (group / "cgroup.procs").write_text(str(os.getpid()))) if group else None
    status = subprocess.run(command, cwd=ROOT, preexec_fn=enter).returncode
    wall = time.monotonic() - started
    if group:
        cpu, how = int((group / "cpuacct.usage").read_text()) / 1e9, "cgroup cpuacct"
        group.rmdir()
    else:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        how = "rusage of waited-for children: a lower bound"
    return wall, cpu, how, status


def test_times(report: Path) -> list[tuple[float, str, str]]:
    """(seconds, file, test id) of every test case in a JUnit report, slowest first."""
    found = []
    for case in ET.parse(report).iter("testcase"):
        module = case.get("classname", "")
        file = module.replace(".", "/") + ".py"
        found.append((float(case.get("time", 0.0)), file, f"{file}::{case.get('name')}"))
    return sorted(found, reverse=True)


def summarize(report: Path, top: int) -> None:
    times = test_times(report)
    per_file = defaultdict(float)
    for seconds, file, _ in times:
        per_file[file] += seconds
    total = sum(per_file.values())
    print(f"\n{len(times)} tests, {total:.0f} s of test time (summed over workers)")
    print(f"\n{'seconds':>8}  {'share':>5}  file")
    for file, seconds in sorted(per_file.items(), key=lambda item: -item[1]):
        print(f"{seconds:8.1f}  {seconds / total:5.0%}  {file}")
    print(f"\nslowest {top}:")
    for seconds, _, name in times[:top]:
        print(f"{seconds:8.1f}  {name}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assignment", default="all", help="make test A=... (default: all)")
    p.add_argument("--full", action="store_true", help="time make test-full instead")
    p.add_argument("--jobs", type=int, default=3, help="pytest-xdist workers (make JOBS=...)")
    p.add_argument("--top", type=int, default=15, help="how many of the slowest tests to list")
    p.add_argument("--xml", type=Path, help="only summarize this JUnit report")
    p.add_argument("--args", default="", help="more pytest arguments (make ARGS=...)")
    p.add_argument("--report", type=Path, help="keep the JUnit report here")
    args = p.parse_args()
    if args.xml:
        summarize(args.xml, args.top)
        return 0
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}, "
          f"{os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        report = (args.report or Path(tmp) / "report.xml").resolve()
        wall, cpu, how, status = run_make_test(report, args.assignment, args.full, args.jobs,
                                               args.args)
        print(f"\nload average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"wall time {wall / 60:.1f} min ({wall:.0f} s), CPU time {cpu / 60:.1f} min "
              f"({cpu:.0f} s, {cpu / wall:.2f} cores busy on average; {how}), exit status {status}")
        if args.assignment == "all" and not args.full:
            met = "met" if wall <= TARGET_MINUTES * 60 else "MISSED"
            print(f"target: make test within {TARGET_MINUTES} min on an idle 2-core machine: "
                  f"{met} here ({os.cpu_count()} cores; read it with the load averages above)")
        if report.is_file():
            summarize(report, args.top)
    return status


if __name__ == "__main__":
    sys.exit(main())
