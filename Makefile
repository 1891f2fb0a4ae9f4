# Student and instructor entry points. Every target installs .venv first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
A      ?= all
IMPL   ?= assignments

.PHONY: install grade test bench submit notebook skeletons fixtures check release clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,notebook]' 2>&1 \
	  | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, grader, dlkit" || (echo "install failed" && exit 1)
	@touch $@

grade: install  ## score table for every assignment (A=name, IMPL=assignments|solutions|DIR)
	$(PY) -m grader grade $(A) --impl $(IMPL) $(ARGS)

test: install  ## the project's own tests
	$(PY) -m pytest $(ARGS)

bench: install  ## timings: grading, attention speed, training
	$(PY) tests/bench.py $(ARGS)

submit: install  ## write submissions/$(A).zip to upload
	@test "$(A)" != all || (echo "usage: make submit A=<assignment>" && exit 2)
	$(PY) -m grader submit $(A) --impl $(IMPL)

notebook: install  ## open the notebooks in JupyterLab
	$(VENV)/bin/jupyter lab notebooks/

skeletons: install  ## regenerate assignments/ from solutions/ and notebooks/*.ipynb from notebooks/*.py
	$(PY) -m grader skeletons
	$(PY) -m grader notebooks

fixtures: install  ## regenerate fixtures/ from solutions/
	$(PY) -m grader fixtures

check: install  ## skeletons and fixtures in sync with solutions/
	$(PY) -m grader skeletons --check
	$(PY) -m grader notebooks --check
	$(PY) -m grader fixtures --check

release: install  ## build/student (+ .zip) and build/gradescope_<a>.zip
	$(PY) -m grader release --out build

clean:
	rm -rf submissions build .pytest_cache
