# Two commands after cloning:  `make figures` (the main job) and `make test`.
# Both create the virtual environment .venv when it is missing and install invlab into it.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.invlab-installed

.PHONY: venv browser-deps notebooks figures quick site test clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c $(CONSTRAINTS) -e ".[notebooks,test,sd,bench]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# The browser test's Node side (playwright-core, pinned in tests/browser/package-lock.json).
# Without npm (or when npm ci fails) this only says so: the browser test then skips, or fails under CI=true.
BROWSER_STAMP := tests/browser/node_modules/.invlab-installed

browser-deps: $(BROWSER_STAMP)

$(BROWSER_STAMP): tests/browser/package.json tests/browser/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		echo "npm ci --prefix tests/browser --no-audit --no-fund"; \
		npm ci --prefix tests/browser --no-audit --no-fund && touch $@ \
			|| echo "npm ci failed: the browser test will skip (fail under CI=true)"; \
	else \
		echo "npm not found: not installing tests/browser (the browser test will skip; see README, Two commands)"; \
	fi

# Rewrite every notebooks/NN_*.ipynb from its percent-format source NN_*.py (jupytext pairs).
notebooks: $(STAMP)
	$(PY) -m invlab.nbsync

# Execute every notebook (full mode, embedded default model) and refresh figures/.
figures: $(STAMP)
	$(PY) -m invlab.notebooks --mode full --figures figures --out build/notebooks

# The same in QUICK mode (what CI executes inside the tests).
quick: $(STAMP)
	$(PY) -m invlab.notebooks --mode quick --figures build/figures-quick --out build/notebooks-quick

# A static HTML site of the course executed in full mode (build/site/index.html), to read without
# running it. A notebook is executed again only when its source is newer than its executed copy in
# build/notebooks (`make -B site` re-executes all); a failed run leaves no copy behind.
SOURCES := $(wildcard notebooks/[0-9][0-9]_*.ipynb)
EXECUTED := $(patsubst notebooks/%,build/notebooks/%,$(SOURCES))

build/notebooks/%.ipynb: notebooks/%.ipynb | $(STAMP)
	$(PY) -m invlab.notebooks --mode full --out build/notebooks --figures figures --only $* || { rm -f $@; exit 1; }

site: $(EXECUTED) | $(STAMP)
	$(PY) -m invlab.site --notebooks build/notebooks --out build/site --expect full

test: $(STAMP) $(BROWSER_STAMP)
	$(PY) -m pytest

clean:
	rm -rf build $(VENV) tests/browser/node_modules
