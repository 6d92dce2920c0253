# syntax=docker/dockerfile:1
# The image the Helm chart (deploy/helm/dsr-orchestrator) runs: `dsr` as a non-root user,
# fit for a read-only root filesystem (only /tmp and the data volume are written).
#
#   docker build -t dsr-orchestrator:0.1.0 .
#   docker run --rm dsr-orchestrator:0.1.0 --help
#
# The base image is pinned by tag; pin it by digest too in your registry
# (python:3.11.13-slim-bookworm@sha256:...) and let a bot bump both.

# -- build: every dependency from the hash-checked lock, then our wheel without resolving -------
# The virtual environment gets no pip or setuptools of its own: the build stage's pip installs
# into it (`--python`), so the image carries only what the lock names and our package.
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv --without-pip /opt/dsr \
 && python -m pip --python /opt/dsr/bin/python install --require-hashes --no-deps \
    -r requirements.lock
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY orchestrator ./orchestrator
COPY connectors ./connectors
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip --python /opt/dsr/bin/python install --no-deps --no-index /wheels/*.whl \
 && python -m pip --python /opt/dsr/bin/python check \
 && /opt/dsr/bin/dsr --version

# -- run: the virtual environment only; no compiler, no pip cache, no sources --------------------
FROM python:3.11.13-slim-bookworm
LABEL org.opencontainers.image.title="dsr-orchestrator" \
      org.opencontainers.image.description="GDPR data-subject-request orchestrator over Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 dsr \
 && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
    --shell /usr/sbin/nologin dsr
COPY --from=build /opt/dsr /opt/dsr
ENV PATH=/opt/dsr/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["dsr"]
CMD ["--help"]
