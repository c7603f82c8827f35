# fsproto: `make demo` and `make test` each install everything first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test bench clean

setup:
	tools/setup.sh

demo: setup
	$(VENV)/bin/fsproto demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) tools/bench_rawdev.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
