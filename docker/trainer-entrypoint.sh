#!/bin/sh
# One trainer container = one independent trainer (scale the service for more); inside it,
# TRAINER_REPLICAS Hogwild processes share parameters. Its memories are named after the
# container's hostname, so scaled containers never clear each other's episodes.
#   RAREMEM_ADDRESS   memory server HOST:PORT              [server:50051]
#   RAREMEM_TOKEN     user bearer token (the first of a list)  []
#   RAREMEM_DATA      data sets, mounted read-only             [/shared/data]
#   TRAINER           raremem.models.<TRAINER>.train           [omniglot]
#   TRAINER_REPLICAS  Hogwild processes in this container      [1]
#   TRAINER_ARGS      more trainer flags                       []
# Where RAREMEM_DATA holds no Omniglot, the Omniglot trainer downloads it (md5/sha256-checked)
# into /datasets, a volume; a restarted container continues its run (--resume).
set -eu
id="$(hostname)"
trainer="${TRAINER:-omniglot}"
export RAREMEM_DATA="${RAREMEM_DATA:-/shared/data}"
set -- ${TRAINER_ARGS:-} "$@"
if [ "$trainer" = omniglot ] && [ ! -f "$RAREMEM_DATA/omniglot/images_background.zip" ]; then
  echo "no Omniglot in $RAREMEM_DATA (set RAREMEM_DATA on the host to a folder holding omniglot/): downloading into /datasets"
  export RAREMEM_DATA=/datasets
  set -- --download "$@"
fi
[ -f "/runs/$id/run.json" ] && set -- --resume "$@"
set -- --server "${RAREMEM_ADDRESS:-server:50051}" --out "/runs/$id" --replica-id "$id" "$@"
token="${RAREMEM_TOKEN%%,*}"
[ -n "$token" ] && set -- --token "$token" "$@"
[ "${TRAINER_REPLICAS:-1}" -gt 1 ] && set -- --hogwild "$TRAINER_REPLICAS" "$@"
exec python -m "raremem.models.$trainer.train" "$@"
