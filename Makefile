# The two entry points of the README. Both create .venv on first use (uv from PyPI, then the
# project with its moshi pins), so a fresh machine with Python 3.10+ needs nothing else.
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: studio test test-fast lint setup

studio: $(STAMP)
	$(PY) launch.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The edit loop: everything but the browser and slow tests (a few minutes instead of a quarter of an hour).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not browser and not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check uv
	.venv/bin/uv pip install -q -p $(PY) -e ".[test]"
	touch $(STAMP)
