# zeta-swarm: one entry point for install, test, the swarm, data, image and infra.
# Every target works on a fresh clone; `make install` is the only thing that installs.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .tools

PHASE ?= 2
TEAM ?= minibatch
BACKEND ?= local
# Empty: the orchestrator's default for the backend (default locally, cloud on vertex).
PROFILE ?=
TRIALS ?=
PARALLEL ?=
RUN_DIR ?=
EXPERIMENTS ?=
DATA_DIR ?= data/odlyzko

SWARM_FLAGS = --phase $(PHASE) --team $(TEAM) --backend $(BACKEND) $(if $(PROFILE),--profile $(PROFILE)) \
	$(if $(TRIALS),--max-trials $(TRIALS)) $(if $(PARALLEL),--parallel $(PARALLEL)) \
	$(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(if $(filter vertex,$(BACKEND)),--infra-outputs $(INFRA_OUTPUTS)) \
	$(if $(EXPERIMENTS),--experiments)

.PHONY: install chromium test lint mutation swarm status dashboard data bench robustness-table image infra-outputs infra-init infra-lock infra-lock-file infra-plan infra-apply compare clean

install: $(VENV)/.installed $(TOOLS)/.installed chromium

# torch first, as the local CPU wheel: any other spec pulls several GB of CUDA packages.
$(VENV)/.installed: trainer/pyproject.toml orchestrator/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e 'trainer[data,metis,dev]' -e 'orchestrator[vertex,report,dashboard,dev]'
	touch $@

# Debian's chromium for the browser test of the report (tests/browser), installed where it is
# missing and apt-get exists; elsewhere that test skips and says where it runs.
chromium:
	@command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1 || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# checkov pins its own dependency tree, so it lives in a venv of its own.
$(TOOLS)/.installed: constraints-checkov.txt
	$(PYTHON) -m venv $(TOOLS)/checkov
	$(TOOLS)/checkov/bin/pip install -q --upgrade pip
	$(TOOLS)/checkov/bin/pip install -q -c constraints-checkov.txt checkov
	touch $@

# ruff, then the layers between the packages (import-linter; contracts in pyproject.toml).
lint: install
	$(BIN)/ruff check trainer orchestrator tests bench
	$(BIN)/lint-imports --no-cache

# One BLAS thread per process: the suite runs trainer subprocesses side by side on few cores,
# and oversubscribed OpenBLAS is ~20x slower on the baselines' least squares.
test: install lint
	OPENBLAS_NUM_THREADS=1 $(BIN)/pytest -q

# Mutation testing (mutmut, not part of `make test`): the controller's rules, the tuners and the
# loss wiring against their fast tests; prints killed/survived counts and every surviving mutant.
# Capped at MUTATION_MINUTES (default 30); the staging copy and results are in .mutation/.
mutation: install
	$(BIN)/pip install -q -c constraints.txt mutmut
	tests/mutation/run.sh

# optuna-dashboard (read-only) on the latest run's study.db, or RUN_DIR's: http://127.0.0.1:$(PORT)/dashboard
PORT ?= 8080
dashboard: install
	$(BIN)/orchestrator dashboard $(if $(RUN_DIR),--run-dir $(RUN_DIR)) --port $(PORT)

data: install
	@test -f $(DATA_DIR)/manifest.json || $(BIN)/trainer zeros odlyzko --out $(DATA_DIR)

swarm: install data
	$(BIN)/orchestrator swarm $(SWARM_FLAGS)

status: install
	$(BIN)/orchestrator status $(if $(RUN_DIR),--run-dir $(RUN_DIR))

bench: install
	$(BIN)/python bench/zeros.py
	$(BIN)/python bench/baselines.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/layer_kernel.py
	$(BIN)/python bench/swarm_overheads.py
	$(BIN)/python bench/vertex_pass.py

# Issue 17's table: every bad input and damaged run dir of tests/robustness/cases.py against the CLIs.
robustness-table: install
	OPENBLAS_NUM_THREADS=1 $(BIN)/python tests/robustness/table.py

clean:
	rm -rf $(VENV) $(TOOLS) runs

# The rg_penalty experiment (configs/experiments/compare.yaml): three arms x seeds, then
# RUN_DIR/report/index.html with the verdict. PROFILE=smoke takes a few minutes.
compare: install data
	$(BIN)/orchestrator compare --profile $(or $(PROFILE),default) --backend $(BACKEND) --run-dir $(or $(RUN_DIR),runs/compare) \
		$(if $(filter vertex,$(BACKEND)),--infra-outputs $(INFRA_OUTPUTS))

# --- infra and image (docs/infra.md) ---------------------------------------------------------
# The platform owner runs these once per project; the swarm then reads INFRA_OUTPUTS.
INFRA_OUTPUTS ?= infra-outputs.json

infra-init:
	terraform -chdir=infra init

# The google provider's build is locked by infra/.terraform.lock.hcl, committed (docs/infra.md
# step 1), with the checksums of every platform the team runs Terraform on; plan and apply refuse
# to run without it.
INFRA_LOCK = terraform -chdir=infra providers lock -platform=linux_amd64 -platform=darwin_arm64 -platform=darwin_amd64
infra-lock:
	$(INFRA_LOCK)

infra-plan: infra-lock-file
	terraform -chdir=infra plan

infra-apply: infra-lock-file
	terraform -chdir=infra apply

infra-lock-file:
	@test -f infra/.terraform.lock.hcl || { echo "make $(MAKECMDGOALS): infra/.terraform.lock.hcl is missing; make it with \`make infra-lock\` ($(INFRA_LOCK)) and commit it" >&2; exit 2; }

# Checked before it replaces the old file, so a failed or partial read never leaves a bad one.
infra-outputs: install
	@terraform -chdir=infra output -json > $(INFRA_OUTPUTS).tmp \
		&& $(BIN)/python -m orchestrator.infra_outputs $(INFRA_OUTPUTS).tmp \
		&& mv $(INFRA_OUTPUTS).tmp $(INFRA_OUTPUTS) && echo "wrote $(INFRA_OUTPUTS)" \
		|| { rm -f $(INFRA_OUTPUTS).tmp; exit 2; }

# Cloud Build via gcloud (or a local Docker engine); prints the pushed IMAGE_REPOSITORY/trainer:GIT_SHA.
image: install
	PYTHON=$(BIN)/python containers/build-image.sh $(INFRA_OUTPUTS)
