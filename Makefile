# Two commands do everything on a fresh machine (Python 3.11, x86_64, pip):
#   make demo   set up .venv if needed, then run the workflow on the embedded demo
#   make test   set up .venv if needed, then run the test suite
# The install follows the order docs/design.md §8 requires; see requirements/*.txt for why.

PYTHON      ?= python3.11
VENV        ?= .venv
BIN         := $(VENV)/bin
PIP         := $(BIN)/python -m pip --disable-pip-version-check
STAMP       := $(VENV)/.cirflow-installed
REQS        := $(sort $(wildcard requirements/*.txt))
CORES       ?= 2
PYTEST_ARGS ?=

# Offline and local caches (docs/design.md §8): without these, tokenizer/YOLO look-ups hang for minutes.
export HF_HUB_OFFLINE          := 1
export TRANSFORMERS_OFFLINE    := 1
export YOLO_OFFLINE            := 1
export YOLO_AUTOINSTALL        := false
export YOLO_CONFIG_DIR         := $(CURDIR)/.cache/ultralytics
export MPLCONFIGDIR            := $(CURDIR)/.cache/matplotlib
export TORCH_HOME              := $(CURDIR)/.cache/torch
export HF_HOME                 := $(CURDIR)/.cache/huggingface
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: all demo test install lint format bench clean-results help

help:
	@echo "make demo   - install (if needed) and run the workflow on the embedded demo"
	@echo "make test   - install (if needed) and run the tests"
	@echo "make lint   - ruff, snakefmt --check and snakemake --lint"

install: $(STAMP)

# Re-runs only when a requirements file or pyproject.toml changes: a second `make` installs nothing.
$(STAMP): $(REQS) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip==25.3
	$(PIP) install -q -r requirements/1-torch.txt
	$(PIP) install -q -r requirements/2-core.txt
	$(PIP) install -q --no-deps -r requirements/3-lavis-nodeps.txt
	$(PIP) install -q --no-deps --force-reinstall -r requirements/4-opencv-contrib.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -c "import cv2, cv2.saliency, torch, torchvision, ultralytics, cirflow.model.lavis_modules; print('environment OK: cv2', cv2.__version__, '| torch', torch.__version__)"
	@touch $@

# The demo's GPU-declared jobs are tiny models: two may run at once (stage 2 beside its control, one
# thread each: train.resources.stage2_threads), on the CPU or sharing one GPU.
DEMO_GPU_JOBS ?= 2

demo: $(STAMP)
	$(BIN)/snakemake --workflow-profile profiles/local --cores $(CORES) --resources gpu=$(DEMO_GPU_JOBS)
	$(BIN)/cirflow summary results/demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check cirflow workflow_scripts tests benchmarks
	$(BIN)/ruff format --check cirflow workflow_scripts tests benchmarks
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format cirflow workflow_scripts tests benchmarks
	$(BIN)/ruff check --fix cirflow workflow_scripts tests benchmarks
	$(BIN)/snakefmt Snakefile rules

clean-results:
	rm -rf results logs benchmarks/runs .snakemake
