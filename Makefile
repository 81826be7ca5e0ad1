# rqp: the commands a user and CI run. Everything installs from this repository's own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
ENGINE ?= docker
# the test suite runs in this many processes (pytest-xdist): its tests mostly wait on real servers
TEST_PROCESSES ?= 3
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: help venv install dev demo test test-dir test-fast fuzz lint images test-images wheels bench soak scale clean audit push test-vms check-deploy chaos

help:
	@echo "make demo         encrypted 10,000-record workload end to end on this machine"
	@echo "make test         the whole test suite against real servers"
	@echo "make lint         ruff (check, format) and mypy on the five packages"
	@echo "make fuzz         the readers' and result encoder's property tests, 20,000 examples each (CI runs 200)"
	@echo "make images       container images per role (ENGINE=docker|podman)"
	@echo "make test-images  the all-in-one Compose stack, scaled, with a real workload"
	@echo "make push         tag and push the role images and Redis's: make push REGISTRY=host:port/prefix"
	@echo "make test-vms     scheduler and processor VMs as separate hosts, pulling from a registry, with faults"
	@echo "make check-deploy cloud-init schema and checkov on compose/cloud-init and compose/azure"
	@echo "make bench        rqp against RQ, Celery, Dramatiq, Huey and a batched loop"
	@echo "make soak         100,000 records with a worker killed mid-chunk every second"
	@echo "make scale        10,000,000 records through one Redis: Redis CPU, memory and AOF per record, RSS"
	@echo "make chaos        the Redis-writer fuzzer: 5,000 mutations of the trust table's keys, how each run ended"

$(VENV)/.installed: shared/pyproject.toml scheduler/pyproject.toml processor/pyproject.toml metrics-logger/pyproject.toml console/pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "rqp needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=78"
	$(PIP) install -q -e 'shared[azure,embedded-redis]' -e scheduler -e processor -e metrics-logger -e console
	touch $@

venv install: $(VENV)/.installed

$(VENV)/.dev: $(VENV)/.installed requirements-dev.txt console/requirements-test.txt
	$(PIP) install -q -r requirements-dev.txt -r console/requirements-test.txt
	touch $@

dev: $(VENV)/.dev

demo: install
	$(PY) examples/demo.py

.tools/.azurite:
	bash tools/install-azurite.sh
	touch $@

.tools/.redis-tls: tools/install-test-redis.sh
	bash tools/install-test-redis.sh
	mkdir -p .tools && touch $@

# the console's browser tests: Debian's headless chromium and chromium-driver (apt, via sudo when
# not root; nothing when both are on PATH)
.tools/.chromium:
	bash tools/install-chromium.sh
	mkdir -p .tools && touch $@

# first: a clone the sandbox's uid (65534) cannot search fails here in one line, not in its tests
test-dir:
	$(PYTHON) tools/check_test_dir.py

test: test-dir dev .tools/.azurite .tools/.redis-tls .tools/.chromium
	$(PY) -m pytest tests -q -p no:cacheprovider -n $(TEST_PROCESSES)

lint: dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy -p rqp -p rqp_scheduler -p rqp_processor -p rqp_metrics -p rqp_console

# the property tests of tests/shared/test_parsing_properties.py, for longer: HYPOTHESIS_PROFILE picks the profile
fuzz: dev
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/shared/test_parsing_properties.py -q -p no:cacheprovider --hypothesis-show-statistics

test-fast: test-dir dev .tools/.redis-tls .tools/.chromium
	$(PY) -m pytest tests -q -x -p no:cacheprovider --ignore=tests/shared/azure

# fails on a known vulnerability; what could not be audited (network trouble) is listed, not failed
audit: install
	bash tools/audit.sh --strict

# container images (docker/Dockerfile, one target per role) and the Compose test
WHEEL_PYTHON ?= /usr/bin/python3
RQP_SOURCES := $(wildcard shared/pyproject.toml scheduler/pyproject.toml processor/pyproject.toml metrics-logger/pyproject.toml console/pyproject.toml) \
	$(shell find shared/src scheduler/src processor/src metrics-logger/src console/src -type f -not -path '*/.mypy_cache/*' \
		\( -name '*.py' -o -name '*.lua' -o -name '*.html' -o -name '*.js' -o -name '*.css' -o -name '*.svg' \) 2>/dev/null)

wheels/requirements.lock: $(RQP_SOURCES) tools/build-wheels.sh
	PYTHON=$(WHEEL_PYTHON) bash tools/build-wheels.sh

wheels: wheels/requirements.lock

images: wheels
	ENGINE=$(ENGINE) bash docker/build-images.sh

test-images: wheels
	ENGINE=$(ENGINE) bash tools/test-images.sh

# every role image, version and latest, and the Redis image (REDIS_IMAGE, default redis:7;
# PUSH_REDIS=0 skips it) to REGISTRY (host[:port][/prefix]); compose/.env then pulls them with
# RQP_IMAGE_PREFIX=REGISTRY/, RQP_VERSION and REDIS_IMAGE=REGISTRY/redis:7. A registry without
# TLS must be allowed in the engine (docker: insecure-registries; podman: registries.conf)
REGISTRY ?=
REDIS_IMAGE ?= redis:7
PUSH_REDIS ?= 1
push:
	REGISTRY=$(REGISTRY) ENGINE=$(ENGINE) REDIS_IMAGE=$(REDIS_IMAGE) PUSH_REDIS=$(PUSH_REDIS) bash docker/push-images.sh

# one network namespace and container engine per VM, a local registry, Azurite, faults mid-run
test-vms: wheels
	bash tools/test-vms.sh
	RQP_TEST_SKIP_BUILD=1 bash tools/test-vms-ha.sh

check-deploy:
	bash tools/check-deploy.sh

clean:
	rm -rf $(VENV) .tools .demo build dist wheels

soak: dev
	$(PY) tools/soak.py

# SCALE_ARGS="--records 1000000" for a shorter run
SCALE_ARGS ?=

scale: dev
	$(PY) tools/scale.py $(SCALE_ARGS)

# the Redis-writer fuzzer (tools/chaos.py): CHAOS_ARGS="--mutations 400" for a shorter run,
# "--family control --seed 4 --mutations 4 -v" to replay one run
CHAOS_ARGS ?=

chaos: dev
	$(PY) tools/chaos.py $(CHAOS_ARGS)

# the benchmark against RQ, Celery, Dramatiq, Huey and a batched Redis loop, in its own venv
# (.bench-venv); options through BENCH_ARGS, e.g. BENCH_ARGS="--quick" or "--only rqp,dramatiq"
BENCH_ARGS ?=

bench:
	PYTHON=$(PYTHON) bash tools/bench.sh $(BENCH_ARGS)
