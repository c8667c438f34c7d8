# aria_stream developer commands. Each target creates .venv and installs the package with its
# test extras when they are missing or older than setup.cfg.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: run test lint fmt bench clean install

# Create the virtual environment and install aria_stream in editable mode with its extras.
install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

# Start the viewer on the embedded LiteLLM simulator (or on ARIA_LITELLM_URL when set).
run: $(STAMP)
	$(BIN)/aria-stream serve

# Run the test suite; browser tests skip when Chromium is missing, unless CI is set.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Run every benchmark scenario (under 10 minutes on 2 cores); writes docs/benchmarks.md.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# Check style and types of the package.
lint: $(STAMP)
	$(BIN)/ruff check aria_stream tests
	$(BIN)/ruff format --check aria_stream tests
	$(BIN)/mypy aria_stream

# Format the code in place.
fmt: $(STAMP)
	$(BIN)/ruff format aria_stream tests
	$(BIN)/ruff check --fix aria_stream tests

# Remove the virtual environment and caches.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
