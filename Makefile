# The two commands of the README: `make run` (the main job) and `make test` (every test, notebooks included).
# Both create .venv when it is missing and install the project into it; nothing is needed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROFILE ?= quick
PYTEST_ARGS ?=

.PHONY: install install-unlocked install-gpu run test test-fast test-gpu lab clean

LOCK   := requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# The newest releases pyproject.toml allows, ignoring the lock (to refresh requirements.lock).
install-unlocked:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --upgrade -e '.[test]'

run: $(STAMP)
	$(BIN)/python scripts/run_study.py --profile $(PROFILE)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg tests notebooks $(PYTEST_ARGS)

# Unit tests alone, no notebooks.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow" $(PYTEST_ARGS)

# On a machine with a CUDA GPU: `make install-gpu test-gpu`.
install-gpu: $(STAMP)
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[test,gpu]'

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu tests $(PYTEST_ARGS)

# Programs the tests start that pip cannot install: nginx (tests/test_remote.py serves stores over HTTP with
# it). Installed from the distribution's packages only when missing (needs root, or sudo without a password);
# where that fails the HTTP tests skip with the reason (in CI, where the CI variable is set, they fail).
.PHONY: system-deps
system-deps:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q nginx-light; } || \
	  echo "warning: could not install nginx-light (apt-get needs root): the HTTP tests will not run"

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

clean:
	rm -rf data/*/ results runs .pytest_cache
