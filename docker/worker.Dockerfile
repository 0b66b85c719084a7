# syntax=docker/dockerfile:1.7
# Clipline's worker image: `clipline worker` by default; the same image runs the reconciler
# (`clipline reconcile`), the S3-events consumer (`clipline events`) and the migrations
# (`clipline db upgrade`) with another command. Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t clipline-worker:dev .
# docker/worker.Dockerfile.dockerignore (BuildKit) keeps the context to what the wheel needs.
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
LABEL org.opencontainers.image.title="clipline-worker" \
      org.opencontainers.image.description="Clipline's Celery worker, reconciler and events consumer" \
      org.opencontainers.image.version="${CLIPLINE_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/clipline \
    PATH=/opt/clipline/bin:$PATH \
    CLIPLINE_LOG_FORMAT=json \
    CLIPLINE_DATA_DIR=/var/lib/clipline
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
# Prometheus: a worker's pool metrics (CLIPLINE_WORKER_METRICS_PORT), the reconciler's
# (CLIPLINE_RECONCILE_METRICS_PORT).
EXPOSE 9100 9101
# A Celery ping, through Redis, that only this container's worker can answer (see the script).
# For `clipline reconcile` override it with `clipline-healthcheck http http://127.0.0.1:9101/metrics`.
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/clipline-healthcheck", "celery"]
ENTRYPOINT ["clipline"]
CMD ["worker"]
