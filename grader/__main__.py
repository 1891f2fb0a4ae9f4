"""Command line: python -m grader {skeletons,notebooks,fixtures,grade,batch,submit,release,audit,mutant,leaks}

Every command prints one clear line and exits 2 on bad input; `grade` exits 0 whenever
grading completed, whatever the score, and 3 (writing no results) when no sandbox can run
student code here: a staff problem, never a score.
"""
import argparse
from dataclasses import replace
import os
import sys
import time
from pathlib import Path

from grader import paths


def generated(kind: str, stale: list[str], check: bool) -> int:
    if check and stale:
        print(f"out of date (run `python -m grader {kind}`): {', '.join(stale)}")
        return 1
    print(f"{kind}: " + (f"wrote {', '.join(stale)}" if stale else "up to date"))
    return 0


def cmd_skeletons(args) -> int:
    from grader.authoring import skeletons
    return generated("skeletons", skeletons(check=args.check), args.check)


def cmd_notebooks(args) -> int:
    from grader.notebooks import notebooks
    return generated("notebooks", notebooks(check=args.check), args.check)


def cmd_fixtures(args) -> int:
    from grader.authoring import fixtures, solution_names, stale_variants
    from grader.suites import load_suite
    names = args.assignments or solution_names()
    for name in names:
        load_suite(name)  # an unknown name is one line, before any work
    broken = {name: stale_variants(name) for name in names}
    if any(broken.values()):
        for name, problems in broken.items():
            if problems:
                print(f"fixtures {name}: {len(problems)} mutants or equivalents no longer apply "
                      f"to solutions/{name}.py (each is a list of exact text edits of it; "
                      f"update their texts in solutions/{name}_mutants.py or "
                      f"_equivalents.py):")
                print("\n".join(problems))
        return 1
    stale = []
    for name in names:
        started = time.monotonic()
        changed, drift = fixtures(name, check=args.check)
        stale += changed
        verb = "differ" if args.check else "wrote"
        print(f"fixtures {name}: " + (f"{verb} {', '.join(changed)}" if changed else "up to date")
              + f" (largest float drift: {drift:.2%} of its case's tolerance; "
              f"{time.monotonic() - started:.1f} s)")
    return 1 if args.check and stale else 0


def progress_bar(total: int, label: str):
    """A progress bar on a terminal; elsewhere (CI logs, pipes) one line per finished case."""
    from tqdm.auto import tqdm
    tty = sys.stderr.isatty()
    bar = tqdm(total=total, desc=label, unit="case", leave=False, file=sys.stderr,
               disable=not tty)
    done = []

    def tick(name):
        bar.set_postfix_str(name)
        bar.update(1)
        done.append(name)
        if not tty:
            print(f"{label}: ran {len(done)}/{total} {name}", file=sys.stderr, flush=True)
    return bar, tick


