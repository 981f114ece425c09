# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi
# make run and the migration check are development: missing keys are generated
# into instance/dev-keys.json. Production sets APP_ENV=production (the default
# when unset) and its own keys.
export APP_ENV ?= development
# Where `make run` listens: `make run HOST=0.0.0.0` for a phone on the LAN,
# `make run PORT=5050` where macOS's AirPlay Receiver holds 5000.
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install clients run test test-fast lint check-migrations messages clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@echo "== Installing the Python packages into $(VENV) (the first time: a minute or two)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -r requirements-dev.txt
	touch $@
	@echo "== Python packages installed"

install: $(BIN)/.installed

# The TypeScript client check (tests/test_generated_client.py) needs Node.js and the
# packages pinned in clients/package-lock.json; without npm, that test says so.
NPM := $(shell command -v npm)
clients/node_modules/.installed: clients/package.json clients/package-lock.json
	@echo "== Installing the TypeScript client's packages into clients/node_modules (npm ci)"
	cd clients && npm ci --no-audit --no-fund --ignore-scripts
	touch $@

clients: $(if $(NPM),clients/node_modules/.installed)

## Start the app on the embedded default: SQLite under instance/, push to the
## log, scheduler in process, demo data loaded; print how to reach it. The log
## goes to the terminal and to instance/server.log (where scripts read SMS codes).
# bash with pipefail: a server that fails to start fails `make run`, not hidden behind tee
run: SHELL := bash
run: .SHELLFLAGS := -o pipefail -c
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask seed
	@$(BIN)/python -m app.devserver $(HOST) $(PORT)
	SCHEDULER_EMBEDDED=$${SCHEDULER_EMBEDDED:-1} $(BIN)/flask run --host $(HOST) --port $(PORT) 2>&1 \
		| tee "$${INSTANCE_PATH:-instance}/server.log"

## Run the test suite on every core (SQLite; set TEST_DATABASE_URL for PostgreSQL:
## each worker gets a database of its own beside it). TEST_WORKERS=0 runs it in one
## process; CLOCK_SHIFT_DAYS=365 runs it a year ahead.
TEST_WORKERS ?= auto
test: install clients
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

## The edit-test loop: every test but those marked slow (processes, servers,
## generated clients, large random sweeps); `make test` before a commit.
test-fast: install
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not slow" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Upgrade an empty database from zero and check the models have no drift.
check-migrations: install
	$(BIN)/flask db upgrade
	$(BIN)/flask db check

## Extract the texts from the code and templates, merge them into the catalogs
## (app/translations/{zh_Hans_CN,en}), compile the .mo files. Translate new entries in
## zh_Hans_CN/LC_MESSAGES/messages.po (zh-CN), then run it again; tests/test_i18n.py fails while one is missing.
messages: install
	$(BIN)/pybabel extract --no-location --sort-output -F babel.cfg -k lazy_gettext -k _l -k lazy_pgettext:1c,2 -o app/translations/messages.pot app mobile_api notifications
	$(BIN)/pybabel update --ignore-obsolete --ignore-pot-creation-date -i app/translations/messages.pot -d app/translations
	$(BIN)/pybabel compile -d app/translations

clean:
	rm -rf $(VENV) .pytest_cache clients/node_modules
