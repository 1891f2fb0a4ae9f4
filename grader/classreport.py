"""The class report: `report.html`, one static file that opens offline (no script, no
stylesheet or font from the network; plots are PNGs made with matplotlib and embedded).

It shows the score histogram, each case's pass rate, the known mistakes found per case
(how many submissions made each, and which), the submissions not graded and why, the grading
time of each submission, and pairs of submissions whose code is unusually alike.

Pass rates count graded submissions only (a submission not graded ran no case). Similarity
is computed with copydetect (winnowed fingerprints of the tokenized code, names and comments
normalised away) with the skeleton as boilerplate, so the given code never counts: a pair is
flagged when each file has at least SIMILAR of its own code in the other. Every string that
comes from a submission (ids, names, messages, code) is escaped by Jinja2's autoescaping.
"""
import base64
import datetime
import io
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import jinja2

from grader import intake, paths
from grader.authoring import write_atomic

SIMILAR = 0.75    # share of each file's own code found in the other that flags a pair
NOISE = 25        # copydetect's defaults: matches shorter than NOISE characters of tokens
GUARANTEE = 30    # are ignored, those of GUARANTEE or more are always found
CONTEXT = 2       # unmatched lines shown around matched ones
LARGEST = 256 << 10  # bytes of a module compared (a larger one is left out: tokenizing it is slow)
LONGEST = 200     # characters of a line shown side by side
MOST_PAIRS = 30   # flagged pairs listed, the most alike first,
SIDE_BY_SIDE = 10  # and the first of them shown side by side


# ---------------------------------------------------------------------------------------
# Code similarity
# ---------------------------------------------------------------------------------------

@dataclass
class Pair:
    """Two submissions and how much of each one's code (outside the skeleton) is in the other."""
    a: str
    b: str
    share_a: float
    share_b: float
    lines_a: list   # [(line number or None for a gap, text, matched)]
    lines_b: list

    @property
    def share(self) -> float:
        return min(self.share_a, self.share_b)


def fingerprint(name: str, code: str, boilerplate=None):
    from copydetect import CodeFingerprint
    return CodeFingerprint(f"{name}.py", NOISE, GUARANTEE - NOISE + 1, boilerplate,
                           fp=io.StringIO(code))


def similar_pairs(sources: dict[str, str], skeleton: str | None = None,
                  threshold: float = SIMILAR) -> list[Pair]:
    """Pairs of `sources` ({id: module text}) whose shares both reach `threshold`, the most
    alike first; `skeleton`'s fingerprints are boilerplate."""
    import numpy as np
    from copydetect import compare_files
    boilerplate = (np.array(sorted(fingerprint("skeleton", skeleton).hashes))
                   if skeleton else None)
    prints = {sid: fingerprint(sid, code, boilerplate) for sid, code in sorted(sources.items())}
    prints = {sid: fp for sid, fp in prints.items() if fp.hashes}
    ids, found = list(prints), []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            _, (share_a, share_b), (slices_a, slices_b) = compare_files(prints[a], prints[b])
            if min(share_a, share_b) >= threshold:
                found.append(Pair(a, b, float(share_a), float(share_b),
                                  shown_lines(sources[a], slices_a),
                                  shown_lines(sources[b], slices_b)))
    return sorted(found, key=lambda p: (-p.share, p.a, p.b))


def shown_lines(code: str, slices) -> list:
    """The code's matched lines with CONTEXT lines around them: (number, text, matched),
    and (None, "...", False) where lines are left out."""
    lines = code.splitlines()
    matched = set()
    for start, end in zip(*slices) if len(slices) else []:
        first = code.count("\n", 0, int(start))
        last = code.count("\n", 0, max(int(start), int(end) - 1))
        matched.update(range(first, last + 1))
    near = {n for m in matched for n in range(m - CONTEXT, m + CONTEXT + 1)}
    shown, previous = [], -1
    for number in sorted(n for n in near if 0 <= n < len(lines)):
        if number != previous + 1:
            shown.append((None, "...", False))
        shown.append((number + 1, lines[number][:LONGEST], number in matched))
        previous = number
    return shown


