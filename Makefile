# Two commands matter: `make demo` (the main job on the embedded emulator) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest emulator bench bench-idle bench-monitor bench-shared chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/python -m asyncimg.demo

emulator: $(STAMP)
	$(BIN)/asyncimg emulator --port 8808

bench: $(STAMP) bench-monitor
	$(BIN)/python benchmarks/bench_check.py
	$(BIN)/python benchmarks/bench_idle.py
	$(BIN)/python benchmarks/bench_shared.py

bench-shared: $(STAMP)
	$(BIN)/python benchmarks/bench_shared.py

bench-idle: $(STAMP)
	$(BIN)/python benchmarks/bench_idle.py

bench-monitor: $(STAMP)
	$(BIN)/python benchmarks/bench_monitor.py

# The reliability suite, whole (a few minutes): kills, concurrent checkers, faults, bad input.
# Its short version runs inside `make test` (tests/e2e/test_chaos.py).
chaos: $(STAMP)
	$(BIN)/python -m benchmarks.chaos

clean:
	rm -rf $(VENV) demo_output .pytest_cache .mypy_cache .ruff_cache
