# Two commands a new user needs:  make demo   and   make test
# Everything else is here for developers.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch. Override on GPU machines, e.g. `make setup TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PORT ?= 8501

.PHONY: setup demo dashboard test test-slow system-deps bench clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" || $(PY) -m pip install -q torch
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

setup: $(STAMP)

# Debian packages the tests use when present: headless Chromium (the real-browser test; no browser
# download), WordNet 3.0 files (snapshot vs nltk agreement) and Graphviz (DOT export check).

system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	test -f /usr/share/wordnet/data.noun || missing="$$missing wordnet-base"; \
	command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "not installed:$$missing (the tests that need them are skipped)"; fi; \
	fi

# Train the demo recipe into checkpoints/my-demo (reused once finished, resumed if interrupted),
# print its summary, then open the dashboard on it.
demo: setup
	$(PY) -m blockout.cli demo --out checkpoints/my-demo
	@echo ""
	@echo "blockout is installed in $(VENV): run it as $(VENV)/bin/blockout, e.g. $(VENV)/bin/blockout inspect checkpoints/my-demo,"
	@echo "or run 'source $(VENV)/bin/activate' once and then plain 'blockout --help'."
	@echo "Now opening the dashboard (Ctrl-C stops it; again later: $(VENV)/bin/blockout dashboard checkpoints/my-demo)."
	$(PY) -m blockout.cli dashboard checkpoints/my-demo --port $(PORT)

# The dashboard on the bundled run (or RUN=path).
dashboard: setup
	$(PY) -m blockout.cli dashboard $(RUN) --port $(PORT)

test: setup system-deps
	$(PY) -m pytest -q -m "not slow" -n 2

test-slow: setup
	$(PY) -m pytest -q -m slow || [ $$? -eq 5 ]  # 5: no slow tests selected

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
