"""CPU time of every notebook cell against the estimate it prints, quick or full settings.

    python tests/bench_notebooks.py gpt            # quick mode (what `make test` runs)
    python tests/bench_notebooks.py gpt --full     # the students' settings (minutes)

Prints one line per cell that takes over a second or states an estimate, then the total.
The notebooks' estimates are CPU-seconds on one torch thread: run this on an idle machine
to calibrate them, and compare ratios, not seconds, on a busy one.
"""
import argparse
import sys
import time

from test_notebooks import NOTEBOOKS, execute, first_line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=NOTEBOOKS, metavar="NOTEBOOK")
    parser.add_argument("--full", action="store_true", help="the students' settings, not quick")
    args = parser.parse_args()
    for name in args.names:
        started = time.monotonic()
        _, cells = execute(name, quick=not args.full, timeout=3600)
        wall = time.monotonic() - started
        print(f"== {name} ({'full' if args.full else 'quick'}) ==")
        print(f"{'cell':>4} {'CPU s':>7} {'stated':>7} {'ratio':>6}  first line")
        for index, cell in enumerate(cells):
            if cell.cpu >= 1 or cell.stated is not None:
                stated = f"{cell.stated:7.1f}" if cell.stated is not None else f"{'-':>7}"
                ratio = f"{cell.cpu / cell.stated:6.2f}" if cell.stated else f"{'':>6}"
                print(f"{index:>4} {cell.cpu:7.1f} {stated} {ratio}  {first_line(cell.source)}")
        print(f"total: {sum(c.cpu for c in cells):.1f} CPU-s in the kernel, {wall:.1f} s wall "
              f"(kernel start included)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
