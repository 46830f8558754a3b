# Two commands on a fresh machine: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: venv test bench demo clean

venv: $(STAMP)

# editable install with the dev extras; redone only when pyproject.toml changes
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python bench/bench_layers.py

demo: venv
	$(BIN)/timm-infodrop infomap -o out/infomap.png --overwrite

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
