# The two set-up commands (README): `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST := $(VENV)/bin/pytest
CAPTURES := build/captures

.PHONY: setup demo test test-host test-guest install lint bench-natt bench-ike bench-send clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m mobility.lab.demo

# Everything: unit, fuzz, namespace, interop on the host, then the kernel-guest group in one boot.
test: setup
	@mkdir -p $(CAPTURES)
	$(PYTEST) -q -p no:cacheprovider tests --ignore=tests/kernel
	$(PY) -m mobility.lab.guest --share build -- $(PYTEST) -q -p no:cacheprovider tests/kernel

test-host: setup
	$(PYTEST) -q -p no:cacheprovider tests --ignore=tests/kernel

test-guest: setup
	$(PY) -m mobility.lab.guest --share build -- $(PYTEST) -q -p no:cacheprovider tests/kernel

install: setup
	bash scripts/install.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy mobility natt mobiled ard had

bench-natt: setup
	$(PY) -m bench.natt

bench-ike: setup
	$(PY) -m bench.ike

# CGA generation times, ard under a forged-RtSolPr flood (BENCH_SEND_SEC2_CAP, BENCH_SEND_RATE: bench/send.py)
bench-send: setup
	$(PY) -m bench.send

clean:
	rm -rf build
