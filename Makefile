# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export STREAMGUARD_CACHE ?= $(CURDIR)/.cache/streamguard

.PHONY: setup demo test bench clean

setup: $(VENV)/.installed $(STREAMGUARD_CACHE)/.fetched

# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

$(STREAMGUARD_CACHE)/.fetched: $(VENV)/.installed streamguard/assets.py
	$(BIN)/streamguard fetch
	touch $@

demo: setup
	mkdir -p out
	$(BIN)/streamguard anonymize $(STREAMGUARD_CACHE)/WolfgangLanger_Pexels.mp4 \
		-o out/demo.mp4 --report out/demo.json
	@echo "protected clip: out/demo.mp4   run report: out/demo.json"

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(VENV) .cache out
