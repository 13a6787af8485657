# `make app` runs the dashboard, `make test` runs every test; both set things up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Developers here have the real data sets next to the project; elsewhere the app downloads them.
SHARED_DATA := $(abspath ../shared/data)
ifeq ($(LENET_DATA_DIR),)
ifneq ($(wildcard $(SHARED_DATA)),)
app bench: export LENET_DATA_DIR := $(SHARED_DATA)
endif
endif

.PHONY: setup app test bench

# The app needs the environment only; the browser is for the tests (`make test` adds it).
setup: $(VENV)/.installed

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamp makes a second `make setup` instant, and reinstalls when requirements.txt changes.
# The project itself is installed in place (-e), which gives the `lenet` command in any folder.
$(VENV)/.installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $@

# Playwright drives Debian's Chromium; `playwright install` would try to download its own and fail.
$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

app: setup
	$(BIN)/streamlit run app.py

# Tests make their own data, so they get no LENET_DATA_DIR; screenshots land in artifacts/.
test: setup $(CHROMIUM)
	$(BIN)/python -m pytest -q tests

# Every benchmark that runs here; the GPU ones run from benchmarks/gpu_check.sh on a GPU machine.
bench: setup
	@for f in benchmarks/*.py; do \
		case "$$f" in */gpu_*|*/st_client.py|*/draw_page.py) continue;; esac; \
		echo "== $$f"; \
		PYTHONPATH=$(CURDIR) $(BIN)/python "$$f" || exit 1; \
	done
