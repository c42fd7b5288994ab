# Every target documents itself: `make help`. The README's two commands are `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
JARS_DIR ?= .jars
ENV ?= local
PYTEST_ARGS ?=
# `make test` runs the main suite in this many pytest processes (pytest-xdist), each with its own
# Spark session, a whole module to a process (`--dist loadfile`: a module's fixtures run once);
# 0 runs it in this process alone. The suite is mostly Spark's fixed cost per query, which one
# process does not spread over both cores (docs/BENCHMARKS.md, "Test suite").
TEST_WORKERS ?= 2

VENV_STAMP := $(VENV)/.installed
JARS_STAMP := $(JARS_DIR)/.resolved
# The Kafka broker the streaming tests start (lakehouse_dev.kafka): its own jars, its own JVM.
KAFKA_JARS_DIR ?= .jars-kafka
KAFKA_JARS_STAMP := $(KAFKA_JARS_DIR)/.resolved

# Airflow has a virtualenv of its own (its dependencies and PySpark's are pinned apart; the DAGs
# import only lakehouse.emr, installed there without dependencies): `make test` runs tests/airflow in it.
AIRFLOW_VENV ?= .venv-airflow
AIRFLOW_PY := $(AIRFLOW_VENV)/bin/python
AIRFLOW_STAMP := $(AIRFLOW_VENV)/.installed
AIRFLOW_REQS := orchestration/airflow/requirements.txt orchestration/airflow/requirements-test.txt orchestration/airflow/constraints.txt

.PHONY: help setup venv airflow-venv jars kafka-jars browser pages run maintain package upload test fuzz faults chaos lint format typecheck check clean clean-data bench bench-stream notebooks

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

setup: venv airflow-venv jars kafka-jars ## create the virtualenvs and resolve the JVM libraries (done by run and test)

venv: $(VENV_STAMP) ## create or reuse the virtualenv and install the package with its test extras

$(VENV_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or set PYTHON=...)" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip || { echo "error: pip could not reach PyPI; check the network or proxy" >&2; exit 1; }
	@$(PY) -m pip install -q -e '.[test]' || { echo "error: installing Python dependencies failed; check the network to PyPI" >&2; exit 1; }
	@touch $@

airflow-venv: $(AIRFLOW_STAMP) ## create or reuse .venv-airflow: Airflow 3, the Amazon provider, the DAG tests' needs

$(AIRFLOW_STAMP): $(AIRFLOW_REQS) pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (or set PYTHON=...)" >&2; exit 1; }
	@test -x $(AIRFLOW_PY) || $(PYTHON) -m venv $(AIRFLOW_VENV)
	@$(AIRFLOW_PY) -m pip install -q --upgrade pip || { echo "error: pip could not reach PyPI; check the network or proxy" >&2; exit 1; }
	@$(AIRFLOW_PY) -m pip install -q -c orchestration/airflow/constraints.txt \
	  -r orchestration/airflow/requirements.txt -r orchestration/airflow/requirements-test.txt \
	  || { echo "error: installing Airflow failed; check the network to PyPI" >&2; exit 1; }
	@$(AIRFLOW_PY) -m pip install -q --no-deps -e . || { echo "error: installing the package into $(AIRFLOW_VENV) failed" >&2; exit 1; }
	@touch $@

kafka-jars: $(KAFKA_JARS_STAMP) ## resolve the Kafka broker for the streaming tests from jvm/kafka/pom.xml into .jars-kafka

$(KAFKA_JARS_STAMP): jvm/kafka/pom.xml
	@command -v mvn >/dev/null || { echo "error: mvn not found; install Maven (e.g. apt-get install maven) to resolve the jars" >&2; exit 1; }
	@mkdir -p $(KAFKA_JARS_DIR)
	@mvn -B -q -Dstyle.color=never -f jvm/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(abspath $(KAFKA_JARS_DIR)) \
	  || { echo "error: resolving the Kafka broker's jars from Maven Central failed; check the network to Maven Central (see jvm/kafka/pom.xml)" >&2; exit 1; }
	@touch $@

