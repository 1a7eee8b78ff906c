# The few commands people type. Each installs what it needs first (Python virtual environment,
# npm packages), so `make synth` and `make test` work on a fresh clone.
ENV ?= example
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CDK := node_modules/.bin/cdk
CDK_FLAGS := --no-notices -c env=$(ENV)

# Offline and quiet: no telemetry, no notices, no Node end-of-life banner. CDK_VALIDATION=false
# turns off aws-cdk-lib's built-in "CloudFormation Validate" plugin only (cdk-nag still runs);
# cfn-lint checks every template in `make test` instead.
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_VALIDATION := false
export PATH := $(CURDIR)/$(BIN):$(PATH)
# Python writes its bytecode caches here even where the machine sets PYTHONDONTWRITEBYTECODE:
# otherwise every synth recompiles the app's modules and every test run recompiles (and
# pytest re-rewrites) some 140 test modules, about 3 s per test worker. No asset takes the
# caches along (scripts/build_zip.py and constructs/handler.py leave them out).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: help install build synth diagram diff deploy destroy test lint format clean portal

help:
	@echo "make synth   synthesize every stack of ENV=$(ENV) into cdk.out, with its nag packs,"
	@echo "             and write cdk.out/compliance-report.md"
	@echo "make diagram redraw README.md's architecture diagram from the example environment"
	@echo "make test    run the whole test suite (snapshots, nag, cfn-lint, handlers, portal)"
	@echo "make lint    ruff and mypy"
	@echo "make portal  run the portal locally (moto, seeded tenants, job simulator, local sign-in)"
	@echo "make diff | deploy | destroy   ENV=<name>, with AWS credentials"
	@echo "make synth ENV=pipeline        the deployment pipeline and every stage it deploys"

install: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Lambda dependencies layer: lambda/requirements.txt installed for the functions' runtime and
# architecture (Python 3.14, arm64) from PyPI wheels, so synth needs no Docker. Each asset is one
# reproducible zip (scripts/build_zip.py): CDK fingerprints and stages one file per asset instead
# of thousands, which is most of what synth used to spend (benchmarks/synth_speed.py). The layer
# leaves out pip's console scripts (python/bin): no use in Lambda, and their shebang names this
# checkout's venv, which would make the asset hash differ from one checkout to another.
LAYER_ZIP := build/lambda-layer.zip
PORTAL_WHEELS_STAMP := build/.portal-wheels.stamp
PORTAL_ZIP := build/portal-bundle.zip
PORTAL_SOURCES := $(shell find portal/portal_app lambda/training_common -type f \
  -not -path '*/__pycache__/*' -not -name '*.pyc')

build: $(LAYER_ZIP) $(PORTAL_ZIP)

$(LAYER_ZIP): lambda/requirements.txt scripts/build_zip.py $(VENV)/.installed
	rm -rf build/lambda-layer
	$(BIN)/python -m pip install --quiet --no-compile --disable-pip-version-check \
	  --platform manylinux2014_aarch64 --implementation cp --python-version 3.14 \
	  --only-binary=:all: --target build/lambda-layer/python -r lambda/requirements.txt
	rm -rf build/lambda-layer/python/bin
	$(BIN)/python scripts/build_zip.py $@ build/lambda-layer/=
	rm -rf build/lambda-layer

# The portal fleet's wheelhouse: portal/requirements.txt as wheels for the instances' Python
# (Amazon Linux 2023's python3.11) on both architectures, so an instance installs it offline
# (pip --no-index) whether the configured type is Graviton or x86.
$(PORTAL_WHEELS_STAMP): portal/requirements.txt $(VENV)/.installed
	rm -rf build/portal-wheels
	for arch in aarch64 x86_64; do \
	  $(BIN)/python -m pip download --quiet --disable-pip-version-check --dest build/portal-wheels \
	    --only-binary=:all: --implementation cp --python-version 3.11 \
	    --platform manylinux_2_34_$$arch --platform manylinux_2_28_$$arch \
	    --platform manylinux2014_$$arch -r portal/requirements.txt || exit 1; \
	done
	touch $@

# The portal's S3 asset (training_platform/constructs/portal_fleet.py): the application, the
# shared package, the pinned requirements and the wheelhouse. Not portal/local or tests.
$(PORTAL_ZIP): $(PORTAL_WHEELS_STAMP) $(PORTAL_SOURCES) portal/requirements.txt scripts/build_zip.py
	$(BIN)/python scripts/build_zip.py $@ portal/portal_app lambda/training_common \
	  portal/requirements.txt build/portal-wheels=wheels

synth: install build
	rm -rf cdk.out
	$(CDK) synth --quiet $(CDK_FLAGS)
	$(BIN)/python scripts/compliance_report.py cdk.out
	$(BIN)/python scripts/synth_summary.py cdk.out

# The README's picture is drawn from the example environment (tests/test_architecture.py checks
# that it matches what the generator draws from the current templates).
diagram: install build
	rm -rf build/diagram.out
	$(CDK) synth --quiet $(CDK_FLAGS) --output build/diagram.out
	$(BIN)/python scripts/architecture.py build/diagram.out --readme README.md

diff: install
	$(CDK) diff --all $(CDK_FLAGS)

deploy: install
	$(CDK) deploy --all $(CDK_FLAGS)

destroy: install
	$(CDK) destroy --all $(CDK_FLAGS)

# Tests run in up to four worker processes (pytest-xdist; two on a 2-core machine): each worker
# synthesizes the environments it needs once, and moto-bound portal and handler tests, which
# mostly wait on moto, overlap. `.venv/bin/python -m pytest <path>` runs serially.
test: install build
	$(BIN)/python -m pytest -n auto --maxprocesses=4

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The portal on 127.0.0.1 against moto_server; prints the address to open. Not for deployment.
portal: install
	cd portal && PYTHONPATH=../lambda $(abspath $(BIN))/python -m local

clean:
	rm -rf build cdk.out .pytest_cache .mypy_cache .ruff_cache
