# Two commands a newcomer needs: `make demo` (set up + run every model's training DAG)
# and `make test` (lint + the whole test suite). `make up` starts the UIs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STATE := $(CURDIR)/.local

# The embedded default: everything under the repo. Override any of these to move a part.
export AIRFLOW_HOME ?= $(STATE)/airflow
export AIRFLOW__CORE__DAGS_FOLDER ?= $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER ?= $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES ?= False
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION ?= False
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS ?= admin:admin
export GX_ANALYTICS_ENABLED ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export MLCYCLE_HOME ?= $(CURDIR)
export MLCYCLE_LAKE_ROOT ?= $(CURDIR)/lake
export MLFLOW_TRACKING_URI ?= sqlite:///$(STATE)/mlflow.db
export MLCYCLE_ARTIFACT_ROOT ?= $(STATE)/mlartifacts
export MLCYCLE_LEDGER_URI ?= sqlite:///$(STATE)/ledger.db
export PYTHONPATH := $(CURDIR)/plugins$(if $(PYTHONPATH),:$(PYTHONPATH))
# Executor tasks fork from a server that already imported the ML stack, and the supervisor
# notices a finished task within 1 s (bench/train_overhead.py: -32 % wall time per run).
export AIRFLOW__CORE__MP_START_METHOD ?= forkserver
export AIRFLOW__CORE__MP_FORKSERVER_PRELOAD ?= mlcycle_airflow.warm
export AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL ?= 1
# The SQLite metadata DB under concurrent use: a 30 s busy timeout (inert on other databases);
# mlcycle_airflow.metadb says why, tests/services/test_concurrency.py measures it.
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS ?= mlcycle_airflow.metadb.CONNECT_ARGS
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC ?= mlcycle_airflow.metadb.ASYNC_CONNECT_ARGS

.PHONY: help install demo test test-fast lint format up env serve bench clean

help:
	@echo "make demo   set up .venv, generate sample data, run train_<model> for every model, print a summary"
	@echo "make test   lint (ruff, mypy) + the whole pytest suite"
	@echo "make test-fast   lint + unit, DAG and operator tests (about a minute)"
	@echo "make up     Airflow UI on :8080 and MLflow UI on :5000 (Ctrl-C stops both)"
	@echo "make env    .env for docker compose with generated secrets (FORCE=1 replaces an existing one)"
	@echo "make serve MODEL=churn [ALIAS=champion] [PORT=5001]   REST scoring of a model alias"
	@echo "make bench  benchmarks (bench/), print tables"
	@echo "make clean  remove generated state (.local/, lake/), keep .venv"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt pyproject.toml
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python scripts/demo.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy include/mlcycle plugins

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: lint
	$(BIN)/python -m pytest tests/unit tests/dags tests/operators $(PYTEST_ARGS)

up: install
	bash scripts/up.sh

env:
	$(PYTHON) scripts/make_env.py $(if $(FORCE),--force)

MODEL ?= churn
ALIAS ?= champion
PORT ?= 5001
# The strict server (mlcycle.serving): wrong types, nulls in required fields, extra columns
# and unseen categories are refused with a 400 naming the field; it prints what it serves.
serve: install
	$(BIN)/mlcycle serve "$(MODEL)" --alias "$(ALIAS)" --port $(PORT)

bench: install
	$(BIN)/python bench/parse_cost.py
	$(BIN)/python bench/train_overhead.py

clean:
	rm -rf $(STATE) lake
