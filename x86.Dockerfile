# syntax=docker/dockerfile:1
# Lookout on a plain x86-64 CPU (ONNX Runtime): config-x86.ini.  docs/docker.md explains the
# stages, volumes, health check and build arguments.
#
#   docker build -f x86.Dockerfile -t lookout:x86 --build-arg LOOKOUT_MODELS_URL=... .

# The dashboard's files (plain JavaScript and CSS: the same on every architecture).
FROM node:22.22.0-bookworm-slim AS dashboard
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY dashboard/ ./
RUN npm run --silent build

# The virtual environment, made by the install script CI runs (tests/test_install_script.py).
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian keeps one version of a package per point release: pinning it would break the build
# at the next one; the base image is pinned by digest.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN --mount=type=cache,target=/root/.cache/pip scripts/install.sh x86 --venv /opt/venv
# Models now when a mirror is given, else at first start (LOOKOUT_MODELS_URL at run time).
ARG LOOKOUT_MODELS_URL=""
RUN mkdir -p /opt/models \
    && if [ -n "$LOOKOUT_MODELS_URL" ]; then ./download_models.sh /opt/models; fi

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl ca-certificates \
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
    LOOKOUT_DEVICE=x86 \
    LOOKOUT_CONFIG=/config/config-x86.ini \
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
