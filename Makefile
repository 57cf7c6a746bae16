# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
DEMO   ?= demo-out

.PHONY: demo test lint clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: venv
	$(BIN)/vitaledge demo --out $(DEMO)

test: venv
	@.ci/browser.sh
	@bash .ci/system-packages
	$(BIN)/python -m pytest -q -n auto --dist loadgroup

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info
