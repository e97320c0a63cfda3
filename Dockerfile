# mmrepro on NVIDIA GPUs (see README "Docker"):
#   docker build -t mmrepro .
#   docker run --gpus all --rm -v "$PWD":/workspace mmrepro                 # dvc repro, profile from params.yaml
#   docker run --gpus all --rm -v "$PWD":/workspace mmrepro dvc exp run -S profile=full
# The base image's CUDA major.minor is the one torch in requirements.lock is built for (13.0);
# tests/test_dockerfile.py keeps the two, and the system package list, consistent.
FROM nvidia/cuda:13.0.1-runtime-ubuntu22.04

ARG DEBIAN_FRONTEND=noninteractive
# The same system packages as scripts/system_deps.sh: Java (PTB tokenizer, METEOR), speech synthesis,
# real test recordings, SVG rasteriser and drawings. Ubuntu's own versions, updated within the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.11 python3.11-venv git make \
        default-jre-headless espeak-ng flite pocketsphinx-testdata librsvg2-bin openclipart-svg \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory /workspace \
    && useradd --create-home --uid 1000 mmrepro

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

# Exactly the versions CI tests (requirements.lock), installed before the code for layer caching.
COPY requirements.lock /tmp/requirements.lock
RUN python3.11 -m venv /opt/venv \
    && pip install --no-cache-dir pip==26.3 \
    && pip install --no-cache-dir -r /tmp/requirements.lock

WORKDIR /workspace
COPY --chown=mmrepro:mmrepro . /workspace
RUN pip install --no-cache-dir --no-deps -e /workspace

USER 1000:1000
CMD ["dvc", "repro"]
