# Quick start:  make study   (the whole study on synthetic subjects, CPU, minutes)
#               make test    (the test suite)
#               make docs    (the documentation site, docs/_build/html/index.html)
PYTHON ?= python3
VENV ?= .venv
ORIGINAL_VENV ?= .venv-original
CORES ?= 2
BIN := $(VENV)/bin

.PHONY: install study test report original-env lint clean-results docs

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The original dmri-rcnn==0.4.2 in an environment of its own (its TensorFlow pin cannot be met on
# Python 3.11, so it goes in --no-deps, with tf_keras for its Keras-2 code). Used by the equivalence
# tests and the benchmarks.
original-env: $(ORIGINAL_VENV)/.installed

$(ORIGINAL_VENV)/.installed:
	$(PYTHON) -m venv $(ORIGINAL_VENV)
	$(ORIGINAL_VENV)/bin/python -m pip install -q --upgrade pip
	$(ORIGINAL_VENV)/bin/python -m pip install -q tensorflow-cpu==2.21.0 numpy einops nibabel tqdm
	$(ORIGINAL_VENV)/bin/python -m pip install -q --no-deps tf_keras==2.21.0 dmri-rcnn==0.4.2
	touch $@

study: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores 1 --report results/report.html

test: install original-env
	DMRI_RCNN_ORIGINAL_PYTHON=$(abspath $(ORIGINAL_VENV))/bin/python $(BIN)/pytest

# The documentation site: every warning is an error (a broken link, an unknown reference, a public
# function without a docstring). The docs extra goes into the same environment, once.
docs: $(VENV)/.docs-installed
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $@

lint: install
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow/

clean-results:
	rm -rf results logs benchmarks
