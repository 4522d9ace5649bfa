# Quick start: `make demo` and `make test` on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-output

.PHONY: setup demo test coverage lint browser bench-tools load-balancer spark-jdbc clean

$(STAMP): setup.py
	@echo "== setting up $(VENV): mlflow-governance and its dependencies (a few minutes on a fresh machine)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[test]' 2>&1 | { grep --line-buffered -E '^(Collecting|Successfully|ERROR)' || true; }
	touch $(STAMP)
	@echo "== ready: run commands as $(VENV)/bin/mlgov and $(VENV)/bin/mlflow, or 'source $(VENV)/bin/activate' first"

setup: $(STAMP)

# The main job on the embedded SQLite default.
demo: setup
	$(VENV)/bin/mlgov demo --workdir $(DEMO_DIR)

lint: setup
	$(PY) -m ruff check mlflow_governance projects tests benchmarks

# Debian's chromium and its driver for the browser tests (no test tool downloads a browser).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	    else echo "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"; fi; }

# Debian's wrk (the C load generator of benchmarks/serve.py) and nginx (a real load balancer).
bench-tools:
	@command -v wrk >/dev/null && command -v nginx >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >/dev/null; \
	    else echo "install Debian's wrk and nginx (apt-get install wrk nginx)"; fi; }

# Debian's nginx: the load balancer the production set-up test starts in front of two sidecars
# (Debian puts it in /usr/sbin, which is not on every user's PATH).
load-balancer:
	@test -x /usr/sbin/nginx || command -v nginx >/dev/null || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null; \
	    else echo "install Debian's nginx (apt-get install nginx)"; fi; }

# Java and Debian's JDBC drivers for mlgov acquire --engine spark (found in /usr/share/java; nothing downloaded at run time).
spark-jdbc:
	@command -v java >/dev/null && test -f /usr/share/java/postgresql.jar && test -f /usr/share/java/sqlite-jdbc.jar || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      openjdk-17-jre-headless libpostgresql-jdbc-java libxerial-sqlite-jdbc-java >/dev/null; \
	    else echo "install Java and the JDBC drivers (apt-get install openjdk-17-jre-headless libpostgresql-jdbc-java libxerial-sqlite-jdbc-java)"; fi; }

test: setup browser load-balancer spark-jdbc lint
	$(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=25 tests

# The suite under coverage.py: line coverage of mlflow_governance across both xdist workers and
# the Python processes the tests start (.coveragerc); slower than make test.
coverage: setup browser load-balancer spark-jdbc
	rm -f .coverage .coverage.*
	MLGOV_COVERAGE_DIR=$(CURDIR) $(VENV)/bin/coverage run -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup tests
	MLGOV_COVERAGE_DIR=$(CURDIR) $(VENV)/bin/coverage combine -q
	$(VENV)/bin/coverage report

clean:
	rm -rf $(VENV) $(DEMO_DIR) *.egg-info mlruns mlartifacts .coverage .coverage.*
