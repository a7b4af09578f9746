# Two set-up commands (see README): `make app` and `make test`. Both work offline on these machines.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501

$(VENV)/.app-installed: requirements.txt requirements-nodeps.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.app-installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

.PHONY: app test chromium mutation
app: $(VENV)/.app-installed
	$(PY) -m streamlit run app.py --server.headless true --browser.gatherUsageStats false --server.port $(PORT)

# The real-browser test needs Debian's chromium (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"

test: $(VENV)/.dev-installed chromium
	$(PY) -m pytest

# Mutation testing (issue 19), outside CI: hours on 2 cores. Writes mutation/REPORT.md (score per module,
# survivors with the reasons in mutation/equivalent.toml). MUTANTS narrows it, e.g. MUTANTS='optical_core.distil.ot.*'.
MUTANTS ?= $(shell grep -v '^\#' mutation/scope.txt)
mutation: $(VENV)/.dev-installed
	$(PY) -m pip install -q -r requirements-mutation.txt
	rm -rf mutants/tests
	OPTICAL_DATA_DIR=$${OPTICAL_DATA_DIR:-$(abspath ..)/shared/corpora} $(VENV)/bin/mutmut run $(foreach m,$(MUTANTS),'$(m)')
	$(PY) mutation/report.py > mutation/REPORT.md

# Only what still needs a run: mutants never checked (new, or their function changed) and survivors, against
# the current tests (mutmut copies tests/ once, so the copy is refreshed first). Minutes instead of hours.
mutation-update: $(VENV)/.dev-installed
	$(PY) -m pip install -q -r requirements-mutation.txt
	rm -rf mutants/tests
	names="$$($(PY) mutation/pending.py)"; echo "$$(echo "$$names" | grep -c .) mutants to run"; \
	  if [ -n "$$names" ]; then OPTICAL_DATA_DIR=$${OPTICAL_DATA_DIR:-$(abspath ..)/shared/corpora} \
	  $(VENV)/bin/mutmut run $$names; fi
	$(PY) mutation/report.py > mutation/REPORT.md
