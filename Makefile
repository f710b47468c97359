# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
WORKDIR ?= runs/demo
PYTEST_ARGS ?= -n 2 --dist loadfile  # two workers, one file each (about 12 min from a cold cache on 2 cores)

.PHONY: demo test install fashion-mnist chromium bench clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

# The embedded real data: Debian's dataset-fashion-mnist (the original IDX files).
fashion-mnist:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	  else \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (files go to $(FMNIST_DIR))"; \
	    exit 1; \
	  fi; \
	fi

# The browser the page tests run: Debian's chromium (headless, driven over the DevTools protocol).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "Chromium is missing (the explorer's page tests run it headless): run 'sudo apt-get install chromium'"; \
	    exit 1; \
	  fi; \
	fi

demo: install fashion-mnist
	$(BIN)/python -m experiments.demo --workdir=$(WORKDIR)

test: install fashion-mnist chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m benchmarks.all --quick
	$(BIN)/python -m benchmarks.all --sweep --quick

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache *.egg-info
