# make demo: set up .venv and run the default suite.  make test: set up .venv and run the tests.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# The CPU wheel of torch first: with it in place, nothing below can pull a CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[cluster,cpu,serve,test]'
	# ONNX -> LiteRT: onnx2tf and tf_keras without their declared dependencies (pyproject.toml's cpu extra says why).
	$(PIP) install --no-deps onnx2tf==1.29.24 tf_keras==2.21.0
	touch $@

demo: install
	$(VENV)/bin/xpubench run && $(VENV)/bin/xpubench report --html xpubench-results/report.html

# Debian's chromium, for the report's browser test (CI runs as root on a clean Debian 12).
test: install
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null)
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	$(PY) benchmarks/harness_overhead.py
	$(PY) benchmarks/serve_overhead.py

clean:
	rm -rf $(VENV) xpubench-results build src/*.egg-info
