# Two commands matter: `make demo` (set up + run the demo curation end to end) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# pip prints one harmless "Location ... is ignored" line per package for this machine's extra index
QUIET_PIP := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: setup demo test test-fast test-ray mutate bench clean-state

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-lmeval.txt requirements-nodeps.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -r requirements.txt -r requirements-dev.txt $(QUIET_PIP)
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt $(QUIET_PIP)
	$(BIN)/pip install -q --no-deps -e . $(QUIET_PIP)
	$(BIN)/python -c "import app.cli, torch, prefect, mlflow, dvc" 
	touch $@

demo: setup
	$(BIN)/curate demo-data
	$(BIN)/curate run

# Both print the 15 slowest tests; a skip not listed in tests/skips_allowed.txt fails them (tests/conftest.py).
# `make test` runs the test files in TEST_WORKERS processes (pytest-xdist, a file's tests in one process):
# on 2 cores the integration tests wait on their subprocesses enough that 2 workers halve the wall time.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/lint-imports
	$(BIN)/pytest -q -m "not ray" -n $(TEST_WORKERS) --dist loadfile --durations=15

# Unit tests only (no Prefect server, nothing marked slow): a few minutes.
test-fast: setup
	$(BIN)/lint-imports
	$(BIN)/pytest -q -m "not integration and not slow" --durations=15

# The mutation gate: each mutant of tests/mutation/mutants.py (a small bug in the scoring, the greedy, dedup,
# truncation, the quarantine, audit, the cache keys, LoRA, resume) applied to a copy of the tree must make a
# fast unit test fail; a survivor, or a mutant whose code moved, fails it. Not part of `make test` (~15-20 min).
MUTATE_JOBS ?= 1
mutate: setup
	$(BIN)/python tests/mutation/run.py --jobs $(MUTATE_JOBS) --table

# The Ray runner's tests (marked `ray`): prefect-ray and ray from requirements-ray.txt, then a local Ray instance.
test-ray: setup
	$(BIN)/pip install -q -c constraints.txt -r requirements-ray.txt $(QUIET_PIP)
	$(BIN)/pytest -q -m ray --durations=5

bench: setup
	$(BIN)/python bench/greedy.py
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/online.py
	$(BIN)/python bench/online_quality.py
	$(BIN)/python bench/quality.py
	$(BIN)/python bench/real.py
	$(BIN)/python bench/scaleout.py
	$(BIN)/python bench/offline_load.py

clean-state:
	rm -rf .curate data/ingest data/dedup data/embed data/score data/rounds data/eval data/models
