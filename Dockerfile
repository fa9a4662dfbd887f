# The coldstart image: one image for the API (uvicorn), the scheduler and one-off commands
# (`coldstart import`, `coldstart pipeline`); docker-compose.yml runs it.
# The build arguments exist for `make deploy-check` (deploy/check/), which builds this file
# where neither Docker Hub nor PyTorch's index can be reached; their defaults are what
# everyone else builds.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# CPU-only torch from PyTorch's own index: PyPI's default wheels carry CUDA (gigabytes this
# image never uses). The version equals pyproject.toml's pin (tests/test_deployment.py).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_WAIT_POLICY=PASSIVE
WORKDIR /data
ENTRYPOINT ["coldstart"]
CMD ["--help"]

# One layer for everything installed: on a storage driver without shared layers (vfs) each
# step copies the whole file system (hence also the settings above, before it). uv installs
# (fast) torch from TORCH_INDEX, then requirements.lock, every package at the version `make`
# installs (`make lock` writes it; the override keeps the torch installed first: the lock
# names its CPU build, TORCH_INDEX may hold another), then the project without dependencies;
# it compiles the bytecode as pip would: without it every container start compiles torch's
# modules again (minutes on a busy machine). libgomp1: OpenMP of
# implicit and faiss; nothing else, no compiler: the lock holds the base dependencies only,
# without the `world` extra (the synthetic world's sampled instruments, whose pyaudio builds
# against PortAudio; `coldstart world --instruments synth` runs without it). The user: not
# root; /data (registry, audio store) belongs to it, and a fresh named volume mounted there
# takes that ownership.
COPY . /tmp/coldstart
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --target /tmp/uv uv \
    && /tmp/uv/bin/uv pip install --system --index "$TORCH_INDEX" \
        --default-index https://pypi.org/simple \
        "torch==$TORCH_VERSION" \
    && echo "torch==$TORCH_VERSION" > /tmp/uv/torch.txt \
    && /tmp/uv/bin/uv pip install --system --override /tmp/uv/torch.txt \
        -r /tmp/coldstart/requirements.lock \
    && /tmp/uv/bin/uv pip install --system --no-deps /tmp/coldstart \
    && rm -rf /tmp/uv /tmp/coldstart \
    && useradd --create-home --uid 10001 coldstart \
    && chown coldstart:coldstart /data
USER coldstart
