# Two entry points: `make demo` (set up + the main job on built-in data) and `make test` (set up + lint + the tests).
# Set-up installs the CPU wheel torch==2.13.0 BEFORE the project, so no multi-GB CUDA build is downloaded.
# pip byte-compiles every installed file on one core (about 60 of the set-up's 140 s); here it installs with
# --no-compile and compileall does the same on every core (about 40 s on 2). The .pyc files must exist: with
# PYTHONDONTWRITEBYTECODE set (as on this machine) Python would otherwise compile torch again in every process.
# compileall's exit status is ignored: a few files in third-party packages do not compile, as under pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: setup setup-media demo test lint bench mutate clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check --no-compile -e '.[dev,serve]'
	-$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1
	touch $@

# Optional: the media extra for `accord extract` / `accord predict` (docs/features.md). Kept out of `setup`: it adds
# about 1 GB of wheels (MediaPipe + jax, OpenCV, transformers, pyarrow) and several minutes; without it the media
# tests skip with the reason. Installs nothing that changes torch/numpy (the CPU torch 2.13.0 satisfies every range).
setup-media: setup
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,serve,media]'

demo: setup
	$(BIN)/accord demo

test: lint
	$(BIN)/pytest -rs

# The code's own health (run by `make test`, hence by CI): style, the import floors (docs/architecture.md), types.
lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports --no-logo
	$(BIN)/mypy

bench: setup
	$(BIN)/python benchmarks/throughput.py --out benchmarks/results/throughput.json

# Mutation testing over the methods' code (pyproject.toml [tool.mutmut]); hours on 2 cores, so not in CI: run it
# before a release. Writes benchmarks/results/mutation.md (score per file, survivors and their triage).
mutate: setup
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,mutation]'
	$(BIN)/python benchmarks/mutation.py run --label after

clean:
	rm -rf $(VENV) runs mutants .pytest_cache .ruff_cache .mypy_cache .import_linter_cache
