# sslgrid: `make run` builds the grid's tables (results/wer_table.csv, ...) on the embedded corpus,
# `make test` runs the test suite. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= $(shell nproc)
# espeak-ng and sox synthesise the synthetic corpus; cmake, boost and the compression headers
# build KenLM's lmplz (not on PyPI as a binary) from its source distribution.
APT_PACKAGES := espeak-ng sox cmake g++ make libboost-program-options-dev libboost-system-dev \
	libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev

.PHONY: setup system-deps run test lint dry-run clean

setup: system-deps $(VENV)/.installed $(BIN)/lmplz

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

# KenLM's lmplz and build_binary, built from the pinned kenlm sdist into the venv.
$(BIN)/lmplz: scripts/build_kenlm.sh | $(VENV)/.installed
	JOBS=2 scripts/build_kenlm.sh $(VENV)

# The default target (rule all): the WER table and its plots, the phone-probe table and the
# speech-translation table.
run: setup
	$(BIN)/snakemake --cores $(CORES)

dry-run: setup
	$(BIN)/snakemake -n --cores $(CORES)

test: setup
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

clean:
	rm -rf .snakemake results/* data logs && touch results/.gitkeep
