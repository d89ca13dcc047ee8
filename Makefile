# seqlvm: `make demo` trains, evaluates and samples on the embedded chorales;
# `make test` runs the test suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo
DEMO_STEPS ?= 1500

.PHONY: venv demo test bench jsb clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/.installed

demo: venv
	$(BIN)/seqlvm train --data chorales --run-dir $(RUN_DIR) --num-steps $(DEMO_STEPS)
	$(BIN)/seqlvm eval $(RUN_DIR) --split test
	$(BIN)/seqlvm sample $(RUN_DIR) --num 4 --steps 64
	@echo "Run directory: $(RUN_DIR) (config, checkpoints, eval/, samples/; tensorboard --logdir $(RUN_DIR))"

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python experiments/bench_train.py

jsb: venv
	$(BIN)/python experiments/jsb_bounds.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
