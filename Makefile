# The two commands of the README's quick start, and a few helpers.
PYTHON ?= python3

.PHONY: run test install bench bundled-model bundle esbuild

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

# The page's JavaScript as one file, static/dist/app.js (what the page loads): main.js and
# every module it imports, uPlot too, bundled and minified by esbuild (pinned). A slow
# phone spent 0.4-0.6 s fetching and setting up 54 separate modules (issue 13). Run it
# after editing static/js: tests/test_bundle.py fails while the bundle is stale. The
# source map points DevTools at the modules in static/js.
ESBUILD_VERSION = 0.28.2
TOOLS_DIR ?= $(or $(CNN_LIVE_TOOLS_DIR),$(HOME)/.cache/cnn-live/node)
ESBUILD_DIR = $(TOOLS_DIR)/esbuild-$(ESBUILD_VERSION)
ESBUILD = $(ESBUILD_DIR)/node_modules/.bin/esbuild
BUNDLE ?= static/dist/app.js

bundle: $(ESBUILD)
	$(ESBUILD) static/js/main.js --bundle --format=esm --target=es2022 --minify \
		--sourcemap --sources-content=false --log-level=warning --outfile=$(BUNDLE)

# esbuild from the npm registry, into a folder outside the checkout.
esbuild: $(ESBUILD)
$(ESBUILD):
	mkdir -p $(ESBUILD_DIR)
	[ -f $(ESBUILD_DIR)/package.json ] || echo '{"private": true}' > $(ESBUILD_DIR)/package.json
	npm install --prefix $(ESBUILD_DIR) --save-exact --no-audit --no-fund --silent esbuild@$(ESBUILD_VERSION)
