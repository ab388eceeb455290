# Two set-up commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test fuzz bench clean lint

install: $(STAMP)

# Re-install only when the project definition or the verified versions change: `make install` is idempotent.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -c constraints.txt
	touch $(STAMP)

demo: install
	$(BIN)/dim demo

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The property tests with fresh random seeds, FUZZ_ROUNDS times. `make test` under CI runs them derandomised (the
# same examples every run), which is what let a one-byte capacity overshoot and a date read as Unix seconds through.
FUZZ_ROUNDS ?= 4
PROPERTY_TESTS = $(shell grep -l '^from hypothesis\|^import schemathesis' tests/test_*.py)
fuzz: install
	for i in $$(seq $(FUZZ_ROUNDS)); do \
	  seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); echo "hypothesis seed $$seed"; \
	  $(BIN)/python -m pytest -q -p no:cacheprovider --hypothesis-profile=default --hypothesis-seed=$$seed \
	    $(PROPERTY_TESTS) || exit 1; \
	done

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .dim build *.egg-info
