# Plain entry points. `make suite` and `make test` are the README's two commands.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SOURCE ?= synthetic
PROFILE ?= quick
OUT ?= reports/latest
JUPYTER ?= $(BIN)/jupyter

.PHONY: setup suite test lint lab report clean

setup: $(VENV)/.ready

# chatterbox-tts goes in with --no-deps: its pins (torch 2.6, numpy<2, gradio) clash with
# the stack we run; pyproject.toml declares what it really needs.
$(VENV)/.ready: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[lab,vocos,test]'
	$(BIN)/pip install -q --no-deps chatterbox-tts==0.1.7
	$(BIN)/python -m ipykernel install --sys-prefix --name ttsopt --display-name "ttsopt" >/dev/null
	touch $@

suite: setup
	$(BIN)/python -m ttsopt run --source $(SOURCE) --variants all --profile $(PROFILE) --out $(OUT)

# The floors contract and ruff first: a broken layer or lint fails before the slow tests run.
lint: setup
	$(BIN)/lint-imports
	$(BIN)/ruff check ttsopt tests

test: lint
	$(BIN)/python -m pytest -q

lab: setup
	$(JUPYTER) lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

report: setup
	$(BIN)/python -m ttsopt report $(OUT)

clean:
	rm -rf $(VENV) .pytest_cache
