# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# timm's own model test-suite (tests/test_models.py of the installed timm's sdist): one variant per
# family with both methods in `make test`, every registered variant in `make test-timm`
TIMM_SUBSET := $(foreach arch,resnet18 resnet26d resnext50_32x4d wide_resnet50_2 convnext_atto \
	efficientnet_b0 efficientnet_lite0 tf_efficientnet_lite0 mobilenetv3_large_100 regnety_016,$(arch)_infodrop $(arch)_infodropout)

.PHONY: venv test test-fast test-timm check-docs bench demo zoo clean

venv: $(STAMP)

# editable install with the dev extras; redone only when pyproject.toml changes
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# pytest on one worker per core (pytest-xdist, at most 8), each worker on one thread whose idle waits sleep
# (OMP_WAIT_POLICY=PASSIVE): the cores stay busy while a test waits on a subprocess, and a competing process
# slows the tests down instead of thrashing them (docs/development.md has the timings)
WORKERS ?= auto
PYTEST := OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n $(WORKERS) --maxprocesses 8

# every test (CI): the documents, pytest's slow and fast tiers, timm's suite
test: venv check-docs
	$(PYTEST)
	OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE $(BIN)/python tests/support/timm_suite.py --models $(TIMM_SUBSET) \
		-- -n $(WORKERS) --maxprocesses 8

# the edit-test loop: every test not marked slow (pyproject.toml's markers), a few minutes on 2 cores
test-fast: venv
	$(PYTEST) -m "not slow"

# the committed documents regenerate from the committed results and records: MODEL_CARD.md, hub_configs/ and
# docs/benchmark.md (the unit tests read no measured number, so a rerun of a zoo breaks none of them)
CHECK := out/check-docs
check-docs: venv
	rm -rf $(CHECK) && mkdir -p $(CHECK)
	$(BIN)/timm-infodrop zoo card --card $(CHECK)/MODEL_CARD.md
	diff -u MODEL_CARD.md $(CHECK)/MODEL_CARD.md
	$(BIN)/timm-infodrop hub render --out $(CHECK)/hub_configs
	diff -ru hub_configs $(CHECK)/hub_configs
	$(BIN)/timm-infodrop study doc --records zoo/results/calibration.jsonl --out $(CHECK)/benchmark.md
	diff -u docs/benchmark.md $(CHECK)/benchmark.md
	$(BIN)/timm-infodrop study doc --study pacs_in1k_study --out $(CHECK)/pacs_calibration.md
	diff -u docs/pacs_calibration.md $(CHECK)/pacs_calibration.md

test-timm: venv
	$(BIN)/python tests/support/timm_suite.py

# the benchmarks, on an idle machine: results written where named, docs/speed.md's tables rendered from them;
# every script runs even when an earlier one misses a target (its exit status 1), and then make fails
bench: venv
	status=0; \
	$(BIN)/python bench/bench_layers.py --out bench/results.json --page docs/speed.md || status=1; \
	$(BIN)/python bench/bench_data.py --out bench/results-data.json || status=1; \
	$(BIN)/python bench/bench_precision.py --out bench/results-precision.json --page docs/speed.md || status=1; \
	exit $$status

# the main job: the quick zoo (4 rows trained, converted and evaluated on the synthetic benchmark, then read)
demo: venv
	$(BIN)/timm-infodrop zoo run --quick

# the full zoo behind MODEL_CARD.md and hub_configs/: 5 models x 3 seeds at the recipes' budget (zoo/results/run.json
# records the minutes it took)
zoo: venv
	$(BIN)/timm-infodrop zoo run --seeds 3
	$(BIN)/timm-infodrop zoo drop-sites --benchmark shapes
	$(BIN)/timm-infodrop zoo card
	$(BIN)/timm-infodrop hub render

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis .cache zoo/results-quick
