# gmm-course: the two commands are `make course` and `make test` (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup instructor course book collapse test test-fast lint format bench clean grade release dist

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[all]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

## setup: the virtualenv with every extra, vendored book assets, and headless Chromium
setup: $(VENV)/.installed
	bash scripts/setup-assets.sh

# The instructor's install: Python only (no node, npm or Chromium): grading, release, dist.
$(VENV)/.instructor: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[instructor]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

## instructor: what grade, release and dist need (the [instructor] extra, bubblewrap), no node
instructor: $(VENV)/.instructor
	bash scripts/setup-bubblewrap.sh

## course: build everything a reader sees (the book, with the collapse experiment)
course: book
	$(BIN)/gmm-collapse all --out results/collapse
	@echo "Book: $(CURDIR)/book/_build/html/index.html"
	@echo "Collapse experiment: $(CURDIR)/results/collapse/"

book: setup
	$(BIN)/jupyter-book build book -W -n --keep-going

collapse: setup
	$(BIN)/gmm-collapse all --out results/collapse

# pytest on every core (pytest-xdist) with one worker more than cores: the costly modules spend
# part of their time waiting (on a Jupyter server, kernels, a Dask cluster, Chromium), and the
# extra worker runs other tests meanwhile. The modules whose fixtures are costly each stay on one
# worker, the costliest are handed out first, and the book and the graded class (every grading
# test's students, tests/graded_class.py) are each built once per run (a file lock):
# see tests/conftest.py. `make test TEST_WORKERS=2` sets the number of workers.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist load

## test: lint, then every test (library, collapse, book build + browser, explorer, grading)
test: setup lint
	$(PYTEST) --durations=25

## test-fast: lint, then every test not marked slow or browser (the loop while editing)
test-fast: setup lint
	$(PYTEST) -m "not slow and not browser"

PY_SOURCES := gmmlib grading tests benchmarks scripts book/_ext
# Modules the book shows (literalinclude): lines <= 79 so they fit the page's code column.
# Keep this list and [tool.ruff.format] exclude in pyproject.toml the same.
BOOK_SHOWN := gmmlib/em.py

## lint: ruff (rules, then formatting) for Python, eslint for the explorer's ES modules
lint: setup
	$(BIN)/ruff check $(PY_SOURCES)
	node_modules/.bin/eslint .
	$(BIN)/ruff check --line-length 79 $(BOOK_SHOWN)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/ruff format --check --line-length 79 $(BOOK_SHOWN)

## format: ruff format every Python source (the book-shown modules at 79 columns)
format: setup
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff format --line-length 79 $(BOOK_SHOWN)

## grade: grade a folder of submissions: make grade SUBMISSIONS=<folder> [ASSIGNMENT=em_by_hand] [OUT=graded]
grade: instructor
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<folder> [ASSIGNMENT=<id>] [OUT=graded]"; exit 2; }
	$(BIN)/gmm-grade "$(SUBMISSIONS)" --out "$(or $(OUT),graded)" $(foreach a,$(ASSIGNMENT),--assignment $(a))

## release: regenerate exercises/ (the student release) from solutions/
release: instructor
	$(BIN)/python -m grading.release

## dist: the wheel students install (gmmlib only, no grading code): dist/gmmlib-*.whl
dist: instructor
	$(BIN)/python scripts/make_student_wheel.py --out dist

## bench: gmmlib vs scikit-learn per EM round; the explorer in Chromium; grading 100 students
bench: setup
	$(BIN)/python benchmarks/bench_em.py
	$(BIN)/python benchmarks/bench_explorer.py
	$(BIN)/python benchmarks/bench_grading.py --students 100 --assignment em_by_hand

clean:
	rm -rf book/_build artifacts results dist
