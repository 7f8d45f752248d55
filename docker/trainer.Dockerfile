# A raremem trainer: torch (CPU wheel by default) + the models, talking to a raremem-server.
#   docker build -f docker/trainer.Dockerfile -t raremem/trainer .
# TORCH_INDEX: where torch comes from (the CPU index keeps the image free of CUDA; pass
# https://download.pytorch.org/whl/cu124 for a GPU trainer). PIP_ARGS as in server.Dockerfile.
# The models run from /src (the editable install points there); the wheelhouse stays behind.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS build
ARG PIP_ARGS=""
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PATH=/opt/raremem/bin:$PATH
COPY docker/wheels/ /wheels/
RUN python3 -m venv /opt/raremem && pip install $PIP_ARGS --extra-index-url "$TORCH_INDEX" torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY server server
COPY client client
COPY models models
RUN pip install $PIP_ARGS '.[cpu,models,ui]'

FROM ${BASE}
ARG COMMIT=unknown
ENV PYTHONUNBUFFERED=1 PATH=/opt/raremem/bin:$PATH RAREMEM_COMMIT=${COMMIT} RAREMEM_DATA=/shared/data
COPY --from=build /opt/raremem /opt/raremem
WORKDIR /src
COPY --from=build /src /src
COPY docker/trainer-entrypoint.sh /usr/local/bin/raremem-trainer
VOLUME /runs
ENTRYPOINT ["raremem-trainer"]
