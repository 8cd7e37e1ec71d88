# Two commands: `make run` and `make test`. Everything else here supports them.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: run test lint format check-migrations clean serve-setup

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

.env:
	$(PYTHON) scripts/write_dev_env.py

serve-setup: $(VENV)/.installed .env
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py import_prices --if-empty
	$(PY) manage.py setup_schedules

## Start the web server (gunicorn) and the django-q2 cluster; Ctrl-C stops both.
run: serve-setup
	PORT=$(PORT) $(PY) manage.py serve

## The whole test suite (SQLite unless DATABASE_URL says otherwise). Installs Debian's
## chromium for the browser tests when it is missing and apt-get may run (root).
test: $(VENV)/.installed
	@sh scripts/ensure_browser.sh
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

check-migrations: $(VENV)/.installed
	$(PY) manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) staticfiles
