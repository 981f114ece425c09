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

.PHONY: install run test lint check-migrations messages clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

## Start the app on the embedded default: SQLite under instance/, push to the
## log, scheduler in process, demo data loaded; print how to reach it.
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask seed
	@$(BIN)/python -m app.devserver $(HOST) $(PORT)
	SCHEDULER_EMBEDDED=$${SCHEDULER_EMBEDDED:-1} $(BIN)/flask run --host $(HOST) --port $(PORT)

## Run the test suite (SQLite; set TEST_DATABASE_URL for PostgreSQL).
test: install
	$(BIN)/pytest $(PYTEST_ARGS)

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
	rm -rf $(VENV) .pytest_cache
