"""Written answers for manual grading: questions and answers reach the PDF, code does not."""
import base64
import io
import shutil

import nbformat
import pytest

from grader import paths, written

ANSWER = "The gradient splits into the part from the loss at t and the part from step t+1."
CODE = "SECRET_CODE_MARKER = 42"


def answered_notebook(tmp_path):
    """The captioning notebook with an answer under Q1 and a figure cell after it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    nb = nbformat.read(paths.NOTEBOOKS / "captioning.ipynb", as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if written.QUESTION.search(c.source))
    nb.cells[first + 1].source = f"*Your answer:* {ANSWER}"
    figure = io.BytesIO()
    plt.figure(figsize=(2, 2))
    plt.plot([0, 1], [1, 0])
    plt.savefig(figure, format="png")
    plt.close()
    cell = nbformat.v4.new_code_cell(CODE)
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"image/png": base64.b64encode(figure.getvalue()).decode()})]
    nb.cells.insert(first + 2, cell)
    path = tmp_path / "captioning.ipynb"
    nbformat.write(nb, path)
    return path


def test_questions_keep_answers_and_figures_but_no_code(tmp_path):
    nb = nbformat.read(answered_notebook(tmp_path), as_version=4)
    found = written.questions(nb)
    assert len(found) == 5 and found[0].text.startswith("**Q1.")
    assert ANSWER in found[0].answers[0].source and len(found[0].figures) == 1
    html = written.to_html(written.answers_notebook(nb, "t"))
    assert ANSWER in html and CODE not in html and "import torch" not in html


@pytest.mark.skipif(written.browser() is None, reason="needs Chromium (make install adds it)")
def test_pdf_has_one_page_per_question_with_answers_and_no_code(tmp_path):
    import pypdf
    files, problem = written.write_answers(answered_notebook(tmp_path), tmp_path / "out", "t")
    assert problem is None and [f.suffix for f in files] == [".html", ".pdf"]
    pages = pypdf.PdfReader(tmp_path / "out.pdf").pages
    texts = [" ".join(page.extract_text().split()) for page in pages]
    assert len(pages) == 5 and all(f"Q{i + 1}." in t for i, t in enumerate(texts))
    assert ANSWER in texts[0] and not any(CODE in t for t in texts)
    assert len(pages[0].images) == 1  # the figure under the answer


def test_without_a_browser_only_html_is_written_and_said(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (tmp_path / "out.pdf").write_bytes(b"old")
    files, problem = written.write_answers(answered_notebook(tmp_path), tmp_path / "out", "t")
    assert [f.name for f in files] == ["out.html"] and not (tmp_path / "out.pdf").exists()
    assert "no PDF converter" in problem and "\n" not in problem


def test_unreadable_notebook_is_one_line(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    files, problem = written.write_answers(bad, tmp_path / "out", "t")
    assert files == [] and "could not be read" in problem


def test_every_notebook_has_written_questions_in_the_exported_format():
    """`make submit` finds them: a `**Q<n>.` line, then an answer cell, in every notebook."""
    for notebook in sorted(paths.NOTEBOOKS.glob("*.ipynb")):
        found = written.questions(nbformat.read(notebook, as_version=4))
        assert found, f"{notebook.name}: no written questions"
        assert all(q.answers and q.answers[0].source.startswith("*Your answer:*")
                   for q in found), notebook.name
