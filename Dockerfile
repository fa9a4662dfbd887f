# The coldstart image: one image for the API (uvicorn), the scheduler and one-off commands
# (`coldstart import`, `coldstart pipeline`); docker-compose.yml runs it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_WAIT_POLICY=PASSIVE

# OpenMP runtime of implicit and faiss; the synthetic world's General MIDI SoundFont
# (`coldstart world`), and PortAudio with a C compiler for tinysoundfont's pyaudio build
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 fluid-soundfont-gm \
       portaudio19-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# CPU-only torch first, from PyTorch's own index: PyPI's default wheels carry CUDA
# (gigabytes this image never uses). The pins equal pyproject.toml's (tests/test_deployment.py).
RUN pip install --index-url https://download.pytorch.org/whl/cpu \
    torch==2.11.0 torchaudio==2.11.0

COPY . /tmp/coldstart
RUN pip install /tmp/coldstart && rm -rf /tmp/coldstart

# Not root; /data (registry, audio store) belongs to the user, and a fresh named volume
# mounted there takes that ownership.
RUN useradd --create-home --uid 10001 coldstart \
    && mkdir -p /data \
    && chown coldstart:coldstart /data
USER coldstart
WORKDIR /data

ENTRYPOINT ["coldstart"]
CMD ["--help"]
