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
	$(BIN)/pip install -q -e '.[lab,vocos,test,quality]'
	$(BIN)/pip install -q --no-deps chatterbox-tts==0.1.7
	$(BIN)/python -m ipykernel install --sys-prefix --name ttsopt --display-name "ttsopt" >/dev/null
	touch $@

# The suite, then the models of the family side by side into OUT/models (the same report shows
# them). A failed variant (exit 1) still gets the comparison and the report, and its status is kept;
# bad input or an interruption (2 and above) stops here. A local:DIR source holds one model: no comparison.
suite: setup
	$(BIN)/python -m ttsopt run --source $(SOURCE) --variants all --profile $(PROFILE) --out $(OUT); \
	status=$$?; [ $$status -ge 2 ] && exit $$status; \
	$(if $(filter local:%,$(SOURCE)),echo "no models comparison: local:DIR holds one model's files" &&,\
	$(BIN)/python -m ttsopt models --source $(SOURCE) --stream --save $(OUT)/models &&) \
	$(BIN)/python -m ttsopt report $(OUT) >/dev/null && exit $$status

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
