# raremem-server, CPU (numpy + faiss-cpu + gRPC; no torch).
#   docker build -f docker/server.Dockerfile -t raremem/server .        (from the repository root)
# BASE: any Debian bookworm with python3 and venv. PIP_ARGS: extra pip options, e.g.
# "--no-index --find-links /wheels" to install only from docker/wheels/ (an offline build).
# Two stages: the wheelhouse stays in the build stage, only the virtual environment ships.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS build
ARG PIP_ARGS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/raremem/bin:$PATH
WORKDIR /src
COPY docker/wheels/ /wheels/
COPY pyproject.toml README.md ./
COPY proto proto
COPY server server
COPY client client
COPY models models
RUN python3 -m venv /opt/raremem && pip install $PIP_ARGS '.[cpu]'

FROM ${BASE}
ARG COMMIT=unknown
ENV PYTHONUNBUFFERED=1 PATH=/opt/raremem/bin:$PATH RAREMEM_COMMIT=${COMMIT}
COPY --from=build /opt/raremem /opt/raremem
RUN useradd --system --create-home raremem && mkdir -p /data && chown raremem /data
USER raremem
VOLUME /data
EXPOSE 50051 9464
HEALTHCHECK --interval=5s --timeout=5s --start-period=10s --retries=12 \
  CMD ["raremem-admin", "--server", "127.0.0.1:50051", "--timeout", "3", "health"]
# Configuration by environment: RAREMEM_TOKEN, RAREMEM_ADMIN_TOKEN, RAREMEM_SNAPSHOT_INTERVAL,
# RAREMEM_LOG_FORMAT, RAREMEM_LOG_LEVEL (see raremem-server --help).
ENTRYPOINT ["raremem-server", "--host", "0.0.0.0", "--port", "50051", "--data-dir", "/data"]
