# syntax=docker/dockerfile:1
# Lookout on an NVIDIA Jetson with JetPack 6 (Jetson Orin Nano, Orin NX, AGX Orin): TensorRT
# through ONNX Runtime, config-jetson-nano.ini.  docs/docker.md explains the stages, volumes,
# health check and build arguments.  Run with --runtime nvidia.
#
# The original Jetson Nano cannot run it: its last JetPack (4.6, L4T 32) has Python 3.6 and
# CUDA 10.2, and Lookout needs Python 3.11.  The base is NVIDIA's L4T JetPack image r36.4.0
# (JetPack 6.1: CUDA 12.6, cuDNN 9, TensorRT 10, Ubuntu 22.04); Python 3.11 comes from the
# deadsnakes archive, and onnxruntime-gpu from NVIDIA's Jetson index (ONNXRUNTIME_INDEX_URL),
# never from the default index, whose aarch64 wheels are not built for Jetson.  That index has
# versions of its own: LOOKOUT_ONNXRUNTIME_GPU_VERSION picks one when it lacks pyproject's pin.
#
#   docker build -f jetson-nano.Dockerfile -t lookout:jetson-nano --build-arg LOOKOUT_MODELS_URL=... .

# The dashboard's files (plain JavaScript and CSS: the same on every architecture).
FROM node:22.22.0-bookworm-slim AS dashboard
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY dashboard/ ./
RUN npm run --silent build

# The virtual environment, made by the install script CI runs (tests/test_install_script.py).
FROM nvcr.io/nvidia/l4t-jetpack:r36.4.0 AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian keeps one version of a package per point release: pinning it would break the build
# at the next one; the base image is pinned by its exact tag.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent curl ca-certificates \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
ARG ONNXRUNTIME_INDEX_URL=https://pypi.jetson-ai-lab.io/jp6/cu126
ARG LOOKOUT_ONNXRUNTIME_GPU_VERSION=""
RUN --mount=type=cache,target=/root/.cache/pip \
    PYTHON=python3.11 PIP_INDEX_URL="$ONNXRUNTIME_INDEX_URL" \
    scripts/install.sh jetson-nano --venv /opt/venv
# Models now when a mirror is given, else at first start (LOOKOUT_MODELS_URL at run time).
ARG LOOKOUT_MODELS_URL=""
RUN mkdir -p /opt/models \
    && if [ -n "$LOOKOUT_MODELS_URL" ]; then ./download_models.sh /opt/models; fi

FROM nvcr.io/nvidia/l4t-jetpack:r36.4.0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent curl ca-certificates \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && apt-get purge -y --auto-remove software-properties-common gpg-agent \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 lookout \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/lookout lookout \
    && mkdir -p /data /config /assets \
    && chown lookout:lookout /data /config /assets
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY --from=dashboard /src/dashboard/dist /app/dashboard/dist
COPY --from=build --chown=lookout:lookout /opt/models /assets/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LOOKOUT_DEVICE=jetson-nano \
    LOOKOUT_CONFIG=/config/config-jetson-nano.ini \
    LOOKOUT_DATA_DIR=/data \
    LOOKOUT_ASSETS_DIR=/assets
VOLUME ["/data", "/config"]
USER 10001:10001
WORKDIR /app
EXPOSE 8000
# lookout healthcheck reads $LOOKOUT_CONFIG: GET /health over HTTPS when [API] SSLEnabled.
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 \
    CMD ["/opt/venv/bin/lookout", "healthcheck"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["run", "--no-progress"]
