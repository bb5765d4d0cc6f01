# sslgrid: `make run` builds results/wer_table.csv on the embedded default corpus,
# `make test` runs the test suite. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 8
APT_PACKAGES := espeak-ng sox

.PHONY: setup system-deps run test lint dry-run clean

setup: system-deps $(VENV)/.installed

# Debian packages: installed when root, otherwise named so the user can install them.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "sslgrid needs these Debian packages; please run: sudo apt-get install$$missing" >&2; exit 1; \
	fi

$(VENV)/.installed: envs/requirements.txt envs/requirements-dev.txt envs/constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r envs/requirements.txt -r envs/requirements-dev.txt -c envs/constraints.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES) results/wer_table.csv

dry-run: setup
	$(BIN)/snakemake -n --cores $(CORES) results/wer_table.csv

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

clean:
	rm -rf .snakemake results/* data logs && touch results/.gitkeep
