# vcard — set-up, run, test. `make run` and `make test` work on a fresh Debian 12 machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := pcscd vsmartcard-vpcd swig libpcsclite-dev opensc yubico-piv-tool pcsc-tools \
                gnutls-bin libengine-pkcs11-openssl libnss3-tools \
                krb5-kdc krb5-admin-server krb5-pkinit krb5-user \
                python3 python3-venv python3-dev gcc
PYTEST_ARGS ?=

.PHONY: run test unit bench lint system-deps venv pcscd clean

## Install missing Debian packages (as root), or print the exact command to run.
system-deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "vcard needs these Debian packages:$$missing"; \
	    echo "Install them with:  sudo apt-get update && sudo apt-get install -y$$missing"; \
	    exit 1; \
	  fi; \
	  echo "Installing:$$missing"; \
	  bash scripts/apt-install.sh $$missing; \
	fi

$(VENV)/.installed: pyproject.toml | system-deps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: system-deps $(VENV)/.installed

pcscd: system-deps
	@bash scripts/ensure-pcscd.sh

## Start the default virtual card (PIV) in reader "Virtual PCD 00 00", in the foreground.
run: venv pcscd
	$(VENV)/bin/vcard run $(ARGS)

## The whole suite, integration tests through the real pcscd + vpcd included.
test: venv pcscd
	$(VENV)/bin/pytest -q $(PYTEST_ARGS)

unit: venv
	VCARD_SKIP_INTEGRATION=1 $(VENV)/bin/pytest -q tests/unit $(PYTEST_ARGS)

bench: venv pcscd
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

lint: venv
	$(VENV)/bin/ruff check vcard minidriver signin tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
