# fleetloop: two commands for users (`make demo`, `make test`), the rest for developers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test lint typecheck bench chaos clean mosquitto

setup: $(STAMP) mosquitto

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

# Mosquitto comes from the system's packages; install it only when missing.
mosquitto:
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
		echo "installing mosquitto with apt-get"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q mosquitto; \
	fi

demo: setup
	$(BIN)/fleetloop demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy gateway cloud firmware-tools/fwtool protocol fleetloop

clean:
	rm -rf .fleetloop .pytest_cache
