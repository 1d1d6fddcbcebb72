# The two commands of the README: `make demo` (the main job) and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: setup demo test test-heavy lint quality bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch and torchvision are pinned together (open_clip needs both; a mismatched pair fails to import)
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[offline,serve,test,ray,docs,mcp,langchain,llamaindex,watch,umap]'
	rm -f $(VENV)/.installed-*; touch $@

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/mmrag demo

# one test worker per core (pytest-xdist); a file's tests stay on one worker, so its fixtures are built once
PYTEST_PARALLEL ?= -n auto --dist loadfile

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q $(PYTEST_PARALLEL)

# the tests of a minute or more each (marked heavy): .ci/run runs them after `make test`
test-heavy: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_PARALLEL) -m heavy

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info

# CoSQA dev MRR of the base model and of one fine-tuned on mined pairs (docs/quality.md); COSQA=path/to/cosqa
COSQA ?= ../shared/data/cosqa
quality: $(STAMP)
	scripts/quality.sh $(COSQA)

bench: $(STAMP)
	$(BIN)/mmrag bench all
