# The two README commands: `make demo` runs the main job, `make test` runs the test suite.
# Both create the project virtual environment on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Which torch to install first. CPU-only laptops and CI: the CPU build, e.g.
#   make test TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
# GPU nodes: the CUDA build matching the driver, e.g. TORCH="torch==2.13.0" TORCH_INDEX=""
# (PyPI's default torch wheel for Linux is a CUDA build of several GB).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, as chosen above: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet $(TORCH_INDEX) '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[test,bench]'
	# The Dask Kubernetes operator, for the manifest tests only: without its dependencies (its
	# kubernetes client wants a python-dateutil that botocore, under s3fs, refuses).
	$(BIN)/pip install --quiet --no-deps 'dask-kubernetes>=2024.8'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/medsyn-dask demo

test: $(STAMP)
	$(BIN)/ruff check medsyn_dask tests benchmarks
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_neighbours.py

clean:
	rm -rf $(VENV) demo-output
