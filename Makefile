# The front door. `make run` and `make test` each set up what they need on a fresh machine:
# a .venv, the project installed editable (compiling the Cython hub), and for `make run`
# nothing more; the test and dev tools (and the redis and postgres extras the suite
# exercises) only for the targets that use them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEPS   := pyproject.toml setup.py src/fastchat/_hub.pyx src/fastchat/_hub.pxd src/fastchat/_listener.pyx src/fastchat/_lane.pyx src/fastchat/_keys.pyx
# Serving only: the core dependencies.
SERVE_STAMP := $(VENV)/.serve-stamp
# Everything: tests, lint, wheel, benchmarks (a superset of serving, so it stamps both).
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
# Every CPython `make wheel` builds and tests a wheel for: those of 3.11-3.13 found here.
WHEEL_PYTHONS ?= $(shell for v in 3.11 3.12 3.13; do \
	for p in $$HOME/.pyenv/versions/$$v.*/bin/python$$v /usr/bin/python$$v /usr/local/bin/python$$v; do \
	  if [ -x "$$p" ]; then echo "$$p"; break; fi; done; done)

.PHONY: run dev test test-fast screenshots bench bench-record bench-quick bench-build bench-micro \
	soak wheel lint annotate clean

$(SERVE_STAMP): $(DEPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip setuptools wheel
	$(BIN)/python -m pip install -q -e .
	touch $@

$(STAMP): $(DEPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip setuptools wheel
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	touch $@ $(SERVE_STAMP)

run: $(SERVE_STAMP)
	$(BIN)/fastchat serve

# Restarts on changes to sources, templates and static files; rebuilds the hub on .pyx changes.
dev: $(SERVE_STAMP)
	$(BIN)/fastchat serve --reload

test: $(STAMP)
	bash scripts/system-deps.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Without the browser tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

# The tests write nothing into the tree (screenshots go to build/screenshots/); this updates
# the README's tracked copies in docs/screenshots/ on purpose.
screenshots: $(STAMP)
	bash scripts/system-deps.sh
	rm -rf build/screenshots
	$(BIN)/python -m pytest -q tests/e2e/test_screenshots.py
	cp build/screenshots/*.png docs/screenshots/

# fastchat beside the baseline, same scenarios, same invocation, pinned cores; prints ratios.
# --wait-quiet: before each run, wait (up to 90 s) for both cores to be idle; this machine
# is shared, and a run started under someone else's load measures them too. The REST
# scenarios need wrk, the expert Go build Go (Debian's packages; bench-build installs them
# when missing and we are root).
bench: $(STAMP) bench-build
	$(BIN)/python -m bench.run --wait-quiet
	$(BIN)/python -m bench.scaling

# `make bench`, its results written to the tracked bench/results.json on purpose (the figures
# bench/RESULTS.md quotes); `make bench` alone writes build/bench/results.json.
bench-record: $(STAMP) bench-build
	$(BIN)/python -m bench.run --wait-quiet --json bench/results.json
	$(BIN)/python -m bench.scaling

bench-quick: $(STAMP) bench-build
	$(BIN)/python -m bench.run --quick
	$(BIN)/python -m bench.search --messages 100000 --queries 100

# The load generator's timed receiver in C (bench/_recv.pyx), so it keeps up with the server,
# and the expert Go build fastchat is measured beside (bench/goexpert: Debian's Go and its
# packaged gorilla/websocket and go-sqlite3; no network).
bench-build: $(STAMP)
	bash scripts/system-deps.sh bench
	$(BIN)/python bench/build_recv.py
	GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOCACHE=$(CURDIR)/build/gocache \
	  go build -o build/goexpert ./bench/goexpert

bench-micro: $(STAMP)
	$(BIN)/python -m pytest bench -p no:cacheprovider --benchmark-only -o testpaths=bench

# A few minutes of churn: thousands of clients joining, chatting, leaving; RSS, fds, losses.
soak: $(STAMP)
	$(BIN)/python -m bench.soak --seconds 180 --clients 2000 --rooms 50

# The sdist, then one manylinux wheel per CPython in WHEEL_PYTHONS, each built from the sdist
# (so the sdist is proven to rebuild), repaired by auditwheel, installed with no extras into a
# fresh venv and smoke-tested (scripts/smoke.py: pages, REST, a WebSocket message, the
# missing-extra message). Elsewhere, cibuildwheel (pyproject.toml) does the same in manylinux
# containers for x86_64 and aarch64.
wheel: $(STAMP)
	test -n "$(WHEEL_PYTHONS)" || { echo "no CPython 3.11-3.13 found"; exit 1; }
	rm -rf dist build/wheel
	$(BIN)/python -m build --sdist --outdir dist .
	for py in $(WHEEL_PYTHONS); do \
	  $$py -m pip wheel -q --no-deps -w build/wheel/raw dist/*.tar.gz || exit 1; \
	done
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/auditwheel repair --wheel-dir dist build/wheel/raw/*.whl
	for py in $(WHEEL_PYTHONS); do \
	  tag=$$($$py -c 'import sys; print("cp%d%d" % sys.version_info[:2])'); \
	  $$py -m venv --clear build/wheel/venv-$$tag || exit 1; \
	  build/wheel/venv-$$tag/bin/python -m pip install -q dist/*-$$tag-*.whl 'websockets>=13' || exit 1; \
	  (cd build/wheel && venv-$$tag/bin/python $(CURDIR)/scripts/smoke.py) || exit 1; \
	done
	ls -l dist

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

annotate: $(STAMP)
	$(BIN)/cython -a src/fastchat/_hub.pyx -o build/_hub_annotated.c

clean:
	rm -rf build dist *.egg-info src/*.egg-info src/fastchat/_hub.c src/fastchat/_listener.c src/fastchat/_lane.c src/fastchat/_keys.c \
	  src/fastchat/*.so .pytest_cache
