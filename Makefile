# The front door. `make run` and `make test` each set up what they need on a fresh machine:
# a .venv, the project installed editable (compiling the Cython hub), the test dependencies.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run dev test test-fast bench bench-quick bench-build bench-micro soak wheel lint annotate clean

$(STAMP): pyproject.toml setup.py src/fastchat/_hub.pyx src/fastchat/_hub.pxd
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $@

run: $(STAMP)
	$(BIN)/fastchat serve

# Restarts on changes to sources, templates and static files; rebuilds the hub on .pyx changes.
dev: $(STAMP)
	$(BIN)/fastchat serve --reload

test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Without the browser tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

# fastchat beside the baseline, same scenarios, same invocation, pinned cores; prints ratios.
# --wait-quiet: before each run, wait (up to 90 s) for both cores to be idle; this machine
# is shared, and a run started under someone else's load measures them too. The REST
# scenarios need wrk (Debian's package; installed here when missing and we are root).
bench: $(STAMP) bench-build
	bash scripts/system-deps.sh bench
	$(BIN)/python -m bench.run --wait-quiet
	$(BIN)/python -m bench.scaling

bench-quick: $(STAMP) bench-build
	bash scripts/system-deps.sh bench
	$(BIN)/python -m bench.run --quick

# The load generator's timed receiver in C (bench/_recv.pyx), so it keeps up with the server.
bench-build: $(STAMP)
	$(BIN)/python bench/build_recv.py

bench-micro: $(STAMP)
	$(BIN)/python -m pytest bench -p no:cacheprovider --benchmark-only -o testpaths=bench

# A few minutes of churn: thousands of clients joining, chatting, leaving; RSS, fds, losses.
soak: $(STAMP)
	$(BIN)/python -m bench.soak --seconds 180 --clients 2000 --rooms 50

wheel: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/auditwheel repair --wheel-dir dist dist/*-linux_*.whl
	rm -f dist/*-linux_*.whl
	ls -l dist

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

annotate: $(STAMP)
	$(BIN)/cython -a src/fastchat/_hub.pyx -o build/_hub_annotated.c

clean:
	rm -rf build dist *.egg-info src/*.egg-info src/fastchat/_hub.c src/fastchat/*.so .pytest_cache
