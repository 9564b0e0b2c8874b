# Lookout: `make run` installs and processes the bundled sample on config-x86.ini;
# `make test` installs and runs the test suite.  Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
CONFIG ?= config-x86.ini
STAMP := $(VENV)/.installed
DASHBOARD := dashboard/dist/index.html

.PHONY: run test install lint bench bench-trackers bench-exports bench-integrations clean dashboard

# The install script every Dockerfile runs (scripts/install.sh, docs/docker.md), for the
# openvino device (x86's CPU packages plus OpenVINO, which the cross-backend test needs) and
# the dev extra.
$(STAMP): pyproject.toml requirements/no-deps.txt scripts/install.sh scripts/device_requirements.py libs/config/devices.py
	PYTHON=$(PYTHON) scripts/install.sh openvino --venv $(VENV) --dev
	touch $(STAMP)

# The web dashboard (served by `lookout run` at /dashboard/): npm packages from the lock file,
# bundled by esbuild into dashboard/dist.
$(DASHBOARD): dashboard/package.json dashboard/package-lock.json dashboard/build.mjs $(shell find dashboard/src -type f)
	cd dashboard && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

dashboard: $(DASHBOARD)

install: $(STAMP) $(DASHBOARD)

run: $(STAMP) $(DASHBOARD)
	$(VENV)/bin/lookout run --config $(CONFIG)

test: $(STAMP) $(DASHBOARD)
	scripts/ensure-chromium.sh
	scripts/ensure-servers.sh
	$(VENV)/bin/python -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/pipeline_benchmark.py

# Peer trackers for the side-by-side benchmark, installed without their declared
# requirements (see requirements/bench-peers.txt): they would replace opencv-python-headless.
bench-trackers: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet --no-deps -r requirements/bench-peers.txt
	$(VENV)/bin/python benchmarks/tracker_benchmark.py --write

# Processing fps idle against fps while 200 clients ask for exports, as a ratio (>= 0.90).
bench-exports: $(STAMP)
	$(VENV)/bin/python benchmarks/export_benchmark.py

# The whole processor with every integration sink: servers up against servers down (<= 0.02).
bench-integrations: $(STAMP)
	scripts/ensure-servers.sh
	$(VENV)/bin/python benchmarks/integrations_benchmark.py

clean:
	rm -rf $(VENV) data dashboard/node_modules dashboard/dist dashboard/dist.building-* dashboard/dist.old-*
