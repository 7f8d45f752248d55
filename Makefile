# Two commands set everything up on a fresh machine:
#   make demo   - the main job: a memory server and a short Omniglot training run against it
#   make test   - the test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
# The data sets (omniglot/, translation/) for the trainers and the tests; results go to ./results.
export RAREMEM_DATA ?= $(abspath ../shared/data)

.PHONY: setup demo test bench proto docker-test browser-test gpu-check gpu-bundle
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: on these machines 2.13.0 is a local CPU wheel, a bare
	# "torch" would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# 9 minutes of Omniglot training through a spawned server; a line per validation, then the
# memory's stats. Measured: results/omniglot.md ("make demo").
demo: setup
	$(PY) -m raremem.models.omniglot.train --minutes 9 --steps 100000 --eval-every 50 --out runs/demo --overwrite

# The Docker and browser tests have targets of their own (they install engines as root); CI
# (.ci/run) runs all three.
test: setup
	$(PY) -m pytest -q -m "not docker and not browser"

bench: setup
	$(PY) -m bench.lookup
	$(PY) -m bench.recall

# One prepared check on one NVIDIA GPU (bench/gpu_check.py, under 8 minutes): results/gpu.{json,md}.
# ARGS=--cpu runs the same plumbing at small sizes on the CPU (the suite does too). On a GPU
# machine without network: `make gpu-bundle` here (wheels for Python 3.12 and the Omniglot
# zips into .gpu-bundle/), take .gpu-bundle along, and there `make gpu-check PY=python3`.
gpu-check:
	if [ -d .gpu-bundle ]; then $(PY) -m pip install -q --no-deps --no-index .gpu-bundle/wheels/*.whl \
	  && $(PY) -m pip install -q --no-deps --no-build-isolation -e .; fi
	RAREMEM_DATA=$$([ -d .gpu-bundle/data ] && echo $(CURDIR)/.gpu-bundle/data || echo $(RAREMEM_DATA)) \
	  $(PY) -m bench.gpu_check $(ARGS)

gpu-bundle: setup
	sh bench/gpu_bundle.sh .gpu-bundle

proto: setup
	$(PY) -m raremem.proto.generate

# The Docker deployment test (tests/docker): on a Debian host as root, installs the engine,
# compose v1 and debootstrap if missing, starts dockerd if none runs, then builds and runs.
docker-test: setup
	command -v dockerd >/dev/null && command -v docker-compose >/dev/null && command -v debootstrap >/dev/null \
	  || (apt-get update -q && apt-get install -y -q docker.io docker-compose debootstrap)
	docker info >/dev/null 2>&1 || { nohup dockerd >/tmp/dockerd.log 2>&1 & \
	  for i in $$(seq 30); do docker info >/dev/null 2>&1 && break; sleep 1; done; }
	RAREMEM_NO_SKIP=1 $(PY) -m pytest -q -m docker tests/docker

# The memory page in a real browser (tests/client/test_browser.py): installs Debian's chromium
# and chromedriver if missing, then runs the browser-marked tests.
browser-test: setup
	command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || (apt-get update -q && apt-get install -y -q chromium chromium-driver)
	RAREMEM_NO_SKIP=1 $(PY) -m pytest -q -m browser tests/client
