# seqlvm: `make demo` trains, evaluates and samples on the embedded chorales;
# `make demo-speech` does the same on the embedded synthesised speech;
# `make test` runs the test suite. All create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_DIR ?= runs/demo
DEMO_STEPS ?= 1500
SPEECH_RUN_DIR ?= runs/speech-demo
SPEECH_STEPS ?= 500
# The suite runs in this many pytest-xdist processes (compilation, most of
# its time, is single-threaded: two processes use both of CI's two cores),
# each test module in one process (--dist loadscope: a module's fixtures
# are built once; 7:10 against 7:52 with tests dealt out one by one).
TEST_WORKERS ?= 2

.PHONY: venv demo demo-speech espeak test bench jsb clean

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

# The embedded speech demo synthesises its sentences with espeak-ng (Debian's
# package); installed here when missing and we may (root with apt-get).
espeak:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    timeout 300 apt-get install -y -q espeak-ng >/dev/null 2>&1 || \
	      { timeout 300 apt-get update -q >/dev/null 2>&1 && \
	        timeout 300 apt-get install -y -q espeak-ng >/dev/null 2>&1; }; \
	  fi; \
	  command -v espeak-ng >/dev/null 2>&1 || { \
	    echo "espeak-ng is needed for the speech demo: sudo apt-get install espeak-ng"; exit 1; }; }

demo-speech: venv espeak
	$(BIN)/seqlvm train --data speech-demo --run-dir $(SPEECH_RUN_DIR) --num-steps $(SPEECH_STEPS)
	$(BIN)/seqlvm eval $(SPEECH_RUN_DIR) --split test
	$(BIN)/seqlvm sample $(SPEECH_RUN_DIR) --num 2 --steps 160
	@echo "Run directory: $(SPEECH_RUN_DIR) (WAV samples in samples/; tensorboard --logdir $(SPEECH_RUN_DIR))"

test: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

bench: venv
	$(BIN)/python experiments/bench_train.py

jsb: venv
	$(BIN)/python experiments/jsb_bounds.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
