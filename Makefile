# mnist-bench: every target sets up the virtualenv first if it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= cpu,dev
RESULTS ?= results
# The overnight default for 2 CPU cores: asha on cnn_plus. It screens many configurations in
# short trials and trains the best on to full length, in rungs sized from BUDGET on the machine
# at hand; the first trial is the space's defaults, which always reach full fidelity. By
# morning it retrains its top 3 and the defaults with CONFIRM_SEEDS more seeds each, so the
# report's choice comes with an interval and a significance test. It beat the random tuner's
# fully trained trials at both seeds of the side-by-side search benchmark (docs/benchmarks.md).
SPACE ?= cnn_plus
TUNER ?= asha
MAX_EPOCHS ?= 15
# asha's retrainings of its top trials; 0 for other tuners, whose trials take the full epochs.
CONFIRM_SEEDS ?= $(if $(filter asha,$(TUNER)),2,0)
# Trials, asha's promotions included: high enough that the budget ends the night first.
MAX_TRIALS ?= 1000
# The search stops starting trials when the next would not fit, and writes its report.
BUDGET ?= 7h45m
SEED ?= 0
# A fresh process every this many trials keeps a long night's memory bounded.
TRIALS_PER_PROCESS ?= 25
# The night ends with its release: the winner (by the confirmation, where it ran) retrained
# by the recipe of `make release` below into results/<run>/best/, if the budget still holds
# it (else the search names the `make release` that ships it later). RELEASE=0 ends the night
# at its report.
RELEASE ?= 1
RELEASE_FLAGS = --release --release-epochs 25 --release-clean-epochs 1
# WORKERS=N runs N worker processes under a KerasTuner chief (docs/usage.md, section 9).
WORKERS ?=
RUN ?= night-$(shell date +%Y-%m-%d)
# report/release act on RUN when given, else on the newest run under $(RESULTS).
LATEST_RUN = $(notdir $(patsubst %/config.json,%,$(firstword $(shell ls -t $(RESULTS)/*/config.json 2>/dev/null))))
TARGET_RUN = $(if $(filter command line environment,$(origin RUN)),$(RUN),$(LATEST_RUN))
NEED_RUN = test -n "$(TARGET_RUN)" || { echo "no run in $(RESULTS)/: make smoke or make search first" >&2; exit 2; }
SEARCH_FLAGS ?=
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma = ,

# Debian packages, installed where apt-get is available (as root or with password-less sudo):
# Fashion-MNIST for --dataset fashion_mnist, and for the tests a browser to open the report in.
DATA_PACKAGES ?= dataset-fashion-mnist
BROWSER_PACKAGES ?= chromium chromium-driver

.PHONY: setup system-data system-test search smoke report confirm release test test-slow bench bench-workers bench-search soak lint clean-venv

setup: system-data $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $@

system-data:
	@$(call apt_install,$(DATA_PACKAGES))

system-test:
	@$(call apt_install,$(DATA_PACKAGES) $(BROWSER_PACKAGES))

# Installs the packages of $(1) that dpkg does not know yet; says so and goes on if it cannot.
define apt_install
	if command -v apt-get >/dev/null 2>&1; then \
	  missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  if [ -n "$$missing" ]; then \
	    echo "apt-get install $$missing"; \
	    $$sudo apt-get install -y -q $$missing >/dev/null 2>&1 \
	    || { $$sudo apt-get update -q >/dev/null 2>&1 && $$sudo apt-get install -y -q $$missing >/dev/null; } \
	    || echo "could not install $$missing (see docs/usage.md: Installing by hand)" >&2; \
	  fi; \
	fi
endef

# The overnight search on full MNIST, its release, then its report.
search: system-data $(STAMP)
	$(BIN)/bench search --space $(SPACE) --tuner $(TUNER) --run $(RUN) \
		--max-epochs $(MAX_EPOCHS) --max-trials $(MAX_TRIALS) --seed $(SEED) \
		--results $(RESULTS) --budget $(BUDGET) --confirm-seeds $(CONFIRM_SEEDS) \
		--trials-per-process $(TRIALS_PER_PROCESS) $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(filter-out 0,$(RELEASE)),$(RELEASE_FLAGS)) $(SEARCH_FLAGS)

# A real search of a few minutes on a subset of MNIST, then its report.
smoke: $(STAMP)
	$(BIN)/bench search --space cnn --tuner random --run smoke-$(shell date +%Y%m%d-%H%M%S) \
		--max-trials 4 --max-epochs 2 --train-limit 5000 --val-size 2000 --test-limit 2000 \
		--seed $(SEED) --results $(RESULTS)

report: $(STAMP)
	@$(NEED_RUN)
	$(BIN)/bench report $(TARGET_RUN) --results $(RESULTS)

# Retrain the top TOP trials of RUN (default: newest) with SEEDS fresh seeds each, then report.
TOP ?= 3
SEEDS ?= 3
confirm: $(STAMP)
	@$(NEED_RUN)
	$(BIN)/bench confirm $(TARGET_RUN) --results $(RESULTS) --top $(TOP) --seeds $(SEEDS)

# A release retrains the winner on all 60,000 training images for 25 epochs, its cosine schedule
# stretched to fit, then trains one epoch more on the digits without augmentation (what that
# recipe reached, and how long it took: docs/benchmarks.md).
# EXPORT_FLAGS=--retrain keeps the trial's own epoch count; EXPORT_FLAGS= ships its weights.
EXPORT_FLAGS ?= --retrain --epochs 25 --clean-epochs 1
# ENSEMBLE=K ships one model averaging K members to results/<run>/ensemble/: by default K
# releases from K seeds (K times as long); ENSEMBLE_FROM=seeds EXPORT_FLAGS= averages the models
# `make confirm` kept instead, at once.
ENSEMBLE ?=
ENSEMBLE_FROM ?= release
# The release is set beside the space's defaults released the same way from the same seeds,
# found under $(RESULTS); REFERENCE=train trains them where none is found (once: later nights
# find them), REFERENCE=none skips the comparison.
REFERENCE ?= find
release: $(STAMP)
	@$(NEED_RUN)
	$(BIN)/bench export $(TARGET_RUN) --results $(RESULTS) $(EXPORT_FLAGS) --reference $(REFERENCE) $(if $(ENSEMBLE),--ensemble $(ENSEMBLE) --ensemble-from $(ENSEMBLE_FROM))

# The test files run in TEST_WORKERS processes, a file's tests together in one (they share
# module fixtures); most tests spend their time in Python and tracing, one core each.
TEST_WORKERS ?= 2
test: system-test $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# Trains on full MNIST: the seed baseline must reach 99.0% test accuracy (several minutes).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

# The training path vs a plain model.fit, per-trial overhead and memory (several minutes);
# `python -m bench.perf table` prints its figures as docs/benchmarks.md has them.
bench: $(STAMP)
	$(BIN)/python -m bench.perf suite --results $(RESULTS)

# 1 worker x all cores vs 2 workers x 1 thread on the same small search (a few minutes).
bench-workers: $(STAMP)
	$(BIN)/python -m bench.perf workers --results $(RESULTS)

# random, hyperband, asha (promotions retrained, and continued), Optuna (TPE + Hyperband
# pruner) and DEHB on the same space, data subset, budget and seeds, one after another:
# 6 policies x 5 seeds x SEARCH_BUDGET seconds (7.5 hours at 900). A run that finished is
# kept: the same command again runs only the rest. SEARCH_SEEDS="0 1" and
# SEARCH_POLICIES="random asha-continue" run some of them.
SEARCH_BUDGET ?= 900
SEARCH_SEEDS ?=
SEARCH_POLICIES ?=
bench-search: $(STAMP)
	$(BIN)/python -m bench.perf search --budget $(SEARCH_BUDGET) --results $(RESULTS) \
		$(if $(SEARCH_SEEDS),--seeds $(SEARCH_SEEDS)) \
		$(if $(SEARCH_POLICIES),--policies $(SEARCH_POLICIES))

# A search killed 20 times at random moments and resumed, then its chief and workers 5 times;
# checks that nothing was lost, doubled or left behind (several minutes).
soak: $(STAMP)
	$(BIN)/python -m bench.perf soak --results $(RESULTS)

lint: $(STAMP)
	$(BIN)/ruff check bench search_spaces tests

clean-venv:
	rm -rf $(VENV)
