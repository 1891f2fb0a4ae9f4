"""Exporting the written answers for manual grading: only the questions, the student's
answers and the figures they are about, each question from the top of a new page, as HTML
and PDF.

A question is a markdown cell with a line that starts with `**Q<n>. Title.**` (the question
is the text from there on); every markdown cell after it, up to the next question or
heading, is its answer. Its figures are the image outputs of the code cells in between and
of every code cell, wherever it is, that carries a tag `figure:<name>` which the question
cell carries too (in a percent script: `# %% tags=["figure:heads"]` above both cells).
Code is never shown.

Mathematics (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`, `\\begin{env}...\\end{env}`) is
converted to MathML with `latex2mathml`, which browsers draw natively: the page loads no
script and needs no network. The PDF is printed from the HTML by a headless Chromium
(Debian's `chromium`), with one bookmark per question from which each question's pages are
read back; where no browser is installed, only the HTML is written.
"""
import base64
import html
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grader.authoring import write_atomic

QUESTION = re.compile(r"^\s*\*\*Q(\d+)\.", re.MULTILINE)
TITLE = re.compile(r"\*\*(Q(\d+)\..*?)\*\*\s*", re.DOTALL)  # "**Q1. Title.** rest"
FIGURE_TAG = "figure:"
IMAGES = ("image/png", "image/jpeg", "image/svg+xml")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PRINT_TIME = 120  # seconds for the browser to print the page
# Code is left alone; each other match is one formula (display or inline).
SPANS = re.compile(r"""
    (?P<code>```[\s\S]*?```|~~~[\s\S]*?~~~|(?P<ticks>`+)[\s\S]*?(?P=ticks))
  | \$\$(?P<display>[\s\S]+?)\$\$
  | \\\[(?P<bracket>[\s\S]+?)\\\]
  | (?P<environment>\\begin\{(?P<name>[A-Za-z]+\*?)\}[\s\S]*?\\end\{(?P=name)\})
  | \\\((?P<paren>[\s\S]+?)\\\)
  | (?<![\\$\w])\$(?P<inline>[^\s$](?:[^$\n]|\n(?!\s*\n))*?)(?<![\s\\])\$(?![\w$])
""", re.VERBOSE)
STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 11pt; line-height: 1.45;
       margin: 0; }
