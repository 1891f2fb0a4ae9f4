"""Exporting the written answers for manual grading: only the questions, the student's
answers and the figures under them, one question per page, as HTML (nbconvert) and PDF.

A question is a markdown cell with a line that starts with `**Q<n>.` (the question is the
text from there on); every markdown cell after it,
up to the next question or heading, is its answer, and the image outputs of code cells in
between are its figures (their code is never shown). The PDF is printed from the HTML by a
headless Chromium (Debian's `chromium`); where none is installed, only the HTML is written.
"""
import copy
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from grader.authoring import write_atomic

QUESTION = re.compile(r"^\s*\*\*Q(\d+)\.", re.MULTILINE)
IMAGES = ("image/png", "image/jpeg", "image/svg+xml")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PAGE_BREAK = '<div style="break-after: page"></div>'
PRINT_TIME = 120  # seconds for the browser to print the page


@dataclass
class Question:
    text: str
    answers: list = field(default_factory=list)   # markdown cells
    figures: list = field(default_factory=list)   # image outputs of code cells


def questions(nb) -> list[Question]:
    """The written questions of a notebook, with the answers and figures under each."""
    found, current = [], None
    for cell in nb.cells:
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        start = QUESTION.search(source) if cell.cell_type == "markdown" else None
        if start:
            current = Question(source[start.start():].lstrip())
            found.append(current)
        elif current is None:
            continue
        elif cell.cell_type == "markdown":
            if source.lstrip().startswith("#"):  # a new section ends the questions
                current = None
            else:
                current.answers.append(cell)
        elif cell.cell_type == "code":
            current.figures += [out for out in cell.get("outputs", [])
                                if any(kind in out.get("data", {}) for kind in IMAGES)]
    return found


def answers_notebook(nb, title: str):
    """A notebook holding only the questions, answers and figures, one question a page."""
    cells = [nbformat.v4.new_markdown_cell(f"# {title}")]
    for question in questions(nb):
        cells.append(nbformat.v4.new_markdown_cell(question.text))
        cells += [copy.deepcopy(answer) for answer in question.answers]
        if question.figures:
            figure = nbformat.v4.new_code_cell("")
            figure.outputs = [copy.deepcopy(out) for out in question.figures]
            cells.append(figure)
        cells.append(nbformat.v4.new_markdown_cell(PAGE_BREAK))
    out = nbformat.v4.new_notebook(cells=cells, metadata=nb.get("metadata", {}))
    for index, cell in enumerate(out.cells):
        cell.id = f"written-{index}"
    return out


def to_html(nb) -> str:
    from nbconvert import HTMLExporter
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    html, _ = exporter.from_notebook_node(nb)
    return html


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
                   "--no-pdf-header-footer", f"--print-to-pdf={target}",
                   html_file.resolve().as_uri()]
        try:
            subprocess.run(command, capture_output=True, timeout=PRINT_TIME, check=False)
        except subprocess.TimeoutExpired:
            return f"the browser took longer than {PRINT_TIME} s to print the PDF"
        if not target.is_file() or target.stat().st_size == 0:
            return "the browser could not print the PDF"
        write_atomic(pdf_file, target.read_bytes())
    return None


def write_answers(notebook: Path, out_stem: Path, title: str) -> tuple[list[Path], str | None]:
    """Write `<out_stem>.html` and, where a browser can print it, `<out_stem>.pdf`.

    Returns the files written and, when there is no PDF, one line saying why."""
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # noqa: BLE001 - a damaged notebook: say so, keep the rest
        return [], f"{notebook.name} could not be read as a notebook ({type(exc).__name__})"
    written = answers_notebook(nb, title)
    if len(written.cells) == 1:
        return [], f"{notebook.name} has no written questions (lines starting with **Q1.)"
    html_file = out_stem.with_suffix(".html")
    write_atomic(html_file, to_html(written).encode())
    pdf_file = out_stem.with_suffix(".pdf")
    problem = print_pdf(html_file, pdf_file)
    if problem:
        pdf_file.unlink(missing_ok=True)  # never leave a PDF of an older notebook
        return [html_file], f"{problem}: wrote {html_file.name} only; print it to PDF yourself"
    return [html_file, pdf_file], None
