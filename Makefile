# The two entry points of the README: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The packages by exact version, written by `make lock` from pyproject.toml: LOCK what
# `pip install .` needs (the image installs it), LOCK_ALL that and every extra (make installs it).
LOCK := requirements.lock
LOCK_ALL := requirements-all.lock
# Where the installers' output goes (apt.log, pip.log, lock.log).
LOGS := $(VENV)/logs
export OPENBLAS_NUM_THREADS ?= 1
# torch threads spin-wait by default, which starves the other core on a busy 2-core machine
export OMP_WAIT_POLICY ?= PASSIVE

# A shell function for the recipes: `quietly NAME command...` appends the command's output to
# $(LOGS)/NAME.log and shows the end of that log only if the command fails.
QUIETLY = quietly() { log="$(LOGS)/$$1.log"; shift; mkdir -p "$(LOGS)"; \
  "$$@" >>"$$log" 2>&1 || { status=$$?; tail -n 30 "$$log" >&2; \
  echo "failed: $$* (the whole output: $$log)" >&2; return $$status; }; };

.PHONY: demo test install lock lint browser compose java soundfont docker deploy-check teacher

# The lock's torch is PyTorch's CPU build, which PyPI does not carry: pip takes it from its
# usual sources where they have it (this machine's wheel folder), else from PyTorch's index.
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
PIP_INSTALL = $(PY) -m pip install --progress-bar off
$(STAMP): $(LOCK_ALL) pyproject.toml | soundfont
	@echo "installing $(LOCK_ALL) and the project into $(VENV) (output: $(LOGS)/pip.log)"
	@$(QUIETLY) quietly pip python3 -m venv $(VENV) && \
	  quietly pip $(PIP_INSTALL) --upgrade pip && \
	  torch=$$(grep -o '^torch==[^ ]*' $(LOCK_ALL)) && \
	  { $(PIP_INSTALL) --no-deps "$$torch" >>"$(LOGS)/pip.log" 2>&1 || \
	    quietly pip $(PIP_INSTALL) --no-deps --index-url $(TORCH_CPU_INDEX) "$$torch"; } && \
	  quietly pip $(PIP_INSTALL) -r $(LOCK_ALL) && \
	  quietly pip $(PIP_INSTALL) --no-deps -e . && \
	  quietly pip $(PY) -m pip check
	@touch $(STAMP)

install: $(STAMP)

# Both locks again from pyproject.toml, for CPython 3.11 on x86-64 Linux (this machine, the
# image): after a change to the dependencies or the extras (LOCK_ALL holds every extra), or
# with LOCK_FLAGS=--upgrade to take the newest releases pyproject allows (otherwise the pins
# already in the locks stay where they can). LOCK takes LOCK_ALL's versions. torch resolves
# to the CPU build in pip's wheel folder here (PIP_FIND_LINKS); the image takes that build
# from PyTorch's CPU index.
UV := $(VENV)/uv/bin/uv
LOCK_FLAGS ?=
COMPILE = $(UV) pip compile pyproject.toml --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 $(addprefix --find-links ,$(PIP_FIND_LINKS)) \
  --custom-compile-command 'make lock' --annotation-style line $(LOCK_FLAGS)
lock:
	@$(QUIETLY) [ -x $(UV) ] || quietly lock python3 -m pip install --target $(VENV)/uv uv
	@$(QUIETLY) quietly lock $(COMPILE) --all-extras -o $(LOCK_ALL) && \
	  quietly lock $(COMPILE) --constraint $(LOCK_ALL) -o $(LOCK)
	@echo "wrote $(LOCK_ALL) and $(LOCK) (output: $(LOGS)/lock.log)"

demo: $(STAMP) soundfont
	$(VENV)/bin/coldstart demo

# The teacher's weights (musicnn trained on the Million Song Dataset): PyPI's musicnn 0.1.0
# wheel, sha256-checked, converted to PyTorch into ~/.cache/coldstart (or $COLDSTART_CACHE).
teacher: $(STAMP)
	$(VENV)/bin/coldstart teacher fetch

# `$(APT) package...`: Debian's packages, installed as root or through sudo (the targets below
# call it only for what is missing), their output in $(LOGS)/apt.log.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT = $(QUIETLY) apt_install() { echo "installing Debian's $$* (output: $(LOGS)/apt.log)"; \
  quietly apt $(SUDO) apt-get update && quietly apt $(SUDO) env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "$$@"; }; apt_install

# Headless Chromium + its driver for the web page's test (tests/service/test_page.py).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(APT) chromium chromium-driver)

# Debian's docker-compose, for `docker-compose config` on docker-compose.yml
# (tests/test_deployment.py; no Docker engine is needed), installed once when missing.
compose:
	@command -v docker-compose >/dev/null || ($(APT) docker-compose)

# The `world` extra's sampled instruments: Debian's General MIDI SoundFont (FluidR3_GM,
# MIT) and the PortAudio headers that tinysoundfont's pyaudio builds against, with a C
# compiler and Python's headers; installed once when missing.
soundfont:
	@[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] && [ -f /usr/include/portaudio.h ] && \
	  command -v gcc >/dev/null && python3 -c 'import sysconfig, os, sys; \
	  sys.exit(not os.path.isfile(sysconfig.get_paths()["include"] + "/Python.h"))' || \
	  ($(APT) fluid-soundfont-gm portaudio19-dev gcc python3-dev)

# Debian's Docker engine and debootstrap, for the deployment check (deploy/check/: it runs its
# own dockerd and makes its base images from Debian's archive), installed once when missing.
docker: compose
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null || \
	  ($(APT) docker.io debootstrap)

# The compose stack for real on a private Docker engine: build, retrain, hot swap, restart
# (README "Deployment"); its last line sums it up. Needs root for dockerd.
deploy-check: $(STAMP) docker
	$(SUDO) env PYTHONPATH=$(CURDIR) $(PY) -m deploy.check.deploy_check

# A Java runtime for the Spark tests (pyspark's local[2]), installed once when missing.
java:
	@command -v java >/dev/null || ($(APT) openjdk-17-jre-headless)

test: $(STAMP) browser compose java soundfont docker
	$(VENV)/bin/python -m pytest

# Ruff (lint and format), mypy ([tool.mypy]) and the import contracts ([tool.importlinter]:
# the layered walk of docs/ARCHITECTURE.md; the service imports neither Lightning nor implicit).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PYTHONPATH=. $(VENV)/bin/lint-imports