# Headless Chromium for the browser tests of the report pages (lakehouse_dev.browser): Debian's
# chromium package, installed with apt-get when no Chromium is found (as root, or through
# `sudo -n`, which fails rather than asks for a password). Elsewhere install Chromium or Chrome
# yourself and set CHROMIUM=/path/to/it.
CHROMIUM ?= /usr/bin/chromium
APT_GET := $(if $(filter 0,$(shell id -u)),,sudo -n) env DEBIAN_FRONTEND=noninteractive apt-get

browser: ## install Debian's chromium (headless, for the page tests) unless a Chromium is found
	@test -x $(CHROMIUM) || command -v chromium >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "error: no Chromium at $(CHROMIUM) and no apt-get: install Chromium or Chrome and set CHROMIUM=/path/to/it" >&2; exit 1; }; \
	  echo "installing chromium (Debian package) for the browser tests..."; \
	  { $(APT_GET) install -y -q chromium >/dev/null 2>&1 \
	    || { $(APT_GET) update -q >/dev/null && $(APT_GET) install -y -q chromium >/dev/null; }; } \
	  || { echo "error: installing chromium with apt-get failed (root or passwordless sudo needed; on Ubuntu the package is a snap): install Chromium or Chrome and set CHROMIUM=/path/to/it" >&2; exit 1; }; }

jars: $(JARS_STAMP) ## resolve Delta, Deequ and hadoop-aws from jvm/pom.xml into .jars (cached)

