# nnrun: `make demo` trains the built-in diabetes config offline; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The real datasets, when they sit beside the checkout (development machines, CI).
SHARED_DATA := $(abspath ../shared/datasets)
ifeq ($(origin NNRUN_DATA_DIR), undefined)
  ifneq ($(wildcard $(SHARED_DATA)/mnist),)
    export NNRUN_DATA_DIR := $(SHARED_DATA)
  endif
endif
SMOKE_RUNS ?= runs/smoke

.PHONY: install demo test test-fast smoke image-data bench lint clean

install: $(VENV)/.installed

# constraints.txt pins every package to the versions the suite passed on (see README, "Upgrading").
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,ray,tensorboard,export,mlflow]'
	touch $@

demo: install
	$(BIN)/nnrun train configs/diabetes_mlp.yaml

test: install
	$(BIN)/python -m pytest

# Every test that trains nothing (no `slow` marker): under a minute, in two processes (many of these tests wait on
# subprocesses and locks, so two overlap well even on two cores).
test-fast: install
	$(BIN)/python -m pytest -m "not slow" -n 2

# The image-folder examples read folders that scripts/make_images.py writes (data/ is git-ignored).
image-data: install
	$(BIN)/python scripts/make_images.py shapes
	@if [ -n "$$NNRUN_DATA_DIR" ]; then $(BIN)/python scripts/make_images.py mnist; \
	  else echo "NNRUN_DATA_DIR unset: configs/mnist_png.yaml has no MNIST to write out and will fail"; fi

smoke: install image-data
	@set -e; for config in configs/*.yaml; do \
	  echo "== smoke: $$config"; \
	  start=$$(date +%s); \
	  $(BIN)/nnrun train $$config --smoke --quiet --runs-dir $(SMOKE_RUNS); \
	  echo "   $$(( $$(date +%s) - start ))s"; \
	done

bench: install
	$(BIN)/python bench/run.py

lint: install
	$(BIN)/python -m pip install --quiet -c constraints.txt ruff
	$(BIN)/ruff check nnrun tests bench scripts

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
