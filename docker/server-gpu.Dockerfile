# raremem-server on an NVIDIA GPU: faiss-gpu (CUDA 12) for exact and IVF search.
#   docker build -f docker/server-gpu.Dockerfile -t raremem/server-gpu .
#   docker run --gpus all -p 50051:50051 -v raremem-data:/data raremem/server-gpu
# The CUDA runtime comes from the base image; faiss-gpu-cu12 brings its own CUDA libraries.
ARG BASE=nvidia/cuda:12.4.1-runtime-ubuntu22.04
FROM ${BASE}
ARG PIP_ARGS=""
ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/raremem/bin:$PATH \
    DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY docker/wheels/ /wheels/
COPY pyproject.toml README.md ./
COPY proto proto
COPY server server
COPY client client
COPY models models
RUN python3 -m venv /opt/raremem \
 && pip install $PIP_ARGS '.[gpu]' \
 && useradd --system --create-home raremem \
 && mkdir -p /data && chown raremem /data
USER raremem
VOLUME /data
EXPOSE 50051 9464
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=12 \
  CMD ["raremem-admin", "--memory", "127.0.0.1:50051", "--timeout", "3", "health"]
ENTRYPOINT ["raremem-server", "--host", "0.0.0.0", "--port", "50051", "--data-dir", "/data"]
