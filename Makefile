# Every target creates or updates .venv itself, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test lint serve bench bench-quality clean

# ffmpeg reads our captions in the tests (and decodes MP3 where libsndfile cannot); espeak-ng
# speaks a reference voice of the quality benchmark; promtool (Debian's prometheus package)
# checks and unit-tests deploy/prometheus; chromium and chromium-driver run the Studio's browser
# tests (tests/browser); wrk loads the API in benchmarks/api_throughput.py. On a Debian machine
# where we are root they are installed here, elsewhere install them with your package manager.
system-deps:
	@{ command -v ffmpeg && command -v espeak-ng && command -v promtool && \
	  command -v chromium && command -v chromedriver && command -v wrk; } >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg espeak-ng prometheus \
	    chromium chromium-driver wrk; } || \
	  echo "ffmpeg, espeak-ng, promtool, chromium, chromedriver or wrk not found: install them for the tests and benchmarks"

# axe-core (package.json, pinned in package-lock.json) for the Studio's accessibility tests
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP) system-deps
	$(BIN)/voicereel demo

# PostgreSQL and Redis are started if installed and down; with PostgreSQL reachable the database
# and API tests run on it as well as on SQLite (CI sets VOICEREEL_TEST_POSTGRES_URL itself).
PG_TEST_URL := postgresql+psycopg://postgres@127.0.0.1:5432/test
# make test runs the suite on this many processes (pytest-xdist), whole test files to each
TEST_PROCESSES ?= 2

test: $(STAMP) system-deps $(NODE_STAMP)
	bash scripts/test-services
	if [ -z "$${VOICEREEL_TEST_POSTGRES_URL-}" ] && pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; \
	  then export VOICEREEL_TEST_POSTGRES_URL=$(PG_TEST_URL); fi; \
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

serve: $(STAMP)
	$(BIN)/voicereel serve

bench: $(STAMP)
	$(BIN)/python benchmarks/job_latency.py

# Voice and caption quality (issue 3); needs the eval extra (torch, resemblyzer, pocketsphinx)
bench-quality: $(STAMP) system-deps
	$(BIN)/python -m pip install -q -e '.[dev,eval]'
	$(BIN)/python benchmarks/quality.py

clean:
	rm -rf $(VENV) data demo-output
