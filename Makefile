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

# Mosquitto (and its C clients, the benchmark's stand-in devices) come from the system's
# packages; install them only when missing.
mosquitto:
	@if { ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; } || \
	    ! command -v mosquitto_pub >/dev/null 2>&1; then \
		echo "installing mosquitto with apt-get"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q mosquitto mosquitto-clients; \
	fi

demo: setup
	$(BIN)/fleetloop demo

# Lint and types first (seconds), then the whole suite.
test: setup lint typecheck
	$(BIN)/python -m pytest -q

# Longer measurements, kept out of `make test`; figures in docs/benchmarks.md.
bench: setup
	$(BIN)/fleetloop bench path --devices 4 --records 10000
	$(BIN)/fleetloop bench heap

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy gateway cloud firmware-tools/fwtool protocol fleetloop

clean:
	rm -rf .fleetloop .pytest_cache
