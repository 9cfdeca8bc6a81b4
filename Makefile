# The project's own commands. `make demo` and `make test` set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# System packages need root: use sudo when not already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help setup demo test lint format bench clean stack-up stack-down

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# System packages: ffmpeg (relays SRT sources; serves the live-source tests), GStreamer's
# RTSP server (the RTSP live-source test) and Chromium (the report test opens the HTML
# report headless and screenshots it).
setup: $(STAMP) ## Create .venv, install the package and tools, fetch the Kafka broker jars (idempotent)
	$(BIN)/inter1-pipeline stack fetch
	command -v ffmpeg >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq ffmpeg)
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium)
	/usr/bin/python3 -c 'import gi; gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0"); \
		from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find("rtph264pay")' 2>/dev/null || \
		($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends python3-gi \
		gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good)

demo: setup ## Run the pipeline end to end on the embedded defaults
	$(BIN)/inter1-pipeline demo

test: setup ## Run the whole test suite (starts its own Kafka broker)
	$(BIN)/python -m pytest

lint: setup ## ruff, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup ## Run the benchmarks (prints measured ratios; not tests)
	$(BIN)/python bench/run_all.py

stack-up: setup ## Start the local Kafka broker
	$(BIN)/inter1-pipeline stack up

stack-down: ## Stop the local Kafka broker
	$(BIN)/inter1-pipeline stack down

clean: stack-down ## Remove local state (.stack) and the virtualenv
	rm -rf .stack $(VENV)