@page { size: A4; margin: 18mm; }
h1 { font-size: 16pt; margin: 0 0 10pt; }
h2 { font-size: 13pt; margin: 0 0 6pt; }
.question { break-before: page; }
.question:first-of-type { break-before: auto; }
.answer { border-left: 3px solid #888; padding-left: 10pt; margin: 8pt 0; }
.figures img { max-width: 100%; break-inside: avoid; display: block; margin: 6pt 0; }
pre, code { font-family: "DejaVu Sans Mono", monospace; font-size: 9.5pt;
            white-space: pre-wrap; overflow-wrap: anywhere; }
.empty { color: #a00; }
math[display="block"] { margin: 6pt 0; }
"""


@dataclass
class Question:
    text: str                                     # the markdown from "**Q<n>." on
    answers: list = field(default_factory=list)   # markdown cells
    figures: list = field(default_factory=list)   # image outputs of code cells
    tags: list = field(default_factory=list)      # the question cell's figure:<name> tags

    @property
    def number(self) -> int:
        return int(QUESTION.search(self.text).group(1))

    @property
    def answered(self) -> bool:
        """True when some answer cell says more than the notebook's "*Your answer:*"."""
        return any(cell_text(a).replace("*Your answer:*", "").strip() for a in self.answers)


def cell_text(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def images(cell) -> list:
    return [out for out in cell.get("outputs", [])
            if any(kind in out.get("data", {}) for kind in IMAGES)]


def figure_tags(cell) -> list[str]:
    return [t for t in cell.get("metadata", {}).get("tags", []) if t.startswith(FIGURE_TAG)]


def questions(nb) -> list[Question]:
    """The written questions of a notebook, with the answers and figures of each."""
    tagged: dict[str, list] = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            for tag in figure_tags(cell):
                tagged.setdefault(tag, []).extend(images(cell))
    found, current = [], None
    for cell in nb.cells:
        source = cell_text(cell)
        start = QUESTION.search(source) if cell.cell_type == "markdown" else None
        if start:
            current = Question(source[start.start():].lstrip(), tags=figure_tags(cell))
            current.figures += [out for tag in current.tags for out in tagged.get(tag, [])]
            found.append(current)
        elif current is None:
            continue
        elif cell.cell_type == "markdown":
            if source.lstrip().startswith("#"):  # a new section ends the questions
                current = None
            else:
                current.answers.append(cell)
        elif cell.cell_type == "code" and not figure_tags(cell):  # tagged: attached by name
            current.figures += images(cell)
    return found


class Typesetter:
    """Replaces the formulas of markdown text by placeholders, and the placeholders of the
    rendered HTML by MathML (a placeholder is plain text, so Markdown cannot mangle it)."""

    def __init__(self):
        try:
            from latex2mathml.converter import convert
        except ImportError:
            convert = None
        self.convert = convert
        self.nonce = secrets.token_hex(4)  # no student text contains the placeholders
        self.mathml: dict[str, str] = {}
        self.failed = 0

    def __call__(self, markdown: str) -> str:
        if self.convert is None:
            return markdown
        return SPANS.sub(self.replace, markdown)

    def replace(self, match: re.Match) -> str:
        if match.group("code"):
            return match.group(0)
        display = match.group("inline") is None and match.group("paren") is None
        tex = next(g for g in (match.group(k) for k in
                               ("display", "bracket", "environment", "paren", "inline")) if g)
        try:
            mathml = self.convert(tex.strip(), display="block" if display else "inline")
        except Exception:  # noqa: BLE001 - the converter's errors vary: show the source
            self.failed += 1
            mathml = f"<code>{html.escape(match.group(0))}</code>"
        key = f"mathml{self.nonce}x{len(self.mathml)}x"
        self.mathml[key] = mathml
        return key

    def fill(self, text: str) -> str:
        for key, mathml in self.mathml.items():
            text = text.replace(key, mathml)
        return text

    def notes(self) -> list[str]:
        if self.convert is None:
            return ["latex2mathml is not installed: formulas show as LaTeX source "
                    "(make install adds it)"]
        if self.failed:
            return [f"{self.failed} formula(s) could not be typeset and show as LaTeX source"]
        return []


def markdown_html(markdown: str, typeset: Typesetter, inline: bool = False) -> str:
    from nbconvert.filters.markdown import markdown2html
    rendered = markdown2html(typeset(markdown)).strip()
    if inline and rendered.startswith("<p>") and rendered.endswith("</p>"):
        rendered = rendered[3:-4]  # a heading's text, not a paragraph
    return rendered


def question_html(question: Question, typeset: Typesetter) -> str:
    """One question: its title as a heading (a PDF bookmark), text, answers, figures."""
    title = TITLE.match(question.text)
    heading, rest = ((title.group(1), question.text[title.end():]) if title
                     else (f"Q{question.number}.", question.text))
    parts = [f'<section class="question"><h2>{markdown_html(heading, typeset, inline=True)}</h2>',
             markdown_html(rest, typeset)]
    answers = [markdown_html(cell_text(a), typeset) for a in question.answers]
    if not question.answered:
        answers.append('<p class="empty">(no answer written)</p>')
    parts.append(f'<div class="answer">{"".join(answers)}</div>')
    if question.figures:
        parts.append('<div class="figures">' + "".join(figure_html(out)
                                                       for out in question.figures) + "</div>")
    parts.append("</section>")
    return "\n".join(parts)


def figure_html(output) -> str:
    """An image element; SVG goes in as an image too, so none of its scripts run."""
    data = output.get("data", {})
    kind = next(k for k in IMAGES if k in data)
    payload = "".join(data[kind])
    if kind == "image/svg+xml":
        payload = base64.b64encode(payload.encode()).decode()
    payload = re.sub(r"[^A-Za-z0-9+/=]", "", payload)  # base64 only: nothing can close the tag
    return f'<img src="data:{kind};base64,{payload}" alt="figure">'


def answers_html(nb, title: str) -> tuple[str, list[Question], list[str]]:
    """The page for the written answers, its questions, and notes on what did not render."""
    found = questions(nb)
    typeset = Typesetter()
    sections = "\n".join(question_html(q, typeset) for q in found)
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n'
            f'{typeset.fill(sections)}\n</body></html>\n')
    return page, found, typeset.notes()


def browser() -> str | None:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    return None


def print_pdf(html_file: Path, pdf_file: Path) -> str | None:
    """Print `html_file` to `pdf_file` with a headless browser; None, or why it did not."""
    executable = browser()
    if executable is None:
        return "no PDF converter (Chromium) on this machine"
    with tempfile.TemporaryDirectory(prefix="written-") as tmp:
        target = Path(tmp) / "answers.pdf"
        command = [executable, "--headless", "--no-sandbox", "--disable-gpu",
                   "--disable-background-networking", "--disable-component-update",
                   "--disable-sync", "--no-first-run", f"--user-data-dir={tmp}/profile",
                   "--no-pdf-header-footer", "--generate-pdf-document-outline",
                   f"--print-to-pdf={target}", html_file.resolve().as_uri()]
        try:
            subprocess.run(command, capture_output=True, timeout=PRINT_TIME, check=False)
        except subprocess.TimeoutExpired:
            return f"the browser took longer than {PRINT_TIME} s to print the PDF"
        if not target.is_file() or target.stat().st_size == 0:
            return "the browser could not print the PDF"
        write_atomic(pdf_file, target.read_bytes())
    return None


def question_pages(pdf_file: Path) -> dict[int, tuple[int, int]]:
    """Question number -> (first, last) page, counted from 1, from the PDF's bookmarks (one
    per question heading); empty when the PDF has none."""
    import pypdf
    reader = pypdf.PdfReader(pdf_file)
    starts = {}

    def visit(entries):
        for entry in entries:
            if isinstance(entry, list):
                visit(entry)
            elif (found := re.match(r"\s*Q(\d+)\.", entry.title or "")):
                page = reader.get_destination_page_number(entry) + 1
                starts.setdefault(int(found.group(1)), page)
    visit(reader.outline)
    ordered = sorted(starts.items(), key=lambda item: item[1])
    ends = [start - 1 for _, start in ordered[1:]] + [len(reader.pages)]
    return {number: (start, max(start, end)) for (number, start), end in zip(ordered, ends)}


def pages_text(pages: dict[int, tuple[int, int]]) -> str:
    """"Q1 p. 1, Q2 pp. 2-3": for matching pages to questions when uploading."""
    return ", ".join(f"Q{n} p. {a}" if a == b else f"Q{n} pp. {a}-{b}"
                     for n, (a, b) in sorted(pages.items()))


@dataclass
class Written:
    files: list = field(default_factory=list)   # the HTML and, where printed, the PDF
    questions: list = field(default_factory=list)
    pages: dict = field(default_factory=dict)   # question number -> (first, last) page
    notes: list = field(default_factory=list)   # one line each: what is missing and why


def write_answers(notebook: Path, out_stem: Path, title: str) -> Written:
    """Write `<out_stem>.html` and, where a browser can print it, `<out_stem>.pdf`."""
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # noqa: BLE001 - a damaged notebook: say so, keep the rest
        return Written(notes=[f"{notebook.name} could not be read as a notebook "
                              f"({type(exc).__name__})"])
    page, found, notes = answers_html(nb, title)
    if not found:
        return Written(notes=[f"{notebook.name} has no written questions "
                              "(lines starting with **Q1.)"])
    html_file, pdf_file = out_stem.with_suffix(".html"), out_stem.with_suffix(".pdf")
    write_atomic(html_file, page.encode())
    problem = print_pdf(html_file, pdf_file)
    if problem:
        pdf_file.unlink(missing_ok=True)  # never leave a PDF of an older notebook
        return Written([html_file], found, {}, notes + [
            f"{problem}: wrote {html_file.name} only; print it to PDF yourself"])
    pages = question_pages(pdf_file)
    if len(pages) != len(found):
        notes.append("the PDF has no bookmark per question: match its pages to the "
                     "questions by hand when you upload it")
    return Written([html_file, pdf_file], found, pages, notes)
