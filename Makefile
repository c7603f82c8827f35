# fsproto: `make demo` and `make test` each install everything first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup reference demo test bench clean

setup:
	tools/setup.sh

# The reference CMS driver's s390x guest, and QEMU >= 8.1 from bookworm-backports (which also
# moves qemu-system-x86 to the same version, so every QEMU test runs on one QEMU): cached,
# idempotent, from Debian's package archive only.
reference: setup
	$(PY) tools/cmsref prepare

demo: setup
	$(VENV)/bin/fsproto demo

test: setup reference
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) tools/bench_rawdev.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