def cmd_grade(args) -> int:
    from grader import report
    from grader.grade import checked_setup, grade, grade_outputs
    from grader.sandbox import Limits, NoSandbox, require_sandbox
    from grader.suites import available
    names = [args.assignment] if args.assignment != "all" else [
        a for a in available() if (paths.ASSIGNMENTS / f"{a}.py").is_file()]
    if not names:
        raise ValueError(f"no assignment modules in {paths.ASSIGNMENTS}")
    shown = {}
    for name in names:  # a broken setup is one line before anything is graded
        checked_setup(name, "autograder" if args.outputs else args.set, args.cases,
                      not args.no_training)
        shown.update({case if len(names) == 1 else f"{name}/{case}": value for case, value
                      in report.visibility_of(name, args.visibility).items()})
    if not args.outputs:
        require_sandbox(Limits(insecure=True if args.insecure else None))
    results = []
    for name in names:
        if args.outputs:
            graded = grade_outputs(name, Path(args.outputs), cases=args.cases)
            note = f"outputs from {args.outputs}"
        else:
            from grader.suites import load_suite
            count = len(load_suite(name).select(args.cases, not args.no_training))
            bar, tick = progress_bar(count, name)
            # --insecure: limits only; otherwise limits only where nothing is secret (auto).
            limits = Limits(insecure=True if args.insecure else None)
            graded = grade(name, args.impl, device=device_name(args.device),
                           which=args.set, cases=args.cases, training=not args.no_training,
                           progress=tick, limits=limits)
            bar.close()
            note = f"{args.impl}, {graded.fixture_set} set, {device_name(args.device)}"
        results.append((graded, note))
    if any(v.message.startswith("sandbox unavailable") for g, _ in results for v in g.verdicts):
        raise NoSandbox("sandbox unavailable while grading: "
                        + next(v.message for g, _ in results for v in g.verdicts
                               if v.message.startswith("sandbox unavailable"))
                        + ". No results were written")
    if args.results:  # written first: a failure printing the table never loses it
        # One results.json for everything graded; names carry the assignment when several.
        graded_all = [g for g, _ in results]
        verdicts = [replace(v, name=f"{g.assignment}/{v.name}" if len(results) > 1 else v.name)
                    for g in graded_all for v in g.verdicts]
        report.write_results(Path(args.results), report.results(
            verdicts, sum(g.seconds for g in graded_all),
            notes=[n for g in graded_all for n in g.host + g.notes], visibility=shown))
    for graded, note in results:
        print(report.table(graded.assignment, graded.verdicts, graded.seconds, note))
        for line in graded.host + graded.notes:
            print(f"note: {line}")
    results = [g for g, _ in results]
    if len(results) > 1:
        print(f"\nall assignments: {sum(g.score for g in results):g} / "
              f"{sum(g.max_score for g in results):g}")
    if args.results:
        print(f"wrote {args.results}")
    return 0


def device_name(requested: str) -> str:
    from dlkit.utils import pick_device
    return pick_device(requested).type


