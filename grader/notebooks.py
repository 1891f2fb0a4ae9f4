"""Notebooks are written as percent scripts (`notebooks/<a>.py`, readable diffs) and built
into the `.ipynb` students open: `# %%` starts a code cell, `# %% [markdown]` a markdown cell
whose lines are comments; either may end with jupytext's `tags=["a", "b"]` (cell tags).
"""
import json
import re

import nbformat

from grader import paths
from grader.authoring import sync_text


TAGS = re.compile(r"\btags=(\[.*\])\s*$")


def cells(script: str) -> list:
    out, kind, lines, tags = [], None, [], []

    def flush():
        text = "\n".join(lines).strip("\n")
        metadata = {"tags": tags} if tags else {}
        if kind == "markdown":
            out.append(nbformat.v4.new_markdown_cell(
                "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in text.splitlines()),
                metadata=metadata))
        elif kind == "code" and text:
            out.append(nbformat.v4.new_code_cell(text, metadata=metadata))

    for line in script.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
            found = TAGS.search(line)
            tags = json.loads(found.group(1)) if found else []
        elif kind is not None:
            lines.append(line)
    flush()
    return out


def build(script: str) -> str:
    nb = nbformat.v4.new_notebook(cells=cells(script), metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index}"  # stable ids: rebuilding changes nothing
    return nbformat.writes(nb) + "\n"


def notebooks(check: bool) -> list[str]:
    """Build every notebooks/<a>.ipynb from notebooks/<a>.py; returns the out-of-date ones."""
    return sync_text({script.with_suffix(".ipynb"): build(script.read_text())
                      for script in sorted(paths.NOTEBOOKS.glob("*.py"))}, check)
