# Thin targets: each sets up .venv when needed, then runs one command.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The first interpreter >= 3.12 that really runs: python3.13, python3.12 (pyenv shims may
# exist but refuse to run), then pyenv's installed versions.
define find_python
for c in python3.13 python3.12; do \
  if $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then command -v $$c; exit 0; fi; \
done; \
root=$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv"); \
for p in $$root/versions/3.13*/bin/python3 $$root/versions/3.12*/bin/python3; do \
  if [ -x "$$p" ] && "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; then echo "$$p"; exit 0; fi; \
done; exit 1
endef

.PHONY: run test test-unit lint format env-example bench bench-quick bench-floor soak bench-local bench-frames bench-handshakes bench-drain clean

$(STAMP): pyproject.toml
	@py=$$($(find_python)) || { echo "error: Python 3.12+ not found (tried python3.13, python3.12 and pyenv's versions). Install Python 3.12 or 3.13." >&2; exit 1; }; \
	echo "using $$py"; \
	test -x $(PY) || "$$py" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m app --reload

test: $(STAMP)
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest -m "not integration"

lint: $(STAMP)
	$(PY) -m ruff check app tools tests bench
	$(PY) -m ruff format --check app tools tests bench
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format app tools tests bench
	$(PY) -m ruff check --fix app tools tests bench

# .env.example is rendered from app/config.py's declarations; a unit test checks it.
env-example: $(STAMP)
	$(PY) -m app.settings_doc .env.example

# Sessions per process against a bare echo (bench/load.py); results in bench/results/.
# Run on an otherwise idle machine: the server and the load generator need a core each.
bench: $(STAMP)
	$(PY) -m bench.load

bench-quick: $(STAMP)
	$(PY) -m bench.load --quick

SOAK_SECONDS ?= 300
# What a relay through BidiAgent cannot go below: the bare echo with strands' two hand-offs.
bench-floor: $(STAMP)
	$(PY) -m bench.floor

soak: $(STAMP)
	$(PY) -m bench.load --soak --soak-seconds $(SOAK_SECONDS)

bench-local: $(STAMP)
	$(PY) -m bench.local_model

bench-frames: $(STAMP)
	$(PY) -m bench.oversized_frames

bench-handshakes: $(STAMP)
	$(PY) -m bench.refused_handshakes

bench-drain: $(STAMP)
	$(PY) -m bench.drain --clients 20

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
