# syntax=docker/dockerfile:1.7
# Clipline's HTTP API (`clipline api`). Build from the repository root:
#   docker build -f docker/api.Dockerfile -t clipline-api:dev .
# docker/api.Dockerfile.dockerignore (BuildKit) keeps the context to what the wheel needs.
ARG PYTHON_VERSION=3.11.13
ARG DEBIAN_RELEASE=bookworm

# -- builder: the clipline wheel and every dependency as wheels, versions from constraints.txt --
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder
ARG PIP_VERSION=25.2
ARG SETUPTOOLS_VERSION=80.9.0
ARG WHEEL_VERSION=0.45.1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m pip install --no-cache-dir "pip==${PIP_VERSION}" \
        "setuptools==${SETUPTOOLS_VERSION}" "wheel==${WHEEL_VERSION}"
COPY docker/constraints.txt /src/docker/constraints.txt
COPY pyproject.toml README.md /src/
COPY clipline /src/clipline
COPY pipeline /src/pipeline
COPY workers /src/workers
COPY training /src/training
COPY migrations /src/migrations
RUN python -m pip wheel --no-cache-dir --no-build-isolation --wheel-dir /wheels \
        --constraint docker/constraints.txt ./

# -- runtime: the wheels installed into a virtual environment, no compiler, no pip cache --------
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
ARG CLIPLINE_VERSION=0.1.0
ARG APP_UID=10001
LABEL org.opencontainers.image.title="clipline-api" \
      org.opencontainers.image.description="Clipline's submit-and-poll HTTP API" \
      org.opencontainers.image.version="${CLIPLINE_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/clipline \
    PATH=/opt/clipline/bin:$PATH \
    CLIPLINE_LOG_FORMAT=json \
    CLIPLINE_DATA_DIR=/var/lib/clipline \
    CLIPLINE_API_HOST=0.0.0.0 \
    CLIPLINE_API_PORT=8080
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/clipline \
    && /opt/clipline/bin/pip install --no-cache-dir --no-index --find-links=/wheels \
        /wheels/clipline-*.whl \
    && groupadd --system --gid "${APP_UID}" clipline \
    && useradd --system --uid "${APP_UID}" --gid clipline --no-create-home \
        --home-dir /var/lib/clipline --shell /usr/sbin/nologin clipline \
    && install -d -o clipline -g clipline -m 0750 /var/lib/clipline
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/clipline-healthcheck
USER ${APP_UID}:${APP_UID}
WORKDIR /var/lib/clipline
EXPOSE 8080
# /healthz answers while the process is up; /readyz (database and broker) is for a readiness probe.
HEALTHCHECK --interval=15s --timeout=10s --start-period=20s --retries=3 \
    CMD ["python", "/usr/local/bin/clipline-healthcheck", "api"]
ENTRYPOINT ["clipline"]
CMD ["api"]