$(JARS_STAMP): jvm/pom.xml
	@command -v java >/dev/null || { echo "error: java not found; install Java 17 (e.g. apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
	@java -version 2>&1 | grep -qE 'version "17' || { echo "error: Java 17 is required (Spark 3.5 on EMR 7.x); found: $$(java -version 2>&1 | head -1)" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "error: mvn not found; install Maven (e.g. apt-get install maven) to resolve the jars" >&2; exit 1; }
	@mkdir -p $(JARS_DIR)
	@mvn -B -q -Dstyle.color=never -f jvm/pom.xml dependency:copy-dependencies -DoutputDirectory=$(abspath $(JARS_DIR)) \
	  || { echo "error: resolving jars from Maven Central failed; check the network to Maven Central (see jvm/pom.xml)" >&2; exit 1; }
	@touch $@

# A local-only pseudonymisation key so `make run` works out of the box; on AWS the job reads the
# key from the Secrets Manager secret conf/<env>.yaml names (docs/EMR.md, "Secrets").
export LAKEHOUSE_PII_HMAC_KEY ?= local-development-key-not-a-secret

run: venv jars ## run the whole pipeline on a locally generated sample (ENV=local)
	$(VENV)/bin/lakehouse --env $(ENV) run

maintain: venv jars ## compact and vacuum every table (conf maintenance section)
	$(VENV)/bin/lakehouse --env $(ENV) maintain

# JupyterLab for a person (the `notebooks` extra); the tests run the notebooks with nbclient and
# need no server, so `make test` does not install it.
NOTEBOOKS_STAMP := $(VENV)/.notebooks-installed

$(NOTEBOOKS_STAMP): $(VENV_STAMP)
	@$(PY) -m pip install -q -e '.[test,notebooks]' || { echo "error: installing JupyterLab failed; check the network to PyPI" >&2; exit 1; }
	@touch $@

notebooks: venv jars $(NOTEBOOKS_STAMP) ## open JupyterLab on notebooks/ against the local lakehouse (make run first)
	@test -d data/lakehouse/gold || echo "note: no local lakehouse in data/lakehouse yet; run \`make run\` first" >&2
	cd notebooks && $(abspath $(VENV))/bin/jupyter lab

package: venv jars ## build the EMR job bundle into dist/lakehouse-<version>/ (wheel, pyfiles.zip, jobs, jars)
	$(PY) -m lakehouse.emr.package --out dist/

upload: package ## upload the bundle to <aws.artifacts_uri>/<version>/ (ENV=dev|prod)
	$(VENV)/bin/lakehouse --env $(ENV) emr upload

test: venv jars kafka-jars airflow-venv browser ## run the test suite (TEST_WORKERS processes), then the Airflow DAG tests
	LAKEHOUSE_CHROMIUM=$$(test -x $(CHROMIUM) && echo $(CHROMIUM) || command -v chromium) $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	$(AIRFLOW_PY) -m pytest --confcutdir=tests/airflow $(PYTEST_ARGS) tests/airflow

# The landing parser fuzzed (tests/test_landing_fuzz.py): FUZZ_EXAMPLES examples per property
# and source format (`make test` runs 150), with hypothesis's statistics.
FUZZ_EXAMPLES ?= 20000

fuzz: venv ## fuzz the landing parser with hypothesis (FUZZ_EXAMPLES per property, default 20000)
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -p no:cacheprovider \
	  --hypothesis-show-statistics tests/test_landing_fuzz.py

# Storage faults (tests/test_storage_faults.py): whole runs on S3A through lakehouse_dev.faults'
# proxy in front of moto, flaky and failing; `make test` runs one bronze outage.
faults: venv jars ## storage faults: pipeline runs on S3A through a fault-injecting proxy (10 min)
	$(PY) -m pytest -q -p no:cacheprovider -s -m faults tests/test_storage_faults.py

# The crash suite (lakehouse_dev.chaos): TRIALS runs of a day killed at every named crash point,
# then at random moments (SEED), each rerun and compared with an uninterrupted run.
TRIALS ?= 20
SEED ?= 7

chaos: venv jars ## crash suite: TRIALS killed runs (crash points, then random kills), each rerun and compared
	$(PY) -m lakehouse_dev.chaos --trials $(TRIALS) --seed $(SEED) --json bench-data/chaos/trials.json

SCALE ?= default

pages: venv browser ## open the last run's dashboard and two made-up shops' in headless Chromium; screenshots beside them
	LAKEHOUSE_CHROMIUM=$$(test -x $(CHROMIUM) && echo $(CHROMIUM) || command -v chromium) $(PY) -m lakehouse_dev.browser data/reports/latest/dashboard.html --samples data/reports/samples

bench: venv jars kafka-jars ## benchmark on generated data (SCALE=small|default|large) -> docs/BENCHMARKS.md, docs/bench/
	$(PY) -m lakehouse_dev.bench --scale $(SCALE) --command "make bench SCALE=$(SCALE)"

bench-stream: venv jars kafka-jars ## the streaming ingestion's latency (10 s trigger) and throughput on a local Kafka broker
	$(PY) -m lakehouse_dev.bench.stream --command "make bench-stream"

lint: venv ## ruff (lint and format check) on lib, jobs, orchestration and tests
	$(VENV)/bin/ruff check lib jobs orchestration tests
	$(VENV)/bin/ruff format --check lib jobs orchestration tests

format: venv ## format lib, jobs, orchestration and tests with ruff (what `make lint` checks)
	$(VENV)/bin/ruff format lib jobs orchestration tests
	$(VENV)/bin/ruff check --fix lib jobs orchestration tests

typecheck: venv ## mypy on lib/lakehouse and lib/lakehouse_dev
	$(VENV)/bin/mypy

check: lint typecheck test ## lint, type-check and test (what CI runs: .ci/run)

clean-data: ## remove the generated data, lakehouse and reports under ./data
	rm -rf data spark-warehouse metastore_db derby.log

clean: clean-data ## also remove the virtualenv and the downloaded jars
	rm -rf $(VENV) $(AIRFLOW_VENV) $(JARS_DIR) $(KAFKA_JARS_DIR) build dist lib/*.egg-info
