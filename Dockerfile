# mmrepro on NVIDIA GPUs (see README "Docker"):
#   docker build -t mmrepro .
#   docker run --gpus all --rm -v "$PWD":/workspace mmrepro                 # dvc repro, profile from params.yaml
#   docker run --gpus all --rm -v "$PWD":/workspace mmrepro dvc exp run -S profile=full
# BASE: the CUDA runtime image whose major.minor is the one torch in requirements.lock is built for (13.0);
# tests/test_dockerfile.py keeps the two, and the system package list, consistent. The package list
# installs on that Ubuntu 22.04 base and on Debian 12, the stand-in base of the image test
# (scripts/image_test.py, `make image-test`), which builds and runs this file for real.
ARG BASE=nvidia/cuda:13.0.1-runtime-ubuntu22.04
FROM ${BASE}

ARG DEBIAN_FRONTEND=noninteractive
# The same system packages as scripts/system_deps.sh: Java (PTB tokenizer, METEOR), speech synthesis,
# real test recordings, SVG rasteriser and drawings. The distribution's own versions, updated within the release.
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

# Where pip finds the wheels, for a build machine behind a mirror or a proxy (index URLs, local wheel
# directories mounted at build time, a CA bundle). Unset unless passed with --build-arg; build args
# live only while these RUN steps do, so no machine's settings end up in the image.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT

# Exactly the versions CI tests (requirements.lock), installed before the code, so that a code change
# rebuilds only the small layers below (the venv layer, several GB with CUDA torch, is reused).
COPY requirements.lock /tmp/requirements.lock
RUN python3.11 -m venv /opt/venv \
    && pip install --no-cache-dir pip==26.3 \
    && pip install --no-cache-dir -r /tmp/requirements.lock
# pycocoevalcap's PTB tokenizer writes its temp files beside its jar, inside site-packages: let the
# image's user write there (the image test found evaluate failing with PermissionError as uid 1000).
RUN chown -R 1000:1000 /opt/venv/lib/python3.11/site-packages/pycocoevalcap/tokenizer

WORKDIR /workspace
COPY --chown=mmrepro:mmrepro . /workspace
RUN pip install --no-cache-dir --no-deps -e /workspace

USER 1000:1000
CMD ["dvc", "repro"]