def cmd_batch(args) -> int:
    from grader.batch import grade_class
    from grader.sandbox import Limits
    submissions = [Path(s) for s in args.submissions]
    missing = [str(s) for s in submissions if not s.exists()]
    if missing:
        print(f"error: no such submission: {', '.join(missing)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    started = time.monotonic()
    limits = Limits(case_time=args.case_time, submission_time=args.submission_time,
                    insecure=args.insecure)
    result = grade_class(submissions, args.assignment, out, jobs=args.jobs,
                         device=device_name(args.device), training=not args.no_training,
                         limits=limits, progress=sys.stderr.isatty(),
                         scheduler=args.scheduler, resume=args.resume,
                         roster=Path(args.roster) if args.roster else None,
                         metadata=Path(args.metadata) if args.metadata else None,
                         visibility=args.visibility, class_report=not args.no_report,
                         cases=args.cases)
    seconds = time.monotonic() - started
    graded = len(result.regraded)
    kept = len(result.outcomes) - graded
    not_graded = sum(o.status != "graded" for o in result.outcomes.values())
    print(f"graded {graded} submissions in {seconds:.1f} s"
          + (f" ({60 * graded / seconds:.0f} per minute)" if graded and seconds else "")
          + (f"; kept {kept} unchanged since the last run" if kept else "")
          + (f"; {not_graded} not graded (see the reason column)" if not_graded else "")
          + f"; wrote {', '.join(str(p) for p in result.written)}")
    return 0


def cmd_submit(args) -> int:
    from grader import report
    from grader.submit import make_submission, written_answers
    from grader.written import pages_text
    made = make_submission(args.assignment, args.impl, Path(args.out) if args.out else None,
                           device=device_name(args.device))
    graded = made.graded
    print(report.table(graded.assignment, graded.verdicts, graded.seconds,
                       "public set"))
    print(made.coverage)
    answers = written_answers(args.assignment, made.zip.parent)
    for line in made.warnings:
        print(f"warning: {line}")
    print(f"wrote {shown(made.zip)} - upload this file")
    for path in answers.files:
        pages = f" (pages: {pages_text(answers.pages)})" if answers.pages else ""
        print(f"wrote {shown(path)}" + (f" - upload it to the written-answers assignment{pages}"
                                        if path.suffix == ".pdf" else ""))
    for line in answers.notes:
        print(f"note: {line}")
    return 0


def shown(path: Path) -> str:
    return str(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


def cmd_release(args) -> int:
    from grader.release import drift, release
    problem = drift()
    if problem:
        print(f"release refused: {problem}", file=sys.stderr)
        return 1
    for path in release(Path(args.out)):
        print(f"wrote {path}")
    return 0


def cmd_audit(args) -> int:
    from grader.audit import audit, table
    from grader.authoring import solution_names
    from grader.suites import load_suite
    names = solution_names() if args.assignment == "all" else [args.assignment]
    for name in names:  # an unknown assignment is one line before any audit runs
        load_suite(name)
    clean = True
    for name in names:
        result = audit(name, seeds=args.seeds, cases=args.cases, every_case=args.every_case)
        print(table(result))
        clean = clean and result.clean
    return 0 if clean else 1


def cmd_leaks(args) -> int:
    from grader import leaks
    from grader.authoring import solution_names
    names = solution_names() if args.assignment == "all" else [args.assignment]
    unknown = [n for n in names if n not in solution_names()]
    if unknown:
        raise ValueError(f"unknown assignment {unknown[0]!r}; known: {', '.join(solution_names())}")
    found = []
    for name in names:
        started = time.monotonic()
        report = leaks.check(name)
        found += report.leaks
        print(f"leaks {name}: {len(report.leaks) or 'none'} ({report.tried} part and candidate "
              f"pairs run on cases; {time.monotonic() - started:.1f} s)")
        for leak in report.leaks:
            print(f"  LEAK {leak}")
        if report.slow:
            print(f"  not tried again, too slow to be an answer: {', '.join(report.slow)}")
    return 1 if found else 0


def cmd_mutant(args) -> int:
    from grader.authoring import mutants, write_mutant
    from grader.suites import load_suite
    load_suite(args.assignment)  # an unknown assignment is one line
    if not args.name:
        known = mutants(args.assignment)
        for name, (description, _) in known.items():
            print(f"{name:<24} {description}")
        if not known:
            print(f"{args.assignment}: no known mistakes (solutions/{args.assignment}_mutants.py)")
        return 0
    target = write_mutant(args.assignment, args.name, Path(args.folder))
    print(f"wrote {target}")
    return 0


VISIBILITY_HELP = ("Gradescope visibility of cases in results.json, over the suite's own: "
                   "RULE=VALUE,... with RULE a case, a part (train/) or *, VALUE visible, "
                   "hidden, after_due_date or after_published (default: $GRADER_VISIBILITY)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m grader", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("skeletons", help="write assignments/*.py from solutions/*.py")
    s.add_argument("--check", action="store_true", help="only verify they are up to date")
    s.set_defaults(run=cmd_skeletons)

    s = sub.add_parser("notebooks", help="build notebooks/*.ipynb from notebooks/*.py")
    s.add_argument("--check", action="store_true", help="only verify they are up to date")
    s.set_defaults(run=cmd_notebooks)

    s = sub.add_parser("fixtures", help="regenerate fixtures/<a>/ from the reference on the CPU")
    s.add_argument("assignments", nargs="*", metavar="ASSIGNMENT")
    s.add_argument("--check", action="store_true", help="prove a rebuild changes nothing")
    s.set_defaults(run=cmd_fixtures)

    s = sub.add_parser("grade", help="grade an implementation, print the score table")
    s.add_argument("assignment", help="an assignment name, or `all`")
    s.add_argument("--impl", default="assignments",
                   help="assignments (default), solutions, or a folder holding <assignment>.py")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--results", metavar="FILE", help="also write Gradescope results.json here")
    s.add_argument("--outputs", metavar="FILE", help="judge a submitted autograder.pt instead")
    s.add_argument("--set", default="auto", choices=["auto", "public", "autograder"],
                   help="fixture set (auto: autograder when its expected values are present)")
    s.add_argument("--cases", nargs="+", metavar="CASE", help="only these cases")
    s.add_argument("--no-training", action="store_true", help="skip the training cases")
    s.add_argument("--insecure", action="store_true",
                   help="run without the sandbox, limits only (a student's own laptop)")
    s.add_argument("--visibility", metavar="RULES", default=os.environ.get("GRADER_VISIBILITY"),
                   help=VISIBILITY_HELP)
    s.set_defaults(run=cmd_grade)

    s = sub.add_parser("batch", help="grade many submissions (zips or folders) in parallel")
    s.add_argument("submissions", nargs="+", metavar="SUBMISSION")
    s.add_argument("--assignment", required=True)
    s.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    s.add_argument("--out", default="graded", help="output folder (default ./graded)")
    s.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    s.add_argument("--no-training", action="store_true", help="skip the training cases")
    s.add_argument("--cases", nargs="+", metavar="CASE",
                   help="only these cases (e.g. to regrade one after a fix)")
    s.add_argument("--case-time", type=float, help="cap every case's time limit (seconds)")
    s.add_argument("--submission-time", type=float,
                   help="total seconds per submission (default: half the sum of its cases' "
                        "time limits, plus 60)")
    s.add_argument("--insecure", action="store_true",
                   help="run without the sandbox, limits only (never for real grading)")
    s.add_argument("--scheduler", metavar="ADDRESS",
                   help="grade on a Dask cluster: a scheduler address (tcp://host:8786), or "
                        "local:N for N worker processes on this machine")
    s.add_argument("--resume", action="store_true",
                   help="keep the results of submissions graded before with the same bytes "
                        "and grader version")
    s.add_argument("--roster", metavar="CSV",
                   help="who submitted what: a CSV with a submission or id column, and name, email")
    s.add_argument("--metadata", metavar="YML",
                   help="Gradescope's submission_metadata.yml (default: the one beside or "
                        "inside the submissions, if any)")
    s.add_argument("--visibility", metavar="RULES", help=VISIBILITY_HELP)
    s.add_argument("--no-report", action="store_true", help="do not write report.html")
    s.set_defaults(run=cmd_batch)

    s = sub.add_parser("submit", help="write submissions/<a>.zip to upload")
    s.add_argument("assignment")
    s.add_argument("--impl", default="assignments")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--out", metavar="FILE", help="zip path (default submissions/<a>.zip)")
    s.set_defaults(run=cmd_submit)

    s = sub.add_parser("release", help="student bundle and Gradescope autograder zips")
    s.add_argument("--out", default="build", help="output folder (default ./build)")
    s.set_defaults(run=cmd_release)

    s = sub.add_parser("audit", help="grade reference, equivalents and mutants on fresh seeds")
    s.add_argument("assignment", help="an assignment name, or `all`")
    s.add_argument("--seeds", type=int, default=5, help="fresh input seeds per case (default 5)")
    s.add_argument("--cases", nargs="+", metavar="CASE", help="only these cases")
    s.add_argument("--every-case", action="store_true",
                   help="run every variant on every case, not only the cases that reach "
                        "the code it rewrites (slower; what make test-full does)")
    s.set_defaults(run=cmd_audit)

    s = sub.add_parser("leaks", help="check that nothing students receive or a submission can "
                                     "import computes a graded answer")
    s.add_argument("assignment", nargs="?", default="all", help="an assignment name, or `all`")
    s.set_defaults(run=cmd_leaks)

    s = sub.add_parser("mutant", help="list known mistakes, or write one out for grading")
    s.add_argument("assignment")
    s.add_argument("name", nargs="?")
    s.add_argument("folder", nargs="?", default="mutant")
    s.set_defaults(run=cmd_mutant)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    from grader.authoring import AuthoringError
    from grader.cluster import ClusterError
    from grader.grade import GradingError
    from grader.roster import RosterError
    from grader.sandbox import NoSandbox
    try:
        return args.run(args)
    except (GradingError, AuthoringError, ClusterError, RosterError, ValueError,
            FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NoSandbox as exc:  # no mode can run student code: staff must fix the host
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
