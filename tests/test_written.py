"""Written answers for manual grading: questions, answers, formulas and the figures they are
about reach the PDF, each question from a new page; code does not."""
import base64
import io
import re
import shutil
import sys

import nbformat
import pytest

from grader import paths, written

ANSWER = "The gradient splits into the part from the loss at t and the part from step t+1."
CODE = "SECRET_CODE_MARKER = 42"
RAW_TEX = re.compile(r"\\[A-Za-z]+|\$")
needs_browser = pytest.mark.skipif(written.browser() is None,
                                   reason="needs Chromium (make install adds it)")


def figure_output():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure = io.BytesIO()
    plt.figure(figsize=(2, 2))
    plt.plot([0, 1], [1, 0])
    plt.savefig(figure, format="png")
    plt.close()
    return nbformat.v4.new_output(
        "display_data", data={"image/png": base64.b64encode(figure.getvalue()).decode()})


def answered_notebook(tmp_path, answer=f"*Your answer:* {ANSWER}", tagged_figure=False):
    """The captioning notebook with `answer` under Q1 and a figure cell: after Q1, or
    (tagged_figure) at the top of the notebook, named by a tag on Q1."""
    nb = nbformat.read(paths.NOTEBOOKS / "captioning.ipynb", as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if written.QUESTION.search(c.source))
    nb.cells[first + 1].source = answer
    cell = nbformat.v4.new_code_cell(CODE)
    cell.outputs = [figure_output()]
    if tagged_figure:
        cell.metadata["tags"] = ["figure:line"]
        nb.cells[first].metadata["tags"] = ["figure:line"]
        nb.cells.insert(1, cell)
    else:
        nb.cells.insert(first + 2, cell)
    path = tmp_path / "captioning.ipynb"
    nbformat.write(nb, path)
    return path


def pdf_texts(pdf):
    import pypdf
    return [" ".join(page.extract_text().split()) for page in pypdf.PdfReader(pdf).pages]


@pytest.mark.parametrize("tagged_figure", [False, True])
def test_questions_keep_answers_and_figures_but_no_code(tmp_path, tagged_figure):
    nb = nbformat.read(answered_notebook(tmp_path, tagged_figure=tagged_figure), as_version=4)
    found = written.questions(nb)
    assert len(found) == 5 and found[0].text.startswith("**Q1.")
    assert ANSWER in found[0].answers[0].source and len(found[0].figures) == 1
    assert not any(q.figures for q in found[1:])  # a tagged figure goes to its question only
    page, _, notes = written.answers_html(nb, "t")
    assert ANSWER in page and CODE not in page and "import torch" not in page and not notes
    assert not re.search(r"(src|href)=.?http", page)  # nothing to load: it renders offline


def test_formulas_become_mathml_and_code_stays_code():
    typeset = written.Typesetter()
    text = typeset(r"Scale by $\sqrt{d_k}$, then $$x \leftarrow \mathrm{LN}(x + f(x))$$ "
                   r"and \(a^2\); `$HOME` and $5 and $10 stay.")
    html = typeset.fill(text)
    assert html.count("<math") == 3 and 'display="block"' in html
    assert "`$HOME`" in html and "$5 and $10" in html and "\\sqrt" not in html
    assert typeset.notes() == []


def test_a_formula_that_does_not_convert_shows_its_source_and_says_so():
    typeset = written.Typesetter()
    typeset.convert = lambda tex, display: 1 / 0
    html = typeset.fill(typeset(r"see $\frac{1}{2}$"))
    assert r"<code>$\frac{1}{2}$</code>" in html and "1 formula(s)" in typeset.notes()[0]


def test_without_latex2mathml_the_source_stays_and_the_note_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "latex2mathml.converter", None)  # import fails
    typeset = written.Typesetter()
    assert typeset(r"$\sqrt{d}$") == r"$\sqrt{d}$"
    (note,) = typeset.notes()
    assert "latex2mathml is not installed" in note and "\n" not in note


@needs_browser
def test_pdf_starts_every_question_on_a_new_page_and_lists_the_pages(tmp_path):
    long_answer = "*Your answer:* $\\sqrt{d_k}$ " + "A sentence of the answer. " * 600
    result = written.write_answers(answered_notebook(tmp_path, long_answer), tmp_path / "out",
                                   "t")
    found = result.questions
    assert not result.notes and [f.suffix for f in result.files] == [".html", ".pdf"]
    texts = pdf_texts(tmp_path / "out.pdf")
    first_pages = [result.pages[q.number][0] for q in found]
    assert first_pages == sorted(set(first_pages)) and result.pages[1][1] > result.pages[1][0]
    for q in found:  # each question opens its first page (after the title on page 1)
        assert texts[result.pages[q.number][0] - 1].removeprefix("t ").startswith(f"Q{q.number}.")
    assert not any(CODE in t or RAW_TEX.search(t) for t in texts)
    assert written.pages_text(result.pages).startswith(f"Q1 pp. 1-{result.pages[1][1]}, Q2 p.")


@needs_browser
def test_pdf_holds_the_answer_and_its_figure(tmp_path):
    result = written.write_answers(answered_notebook(tmp_path, tagged_figure=True),
                                   tmp_path / "out", "t")
    import pypdf
    pages = pypdf.PdfReader(tmp_path / "out.pdf").pages
    assert len(pages) == 5 and result.pages == {n: (n, n) for n in range(1, 6)}
    assert ANSWER in pdf_texts(tmp_path / "out.pdf")[0]
    assert len(pages[0].images) == 1 and not any(p.images for p in pages[1:])


def test_without_a_browser_only_html_is_written_and_said(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (tmp_path / "out.pdf").write_bytes(b"old")
    result = written.write_answers(answered_notebook(tmp_path), tmp_path / "out", "t")
    assert [f.name for f in result.files] == ["out.html"] and not (tmp_path / "out.pdf").exists()
    (note,) = result.notes
    assert "no PDF converter" in note and "\n" not in note


def test_unreadable_notebook_is_one_line(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    result = written.write_answers(bad, tmp_path / "out", "t")
    assert result.files == [] and "could not be read" in result.notes[0]


def test_every_notebook_has_written_questions_in_the_exported_format():
    """`make submit` finds them: a `**Q<n>.` line, then an answer cell, in every notebook;
    every figure a question names is a tag of some code cell."""
    for notebook in sorted(paths.NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(notebook, as_version=4)
        found = written.questions(nb)
        assert found, f"{notebook.name}: no written questions"
        assert all(q.answers and q.answers[0].source.startswith("*Your answer:*")
                   for q in found), notebook.name
        figures = {t for c in nb.cells if c.cell_type == "code" for t in written.figure_tags(c)}
        assert {t for q in found for t in q.tags} <= figures, notebook.name
