"""bench.perf.optuna_adapter: the TPE sampler and Hyperband pruner pinned, and recorded."""

import inspect
import json
import warnings

import numpy as np
import optuna

from bench.core.budget import REPORT_MARGIN_S
from bench.perf import adapter_trials, optuna_adapter, policies
from bench.train import fitting

# Optuna takes consider_prior and does nothing with it (the prior is always on since 4.3).
IGNORED_BY_OPTUNA = {"consider_prior"}


def test_every_argument_of_the_installed_tpe_sampler_is_pinned_but_the_seed():
    arguments = set(inspect.signature(optuna.samplers.TPESampler.__init__).parameters)
    pinned = set(optuna_adapter.TPE_SETTINGS)
    # A release that adds an argument fails here until the pin says what it should be.
    assert arguments - {"self"} - IGNORED_BY_OPTUNA - pinned == {"seed"}
    assert not pinned - arguments


def test_the_sampler_is_built_with_the_pinned_settings_and_the_seed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecated arguments' warnings stay inside
        sampler = optuna_adapter.tpe_sampler(seed=42)
    parzen = sampler._parzen_estimator_parameters
    stored = {
        "n_startup_trials": sampler._n_startup_trials,
        "n_ei_candidates": sampler._n_ei_candidates,
        "multivariate": sampler._multivariate,
        "group": sampler._group,
        "constant_liar": sampler._constant_liar,
        "prior_weight": parzen.prior_weight,
        "consider_magic_clip": parzen.consider_magic_clip,
        "consider_endpoints": parzen.consider_endpoints,
        "gamma": sampler._gamma,
        "weights": parzen.weights,
        "warn_independent_sampling": sampler._warn_independent_sampling,
        "constraints_func": sampler._constraints_func,
    }
    assert stored == optuna_adapter.TPE_SETTINGS
    expected = np.random.RandomState(42).get_state()[1]
    assert np.array_equal(sampler._rng.rng.get_state()[1], expected)

    pruner = optuna_adapter.hyperband_pruner(max_epochs=6)
    kept = {
        "min_resource": pruner._min_resource,
        "reduction_factor": pruner._reduction_factor,
        "bootstrap_count": pruner._bootstrap_count,
    }
    assert kept == optuna_adapter.HYPERBAND_SETTINGS and pruner._max_resource == 6


def test_the_pinned_gamma_and_weights_follow_their_rules():
    good, flat = optuna_adapter.MAX_GOOD, optuna_adapter.FLAT_WEIGHTS
    assert [optuna_adapter.tpe_gamma(n) for n in (0, 1, 10, 11, 100)] == [0, 1, 1, 2, 10]
    assert optuna_adapter.tpe_gamma(100 * good) == good
    assert np.array_equal(optuna_adapter.tpe_weights(flat), np.ones(flat))
    weights = optuna_adapter.tpe_weights(flat + 5)
    assert len(weights) == flat + 5 and np.all(weights[-flat:] == 1.0)
    assert weights[0] == 1.0 / (flat + 5) and np.all(np.diff(weights[:5]) > 0)


def test_a_run_records_its_settings_beside_its_events(tmp_path, monkeypatch):
    monkeypatch.setattr(policies, "SPACE", "tiny")
    limits = {"train_limit": 256, "val_size": 128, "test_limit": 128}
    events = optuna_adapter.run_study(tmp_path, 5, REPORT_MARGIN_S + 60, 1, limits, 2)
    assert json.loads((tmp_path / policies.EVENTS_FILE).read_text()) == events
    assert len(events) == 2
    defaults = json.dumps(fitting.default_values("tiny"), sort_keys=True)
    assert events[0]["configuration"] == defaults  # enqueued first
    settings = json.loads((tmp_path / policies.OPTIMIZER_FILE).read_text())
    assert (settings["optimizer"], settings["version"]) == ("optuna", optuna.__version__)
    sampler, pruner = settings["sampler"], settings["pruner"]
    assert sampler["gamma"] == "bench.perf.optuna_adapter.tpe_gamma"
    plain = {k: v for k, v in optuna_adapter.TPE_SETTINGS.items() if not callable(v)}
    assert plain.items() <= sampler.items() and pruner["max_resource"] == 1
    assert adapter_trials._plain({"f": len}) == {"f": "builtins.len"}
