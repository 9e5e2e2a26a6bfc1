# The two commands of the README: `make demo` (main job) and `make test` (all quality gates).
# Both set up .venv first (scripts/setup.sh: idempotent, seconds when nothing changed).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint typecheck pytest bench config-defaults clean

setup:
	@bash scripts/setup.sh

# make demo [BAG=path TOPIC=/camera/image_raw | DAVIS=../shared/data/davis2016] [STEPS=N] [OUT=dir]
demo: setup
	$(VENV)/bin/vcups demo $(if $(OUT),--out $(OUT)) $(if $(BAG),--bag $(BAG)) \
		$(if $(TOPIC),--topic $(TOPIC)) $(if $(DAVIS),--davis $(DAVIS)) $(if $(STEPS),--steps $(STEPS))

test: setup lint typecheck pytest

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

pytest:
	ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST $(PY) -m pytest -q

# Regenerate config/*.yaml from the schemas in vcups_core/configs (tests fail if they drift).
config-defaults:
	$(VENV)/bin/vcups config write-defaults config

clean:
	rm -rf build demo_out .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (not part of `make test`): printed tables with same-run baselines.
bench: setup
	$(PY) benchmarks/bench_synthetic.py
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_streaming.py
	$(PY) benchmarks/bench_node.py
	$(PY) benchmarks/bench_model.py
