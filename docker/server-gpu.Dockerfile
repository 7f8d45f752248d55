# raremem-server on an NVIDIA GPU: exact memories keep their keys on the device and search with
# FAISS's GPU brute force (faiss-gpu-cu12 over torch's device tensors; server/indexes.py).
#   docker build -f docker/server-gpu.Dockerfile -t raremem/server-gpu .   (from the repository root)
#   docker run --gpus all -p 127.0.0.1:50051:50051 -v raremem-data:/data raremem/server-gpu
# The CUDA libraries come as pip wheels with faiss-gpu-cu12 and torch's CUDA build, so BASE is
# the same Debian bookworm + python3 as the CPU image; the host needs the NVIDIA driver and the
# NVIDIA container toolkit. TORCH_INDEX: the CUDA build of torch that matches faiss-gpu-cu12's
# CUDA 12 (PyPI's own torch 2.13.0 is a CUDA 13 build; results/docker.md has the image built
# from it). PIP_ARGS as in server.Dockerfile (a wheelhouse of the CUDA wheels is 3.3 GB).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS build
ARG PIP_ARGS=""
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/raremem/bin:$PATH
WORKDIR /src
COPY docker/wheels/ /wheels/
COPY pyproject.toml README.md ./
COPY proto proto
COPY server server
COPY client client
COPY models models
RUN python3 -m venv /opt/raremem \
 && pip install $PIP_ARGS --extra-index-url "$TORCH_INDEX" torch==2.13.0 \
 && pip install $PIP_ARGS '.[gpu]'

FROM ${BASE}
ARG COMMIT=unknown
# RAREMEM_DEVICE: where memories created without a device go (raremem-server --device)
ENV PYTHONUNBUFFERED=1 PATH=/opt/raremem/bin:$PATH RAREMEM_COMMIT=${COMMIT} RAREMEM_DEVICE=cuda
COPY --from=build /opt/raremem /opt/raremem
RUN useradd --system --create-home raremem && mkdir -p /data && chown raremem /data
USER raremem
VOLUME /data
EXPOSE 50051 9464
HEALTHCHECK --interval=5s --timeout=5s --start-period=20s --retries=12 \
  CMD ["raremem-admin", "--server", "127.0.0.1:50051", "--timeout", "3", "health"]
ENTRYPOINT ["raremem-server", "--host", "0.0.0.0", "--port", "50051", "--data-dir", "/data"]
