# The two entry points of the README: `make demo` and `make test`. Both set themselves up.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS ?= 1
# torch threads spin-wait by default, which starves the other core on a busy 2-core machine
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test install lint browser compose java soundfont docker deploy-check teacher

$(STAMP): pyproject.toml | soundfont
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) soundfont
	$(VENV)/bin/coldstart demo

# The teacher's weights (musicnn trained on the Million Song Dataset): PyPI's musicnn 0.1.0
# wheel, sha256-checked, converted to PyTorch into ~/.cache/coldstart (or $COLDSTART_CACHE).
teacher: $(STAMP)
	$(VENV)/bin/coldstart teacher fetch

# Headless Chromium + its driver for the web page's test (tests/service/test_page.py):
# Debian's packages, installed once when missing (as root, or through sudo).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && \
	   $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver)

# Debian's docker-compose, for `docker-compose config` on docker-compose.yml
# (tests/test_deployment.py; no Docker engine is needed), installed once when missing.
compose:
	@command -v docker-compose >/dev/null || \
	  ($(SUDO) apt-get update -qq && \
	   $(SUDO) apt-get install -y -qq --no-install-recommends docker-compose)

# The synthetic world's sampled instruments: Debian's General MIDI SoundFont (FluidR3_GM,
# MIT) and the PortAudio headers that tinysoundfont's pyaudio builds against, with a C
# compiler and Python's headers; installed once when missing.
soundfont:
	@[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] && [ -f /usr/include/portaudio.h ] && \
	  command -v gcc >/dev/null && python3 -c 'import sysconfig, os, sys; \
	  sys.exit(not os.path.isfile(sysconfig.get_paths()["include"] + "/Python.h"))' || \
	  ($(SUDO) apt-get update -qq && \
	   $(SUDO) apt-get install -y -qq --no-install-recommends \
	     fluid-soundfont-gm portaudio19-dev gcc python3-dev)

# Debian's Docker engine and debootstrap, for the deployment check (deploy/check/: it runs its
# own dockerd and makes its base images from Debian's archive), installed once when missing.
docker: compose
	@command -v dockerd >/dev/null && command -v debootstrap >/dev/null || \
	  ($(SUDO) apt-get update -qq && \
	   $(SUDO) apt-get install -y -qq --no-install-recommends docker.io debootstrap)

# The compose stack for real on a private Docker engine: build, retrain, hot swap, restart
# (README "Deployment"); its last line sums it up. Needs root for dockerd.
deploy-check: $(STAMP) docker
	$(SUDO) env PYTHONPATH=$(CURDIR) $(PY) -m deploy.check.deploy_check

# A Java runtime for the Spark tests (pyspark's local[2]), installed once when missing.
java:
	@command -v java >/dev/null || \
	  ($(SUDO) apt-get update -qq && \
	   $(SUDO) apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless)

test: $(STAMP) browser compose java soundfont docker
	$(VENV)/bin/python -m pytest

# Ruff (lint and format), mypy ([tool.mypy]) and the import contracts ([tool.importlinter]:
# the layered walk of docs/ARCHITECTURE.md; the service imports neither Lightning nor implicit).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	PYTHONPATH=. $(VENV)/bin/lint-imports
