# The two commands of the README's quick start, and a few helpers.
PYTHON ?= python3

.PHONY: run test install bench bundled-model

install:
	$(PYTHON) -m pip install -q -e ".[test]"

# Install, then serve the dashboard on http://127.0.0.1:8000 (MNIST is downloaded once).
run:
	$(PYTHON) -m pip install -q -e .
	cnn-live serve

# Install, then run the whole test suite (needs MNIST: see "The data directory").
test: install
	$(PYTHON) -m pytest -q

# Speed against PyTorch CPU (pip install torch==2.13.0) and against the naive loops.
bench:
	$(PYTHON) bench/bench_engine.py

# The pretrained model /api/predict answers with before any run (about 40 s on two
# idle cores). OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE, set on some machines, halve the speed.
bundled-model:
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE cnn-live train --preset default --seed 0 \
		$(if $(CNN_LIVE_DATA_DIR),--data-dir "$(CNN_LIVE_DATA_DIR)") \
		--save app/assets/default-model.npz
