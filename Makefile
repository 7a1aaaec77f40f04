# Thin aliases for the commands the README shows. The first target that needs Python
# creates .venv from requirements.txt; there is no other set-up step.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
JOBS ?=
# CIFAR-10 to read: the course machines keep a copy beside the clone; elsewhere data/,
# where the official files are downloaded when the machine is online.
DATA ?= $(firstword $(wildcard ../shared/data/cifar10-jpeg.tar.gz) data)
export LAB2_DATA := $(DATA)
ARGS ?=

.PHONY: venv train test test-all bench sweep book pdf code-check lab gpu-check browser poppler slurm clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# One training run (the report's best MLP unless ARGS says otherwise), e.g.
#   make train ARGS="--model cnn --dropout-rate 0 --batch-size 100 --num-epochs 5"
train: venv
	$(PY) -m lab2 train --out results/manual/$$(date +%Y%m%d-%H%M%S) $(ARGS)

# Debian's Chromium (as root), for the test that opens the built book in a real browser, and for
# `make pdf`, which prints the book with it.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

# Debian's poppler-utils (pdftotext, pdftoppm), for the test that reads the printed book.
poppler:
	@command -v pdftotext >/dev/null || { apt-get update -qq && apt-get install -y -qq poppler-utils >/dev/null; }

test: venv browser poppler
	$(PY) -m pytest $(ARGS)

# Debian's Slurm and munge (as root), for the test that sweeps through a real one-node Slurm; the
# test starts its daemons and stops them after (by hand: tests/slurm/local_slurm.sh start|stop).
slurm:
	@bash tests/slurm/local_slurm.sh install

# Everything, the slow tests on real data and the real Slurm included.
test-all: venv browser poppler slurm
	$(PY) -m pytest -m '' $(ARGS)

bench: venv
	$(PY) -m lab2 bench $(ARGS)

sweep: venv
	$(PY) -m lab2 sweep --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

# The full profile's results are committed (they need a GPU), so its book only renders them.
# `make pdf` is `make book` that also prints the book as one PDF (book/_build/pdf/) with Chromium.
book pdf: venv
	$(if $(filter full,$(PROFILE)),,$(PY) -m lab2 sweep --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS)))
	$(PY) -m lab2 book --profile $(PROFILE) $(if $(filter pdf,$@),--pdf)
pdf: browser

# Whether code changed since the profile's runs can move their numbers (small runs with each recorded commit's
# code and the checkout's); the verdict goes to results/$(PROFILE)/code-check.json, which the book shows.
code-check: venv
	$(PY) -m lab2 code-check --profile $(PROFILE)

# JupyterLab on the book: each chapter (book/*.md) opens as a notebook through jupytext and
# reads PROFILE's results; book/run.ipynb runs with its small defaults.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings
lab: venv
	mkdir -p $(LAB_SETTINGS) && cp book/_lab/overrides.json $(LAB_SETTINGS)/overrides.json
	LAB2_PROFILE=$(PROFILE) $(PY) -m jupyter lab --notebook-dir=book $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

# On a GPU machine (its own python3 with torch; no .venv): versions, capture check, bench,
# epoch times, then the full sweep until the budget, packed into $OUT as runs finish.
gpu-check:
	$(PYTHON) -m lab2 gpu-check --profile full --out $${OUT:-results/gpu-check} $(ARGS)

clean:
	rm -rf book/_build