def module_texts(outcomes: dict, assignment: str) -> dict[str, str]:
    """{id: module text} of every graded submission up to LARGEST bytes, located as the
    grader located it (read as text here, never run)."""
    texts = {}
    for sid, outcome in outcomes.items():
        if outcome.status != "graded":
            continue
        with intake.workspace() as tmp:
            try:
                folder, _ = intake.locate(outcome.source, assignment, Path(tmp))
                with open(folder / f"{assignment}.py", "rb") as module:
                    data = module.read(LARGEST + 1)
            except (intake.SubmissionError, OSError):
                continue
        if len(data) > LARGEST:
            continue
        texts[sid] = data.decode("utf-8", "replace")
    return texts


# ---------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------

def png(figure) -> str:
    """A figure as a data: URI (PNG, base64)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def histogram(values: list[float], top: float, label: str, bins: int = 20) -> str:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    figure = Figure(figsize=(6.4, 2.6))
    axes = figure.add_subplot()
    axes.hist(values, bins=bins, range=(0, top or 1), color="#3a6ea5", edgecolor="white")
    axes.set_xlabel(label)
    axes.set_ylabel("submissions")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.spines[["top", "right"]].set_visible(False)
    return png(figure)


def pass_rate_bars(names: list[str], rates: list[float]) -> str:
    from matplotlib.figure import Figure
    figure = Figure(figsize=(6.4, 0.28 * len(names) + 0.8))
    axes = figure.add_subplot()
    axes.barh(names[::-1], [100 * r for r in rates[::-1]], color="#5b9a68")
    axes.set_xlim(0, 100)
    axes.set_xlabel("graded submissions that pass (%)")
    axes.tick_params(axis="y", labelsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    return png(figure)


# ---------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------

def mistake_descriptions(assignment: str) -> dict[str, str]:
    """{mistake name: description} from solutions/<a>_mutants.py, where it is present."""
    from grader.authoring import mutants
    try:
        return {name: description for name, (description, _) in mutants(assignment).items()}
    except Exception:  # noqa: BLE001 - the report names the mistakes without descriptions
        return {}


def class_summary(assignment: str, cases, outcomes: dict) -> dict:
    """Everything the page shows, as plain data (the tests read it too)."""
    graded = [o for o in outcomes.values() if o.status == "graded"]
    full = sum(c.points for c in cases)
    descriptions = mistake_descriptions(assignment)
    rows = []
    for case in cases:
        verdicts = [next(v for v in o.verdicts if v.name == case.name) for o in graded]
        made = Counter(v.mistake for v in verdicts if v.mistake)
        who = {name: [o.sid for o, v in zip(graded, verdicts) if v.mistake == name]
               for name in made}
        rows.append({"name": case.name, "points": case.points,
                     "passed": sum(v.passed for v in verdicts), "graded": len(verdicts),
                     "mistakes": [{"name": name, "count": count,
                                   "description": descriptions.get(name, ""),
                                   "submissions": who[name]}
                                  for name, count in made.most_common()]})
    scores = [o.score for o in graded]
    made_by = Counter(name for o in graded for name in o.mistakes)
    mistakes = [{"name": name, "description": "; or: ".join(  # "a or b": two alike
                     filter(None, map(descriptions.get, name.split(" or ")))),
                 "submissions": [o.sid for o in graded if name in o.mistakes],
                 "cases": [row["name"] for row in rows
                           if any(m["name"] == name for m in row["mistakes"])]}
                for name, _ in made_by.most_common()]
    return {"assignment": assignment, "max": full, "cases": rows, "mistakes": mistakes,
            "submissions": len(outcomes), "graded": len(graded),
            "mean": statistics.fmean(scores) if scores else 0.0,
            "median": statistics.median(scores) if scores else 0.0,
            "not_graded": [(o.sid, o.reason) for o in outcomes.values() if o.status != "graded"]}


def write_report(path: Path, assignment: str, cases, outcomes: dict,
                 threshold: float = SIMILAR) -> Path:
    """Write the class report of `outcomes` ({id: grader.batch.Outcome}) to `path`."""
    summary = class_summary(assignment, cases, outcomes)
    skeleton = paths.ASSIGNMENTS / f"{assignment}.py"
    sources = module_texts(outcomes, assignment)
    pairs = similar_pairs(sources, skeleton.read_text() if skeleton.is_file() else None,
                          threshold)
    graded = [o for o in outcomes.values() if o.status == "graded"]
    plots = dict.fromkeys(["scores", "rates", "times"])
    if graded:
        plots["scores"] = histogram([o.score for o in graded], summary["max"], "total points")
        plots["rates"] = pass_rate_bars([c["name"] for c in summary["cases"]],
                                        [c["passed"] / c["graded"] for c in summary["cases"]])
    if outcomes:
        seconds = [o.seconds for o in outcomes.values()]
        plots["times"] = histogram(seconds, max(seconds) * 1.05, "grading time (s)")
    page = TEMPLATE.render(s=summary, plots=plots, pairs=pairs[:MOST_PAIRS], side=SIDE_BY_SIDE,
                           flagged=len(pairs),
                           compared=len(sources), threshold=threshold, outcomes=outcomes,
                           skeleton=skeleton.is_file(),
                           made=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    write_atomic(path, page.encode())
    return path


TEMPLATE = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True,
                              undefined=jinja2.StrictUndefined).from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{{ s.assignment }}: class report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 2px 8px; text-align: left;
vertical-align: top; border-bottom: 1px solid #eee; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bar { display: inline-block; height: 0.8em; background: #5b9a68; }
.muted { color: #777; } .sub { font-size: 12px; color: #555; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 8px; margin-bottom: 1.5em; }
pre { margin: 0; font-size: 12px; background: #fafafa; border: 1px solid #ddd; overflow-x: auto; }
pre span { display: block; white-space: pre; } pre .hit { background: #ffe08a; }
pre .gap { color: #999; } .lineno { color: #999; display: inline-block; width: 3em; }
.stats span { margin-right: 2em; }
</style></head><body>
<h1>{{ s.assignment }}: class report</h1>
<p class="stats"><span><b>{{ s.submissions }}</b> submissions</span>
<span><b id="graded-count">{{ s.graded }}</b> graded</span>
<span><b>{{ s.not_graded | length }}</b> not graded</span>
<span>mean <b>{{ "%.1f" | format(s.mean) }}</b> / {{ "%g" | format(s.max) }}</span>
<span>median <b>{{ "%g" | format(s.median) }}</b></span>
<span class="muted">made {{ made }}</span></p>

<h2>Scores</h2>
{% if plots.scores %}<img alt="histogram of the graded submissions' totals" src="{{ plots.scores }}">
{% else %}<p class="muted">No submission was graded.</p>{% endif %}

<h2>Cases</h2>
<p class="sub">Pass rate among the {{ s.graded }} graded submissions; the known mistakes their outputs matched, most common first.</p>
<table id="cases"><tr><th>case</th><th>points</th><th>pass rate</th><th></th><th>known mistakes found</th></tr>
{% for c in s.cases %}
<tr data-case="{{ c.name }}"><td>{{ c.name }}</td><td class="num">{{ "%g" | format(c.points) }}</td>
<td class="num pass-rate" data-passed="{{ c.passed }}" data-graded="{{ c.graded }}">{{ c.passed }} / {{ c.graded }}{% if c.graded %} ({{ "%.0f" | format(100 * c.passed / c.graded) }}%){% endif %}</td>
<td><span class="bar" style="width: {{ (120 * c.passed / c.graded) | round(1) if c.graded else 0 }}px"></span></td>
<td>{% for m in c.mistakes %}<div><a href="#mistake-{{ m.name }}" title="{{ m.description }}"><b>{{ m.name }}</b></a> &times; {{ m.count }}
<span class="sub">({{ m.submissions | join(", ") }})</span></div>{% else %}<span class="muted">none</span>{% endfor %}</td></tr>
{% endfor %}
</table>
{% if plots.rates %}<img alt="pass rate per case" src="{{ plots.rates }}">{% endif %}

<h2>Known mistakes</h2>
{% if s.mistakes %}
<p class="sub">Each known mistake (solutions/{{ s.assignment }}_mutants.py) whose outputs a submission's matched in at least one case, by how many submissions made it.</p>
<table id="mistakes"><tr><th>mistake</th><th>submissions</th><th>what it is</th><th>cases</th><th>who</th></tr>
{% for m in s.mistakes %}<tr id="mistake-{{ m.name }}"><td><b>{{ m.name }}</b></td><td class="num">{{ m.submissions | length }}</td><td>{{ m.description }}</td>
<td class="sub">{{ m.cases | join(", ") }}</td><td class="sub">{{ m.submissions | join(", ") }}</td></tr>
{% endfor %}</table>
{% else %}<p class="muted">No submission's outputs matched a known mistake.</p>{% endif %}

<h2>Not graded</h2>
{% if s.not_graded %}
<table id="not-graded"><tr><th>submission</th><th>why</th></tr>
{% for sid, reason in s.not_graded %}<tr><td>{{ sid }}</td><td>{{ reason }}</td></tr>
{% endfor %}</table>
{% else %}<p class="muted">Every submission was graded.</p>{% endif %}

<h2>Code similarity</h2>
<p class="sub">{{ compared }} graded submissions compared with copydetect{% if skeleton %}, the skeleton's code excluded{% endif %};
a pair is listed when each has at least {{ "%.0f" | format(100 * threshold) }}% of its own code in the other.
{{ flagged }} pair{{ "" if flagged == 1 else "s" }} flagged{% if flagged > pairs | length %}, the {{ pairs | length }} most alike listed{% endif %}{% if pairs | length > side %}; the matched lines of the first {{ side }} side by side{% endif %}.</p>
{% if pairs %}
<table id="similar"><tr><th>submission</th><th>submission</th><th>share of the first in the second</th><th>of the second in the first</th></tr>
{% for p in pairs %}<tr class="similar-pair" data-a="{{ p.a }}" data-b="{{ p.b }}"><td>{% if loop.index <= side %}<a href="#pair-{{ loop.index }}">{{ p.a }}</a>{% else %}{{ p.a }}{% endif %}</td><td>{{ p.b }}</td>
<td class="num">{{ "%.0f" | format(100 * p.share_a) }}%</td><td class="num">{{ "%.0f" | format(100 * p.share_b) }}%</td></tr>
{% endfor %}</table>
{% for p in pairs[:side] %}
<h3 id="pair-{{ loop.index }}">{{ p.a }} and {{ p.b }}</h3>
<div class="pair">{% for lines in (p.lines_a, p.lines_b) %}<pre>{% for number, text, hit in lines %}{% if number is none %}<span class="gap">{{ text }}</span>{% else %}<span{% if hit %} class="hit"{% endif %}><span class="lineno">{{ number }}</span>{{ text }}</span>{% endif %}{% endfor %}</pre>{% endfor %}</div>
{% endfor %}
{% endif %}

<h2>Submissions</h2>
{% if plots.times %}<img alt="histogram of grading times" src="{{ plots.times }}">{% endif %}
<table id="submissions"><tr><th>submission</th><th>student</th><th>status</th><th>total</th><th>grading time</th><th>known mistakes</th><th>reason</th></tr>
{% for sid, o in outcomes.items() %}<tr><td>{{ sid }}</td><td>{{ o.students | map(attribute="name") | join("; ") }}</td><td>{{ o.status }}</td>
<td class="num">{{ "%g" | format(o.score) }}</td><td class="num">{{ "%.1f" | format(o.seconds) }} s</td><td>{{ o.mistakes | join(", ") }}</td><td>{{ o.reason }}</td></tr>
{% endfor %}</table>
</body></html>
""")
