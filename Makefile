# The front door. `make run` and `make test` each set up what they need on a fresh machine:
# a .venv, the project installed editable (compiling the Cython hub), the test dependencies.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run dev test test-fast bench bench-micro wheel lint annotate clean

$(STAMP): pyproject.toml setup.py src/fastchat/_hub.pyx src/fastchat/_hub.pxd
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $@

run: $(STAMP)
	$(BIN)/fastchat serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Without the browser tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

bench-micro: $(STAMP)
	$(BIN)/python -m pytest bench -p no:cacheprovider --benchmark-only -o testpaths=bench

wheel: $(STAMP)
	rm -rf dist build
	$(BIN)/python -m pip wheel --no-deps -w dist .
	$(BIN)/python -m build --sdist 2>/dev/null || true

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

annotate: $(STAMP)
	$(BIN)/cython -a src/fastchat/_hub.pyx -o build/_hub_annotated.c

clean:
	rm -rf build dist *.egg-info src/*.egg-info src/fastchat/_hub.c src/fastchat/*.so .pytest_cache
