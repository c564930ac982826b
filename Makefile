# The two commands of the README: `make run` (the main job) and `make test` (every test, notebooks included).
# Both create .venv when it is missing and install the project into it; nothing is needed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROFILE ?= quick
PYTEST_ARGS ?=

LAB_PORT ?= 8888
LAB_IP ?= 127.0.0.1

.PHONY: install install-unlocked install-gpu run test test-fast test-gpu lab report clean

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

# Both leave the work tree as it was: the check after them fails if a tracked file changed or an
# untracked one appeared (outputs belong in runs/, results/ or a temporary folder).
GIT_STATUS := git status --porcelain 2>/dev/null || true
GIT_STATUS_RUN := git status --porcelain -- . ':(exclude)results/measured' 2>/dev/null || true
TREE_STATUS = $(GIT_STATUS)
CHECK_TREE = after="$$($(TREE_STATUS))"; if [ "$$before" != "$$after" ]; then \
	echo "error: this command changed the work tree (git status --porcelain before and after):"; \
	echo "$$before" | sed 's/^/  before: /'; echo "$$after" | sed 's/^/  after:  /'; exit 1; fi

# PROFILE=study (issue 15) writes its results to results/measured/<machine>/, which is committed: the check
# leaves that folder out. RUN_ARGS passes options on, e.g. RUN_ARGS="--max-minutes 55" or "--plan-only".
RUN_ARGS ?=
run: TREE_STATUS = $(GIT_STATUS_RUN)
run: $(STAMP) system-deps
	@before="$$($(TREE_STATUS))"; $(BIN)/python scripts/run_study.py --profile $(PROFILE) $(RUN_ARGS); \
	status=$$?; $(CHECK_TREE); exit $$status

test: $(STAMP) system-deps
	@before="$$($(TREE_STATUS))"; \
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg tests notebooks $(PYTEST_ARGS); \
	status=$$?; $(CHECK_TREE); exit $$status

# The newest run's notebooks 05 and 06 as one self-contained page, runs/<timestamp>/report.html
# (`make report RUN=runs/<timestamp>` for another run).
report: $(STAMP)
	$(BIN)/python -m thesislib report --html $(if $(RUN),--run $(RUN))

# Unit tests alone, no notebooks.
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests -m "not slow" $(PYTEST_ARGS)

# On a machine with a CUDA GPU: `make install-gpu test-gpu`.
install-gpu: $(STAMP)
	$(BIN)/python -m pip install -q -c $(LOCK) -e '.[test,gpu]'

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -m gpu tests $(PYTEST_ARGS)

# What pip cannot install: nginx (tests/test_remote.py serves stores over HTTP with it) and libturbojpeg (the
# compiled JPEG batch loop, thesislib/kernels/turbojpeg.py). Installed from the distribution's packages only
# when missing (needs root, or sudo without a password); where that fails the HTTP tests skip with the reason
# and JPEG stores are decoded by simplejpeg (in CI, where the CI variable is set, those tests fail).
SYSTEM_PACKAGES := nginx-light libturbojpeg0
.PHONY: system-deps
system-deps:
	@{ { command -v nginx >/dev/null || test -x /usr/sbin/nginx; } && ldconfig -p | grep -q libturbojpeg.so.0; } || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(SYSTEM_PACKAGES); } || \
	  echo "warning: could not install $(SYSTEM_PACKAGES) (apt-get needs root): the HTTP tests will not run and JPEG reads are slower"

# JupyterLab on the notebooks, with the URL (and its token) printed first. As root (containers, cloud
# machines) it needs --allow-root and opens no browser. `make lab LAB_IP=0.0.0.0` to reach it from outside.
lab: $(STAMP)
	@token="$$($(BIN)/python -c 'import secrets; print(secrets.token_hex(24))')"; \
	if [ "$$(id -u)" = 0 ]; then as_root="--allow-root --no-browser"; echo "running as root: --allow-root"; fi; \
	echo "JupyterLab: open http://$(LAB_IP):$(LAB_PORT)/lab?token=$$token"; \
	exec $(BIN)/jupyter lab notebooks --ip=$(LAB_IP) --port=$(LAB_PORT) --ServerApp.port_retries=0 \
		--IdentityProvider.token="$$token" $$as_root

clean:
	rm -rf data/*/ results runs .pytest_cache
