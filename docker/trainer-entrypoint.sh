#!/bin/sh
# One trainer container = one independent trainer (scale the service for more); inside it,
# TRAINER_REPLICAS Hogwild processes share parameters. Its memories are named after the
# container's hostname, so scaled containers never clear each other's episodes.
#   RAREMEM_ADDRESS   memory server HOST:PORT              [server:50051]
#   RAREMEM_TOKEN     bearer token (must open Reset)       []
#   TRAINER           models.<TRAINER>.train               [omniglot]
#   TRAINER_REPLICAS  Hogwild processes in this container  [1]
#   TRAINER_ARGS      more trainer flags                   []
set -eu
id="$(hostname)"
set -- --memory "${RAREMEM_ADDRESS:-server:50051}" --out "/runs/$id" --replica-id "$id" ${TRAINER_ARGS:-} "$@"
[ -n "${RAREMEM_TOKEN:-}" ] && set -- --token "$RAREMEM_TOKEN" "$@"
[ "${TRAINER_REPLICAS:-1}" -gt 1 ] && set -- --hogwild "$TRAINER_REPLICAS" "$@"
exec python -m "raremem.models.${TRAINER:-omniglot}.train" "$@"
