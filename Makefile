# Every target creates or updates .venv itself, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps demo test lint serve bench clean

# ffmpeg reads our captions in the tests (and decodes MP3 where libsndfile cannot); on a Debian
# machine where we are root it is installed here, elsewhere install it with your package manager.
system-deps:
	@command -v ffmpeg >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; } || \
	  echo "ffmpeg not found: install it to run the caption conversion tests"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/voicereel demo

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

serve: $(STAMP)
	$(BIN)/voicereel serve

bench: $(STAMP)
	$(BIN)/python benchmarks/job_latency.py

clean:
	rm -rf $(VENV) data demo-output
