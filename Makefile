# fleetloop: two commands for users (`make demo`, `make test`), the rest for developers.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TEST_WORKERS ?= 3
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup demo test lint typecheck bench chaos clean mosquitto postgresql chromium

setup: $(STAMP) mosquitto postgresql chromium

# Reinstall only when the dependency list or the compiled checks change. The compiled checks
# (protocol/_fastpath.c) need OpenSSL's headers: Debian's libssl-dev, installed when missing.
$(STAMP): pyproject.toml protocol/_fastpath.c
	@if [ ! -f /usr/include/openssl/sha.h ]; then \
		echo "installing libssl-dev with apt-get"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q libssl-dev; \
	fi
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

# PostgreSQL's server binaries (initdb, pg_ctl) from the system's packages, installed only when
# missing: the tests start their own throwaway cluster with them (never the machine's own server).
postgresql:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing postgresql with apt-get"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql; \
	fi

# Headless Chromium and its WebDriver drive the dashboard's browser test; from the system's
# packages, installed only when missing.
chromium:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver with apt-get"; \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; \
	fi

demo: setup
	$(BIN)/fleetloop demo

# Lint and types first (seconds), then the whole suite, in TEST_WORKERS processes at once
# (pytest-xdist): most tests wait on real processes (MicroPython, Mosquitto, uvicorn), so three
# share two cores well. Every store test runs on SQLite and on
# PostgreSQL; FLEETLOOP_REQUIRE_POSTGRES=1 makes "PostgreSQL unavailable" a failure, not a skip,
# and FLEETLOOP_REQUIRE_COMPILED=1 makes a missing build of protocol/_fastpath.c one.
test: setup lint typecheck
	FLEETLOOP_REQUIRE_POSTGRES=1 FLEETLOOP_REQUIRE_COMPILED=1 \
		$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=25

# Many faults in a row on a running fleet (about five minutes; CHAOS_FAULTS, CHAOS_SEED), then
# 100 power cuts in the middle of updates (about fifteen; OTA_CHAOS_TRIALS, OTA_CHAOS_SEED).
chaos: setup
	$(BIN)/python -m pytest -q -m chaos --timeout=3600 tests/e2e/test_chaos.py tests/e2e/test_ota_chaos.py \
		tests/gateway/test_gw_disk_full.py

# Longer measurements, kept out of `make test`; figures in docs/benchmarks.md.
bench: setup
	$(BIN)/fleetloop bench path --devices 4 --records 10000
	$(BIN)/fleetloop bench gateway
	$(BIN)/fleetloop bench heap
	$(BIN)/fleetloop bench recovery
	$(BIN)/fleetloop bench cloud
	$(BIN)/fleetloop bench ota
	$(BIN)/fleetloop bench connections --devices 5000
	$(BIN)/fleetloop bench fleet
	$(BIN)/fleetloop loop train-churn --out cloud/loop/models/churn-v3.npz
	$(BIN)/fleetloop bench churn --bikes 500 --mirrors 100
	$(BIN)/fleetloop bench loop --bikes 500 --mirrors 100 --engines 50 --weeks 12
	$(BIN)/fleetloop loop train-engines --out cloud/loop/models/engine-rul-v1.npz

lint: setup
	$(BIN)/ruff check .

typecheck: setup
	$(BIN)/mypy gateway cloud firmware-tools/fwtool protocol fleetloop
# device/ (settings in device/mypy.ini): all of it against CPython's typeshed, then what ships in
# an image (files not marked "# cpython-only", plus protocol.DEVICE_MODULES) against the unix and
# the ESP32 port's MicroPython stubs as the typeshed (pinned here, installed on first use).
	$(BIN)/mypy --config-file device/mypy.ini --cache-dir .mypy_cache/device-cpython --always-false MICRO device
	@files=$$($(BIN)/python -c 'import pathlib, protocol; print(*[p for p in sorted(pathlib.Path("device").rglob("*.py")) if "# cpython-only" not in p.open().readline()], *["protocol/%s.py" % m for m in protocol.DEVICE_MODULES])'); \
	for port in unix esp32; do \
		stubs=$(VENV)/micropython-stubs/$$port-1.29.0.post1; \
		[ -f $$stubs/stdlib/VERSIONS ] || $(BIN)/python -m pip install -q --no-deps --upgrade --target $$stubs \
			micropython-$$port-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2 || exit 1; \
		echo "mypy device image against micropython-$$port-stubs"; \
		MYPYPATH=$$stubs $(BIN)/mypy --config-file device/mypy.ini --custom-typeshed-dir $$stubs \
			--cache-dir .mypy_cache/device-$$port --always-true MICRO $$files || exit 1; \
	done

clean:
	rm -rf .fleetloop .pytest_cache
