# Two commands after cloning:  `make figures` (the main job) and `make test`.
# Both create the virtual environment .venv when it is missing and install invlab into it.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.invlab-installed

.PHONY: venv figures quick test clean

venv: $(STAMP)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c $(CONSTRAINTS) -e ".[notebooks,test]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Execute every notebook (full mode, embedded default model) and refresh figures/.
figures: $(STAMP)
	$(PY) -m invlab.notebooks --mode full --figures figures --out build/notebooks

# The same in QUICK mode (what CI executes inside the tests).
quick: $(STAMP)
	$(PY) -m invlab.notebooks --mode quick --figures build/figures-quick --out build/notebooks-quick

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf build $(VENV)
