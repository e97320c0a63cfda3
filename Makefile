# mmrepro — the two commands of the README:
#   make repro   set up (if needed), then `dvc repro` on the profile in params.yaml (default: cpu)
#   make test    set up (if needed), then the whole test suite
#   make image-test  (root) build the Dockerfile with buildah on a Debian 12 stand-in base and run the
#                smoke pipeline inside the image (scripts/image_test.py; CI runs it after make test)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup system-deps repro push test image-test image-clean ui lint lock bench clean

setup: $(STAMP) system-deps

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or run make PYTHON=/path/to/python3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

system-deps:
	@scripts/system_deps.sh

# dvc needs a git repository (a tarball checkout has none): make one rather than fail.
repro: setup
	@git rev-parse --git-dir >/dev/null 2>&1 || git init -q
	$(BIN)/dvc repro

# Share the pipeline's outputs on the DVC remote (README, Sharing): commits dvc.lock first, then `dvc push`.
push: setup
	scripts/push.sh

test: setup
	$(BIN)/python -m pytest

image-test: setup
	@scripts/system_deps.sh --image-test
	$(BIN)/python scripts/image_test.py

# Drop what image-test keeps between runs: the cached base, the image and its dependency layer (GBs).
image-clean:
	-buildah rm mmrepro-image-test 2>/dev/null
	-buildah rmi -f localhost/mmrepro:image-test localhost/mmrepro-base:bookworm
	buildah rmi --prune
	rm -rf /var/tmp/mmrepro-image-test

ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

lint: setup
	$(BIN)/ruff check src stages tests benchmarks
	$(BIN)/hadolint Dockerfile

# Regenerate the lock from the current venv (after changing pyproject.toml's dependencies).
lock:
	{ echo '# Exact versions installed by `make setup`, CI (.ci/run) and the Docker image. Regenerate with `make lock`.'; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^mmrepro'; } > requirements.lock

bench: setup
	$(BIN)/python benchmarks/efficiency.py

clean:
	rm -rf data artifacts checkpoints reports/metrics reports/provenance reports/eval reports/plots reports/curves \
	  reports/results reports/comparison.* reports/comparison_smoke.png dvc_plots mlflow.db mlartifacts
