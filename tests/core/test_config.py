"""bench.core.config: run names, validation, space defaults, identity and JSON."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, fields
from pathlib import Path

import pytest

from bench.core import data
from bench.core.config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_EPOCHS,
    IDENTITY_FIELDS,
    LIMITS,
    MAX_NAME,
    TUNER_NAMES,
    ConfigError,
    SearchConfig,
    check_run_name,
    with_space_defaults,
)

# Settings of one invocation: a resumed run may change them.
NON_IDENTITY_FIELDS = (
    "run",
    "results",
    "data_dir",
    "verbose",
    "budget",
    "max_failures",
    "trials_per_process",
    "workers",
    "threads",
    "tensorboard",  # logs can be switched on when a run resumes
    "confirm_top",  # what the night retrains after its search, not what it searches
    "confirm_seeds",
    "promotion",  # asha's oracle keeps the one the run was created with
    "release",  # what the night ships after its search, not what it searches
    "release_epochs",
    "release_clean_epochs",
    "release_ema",
    "release_elastic",
    "release_set",
)


# -- run names -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "night-2026-11-24", "x_y.z", "A1", "..x", "run.2"])
def test_good_run_names_pass(name):
    assert check_run_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "../x", "a/b", "..", ".", "ü", "a\\b", "a\tb", None])
def test_bad_run_names_fail(name):
    with pytest.raises(ConfigError, match="run name"):
        check_run_name(name)


def test_run_name_with_trailing_newline_fails():
    with pytest.raises(ConfigError, match="run name"):
        check_run_name("a\n")


def test_a_run_name_that_reads_as_a_flag_fails():
    # argparse takes --run=-x, but the resume command a run prints (--run -x) would not parse.
    with pytest.raises(ConfigError, match=r"run name '-x' may not start with '-'"):
        check_run_name("-x")


def test_run_names_leave_room_for_the_fresh_suffix():
    longest = "r" * MAX_NAME
    assert check_run_name(longest) == longest
    assert len(f"{longest}.old-20261201-120000") < 255  # a file name's limit
    with pytest.raises(ConfigError, match=f"run name is {MAX_NAME + 1} characters long; at most"):
        check_run_name("r" * (MAX_NAME + 1))


def test_bad_run_name_message_quotes_the_name():
    with pytest.raises(ConfigError, match=r"run name 'a b' may hold only"):
        check_run_name("a b")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# -- validate ------------------------------------------------------------------------------


def test_defaults_validate_and_validate_returns_self():
    config = SearchConfig(run="r")
    assert config.validate() is config
    assert config.tuner in TUNER_NAMES
    assert config.max_epochs == DEFAULT_MAX_EPOCHS
    assert config.batch_size == DEFAULT_BATCH_SIZE
    assert config.val_size == data.DEFAULT_VAL_SIZE


@pytest.mark.parametrize("tuner", TUNER_NAMES)
def test_every_known_tuner_validates(tuner):
    SearchConfig(run="r", tuner=tuner).validate()


@pytest.mark.parametrize("tuner", ["bogus", "Random", "", "hyper-band"])
def test_unknown_tuner_fails(tuner):
    with pytest.raises(ConfigError, match=rf"unknown tuner '{tuner}'; known: random, grid"):
        SearchConfig(run="r", tuner=tuner).validate()


def test_an_unknown_promotion_fails():
    SearchConfig(run="r", tuner="asha", promotion="continue").validate()
    with pytest.raises(ConfigError, match=r"unknown --promotion 'warm'; known: retrain, continue"):
        SearchConfig(run="r", promotion="warm").validate()


@pytest.mark.parametrize(
    "field",
    ["max_trials", "max_epochs", "batch_size", "train_limit", "test_limit", "workers", "threads"],
)
@pytest.mark.parametrize("value", [0, -1, -128])
def test_non_positive_counts_fail(field, value):
    flag = "--" + field.replace("_", "-")
    highest = LIMITS[field][1]
    said = rf"^{flag} must be at least 1, not {value} \(1 to {highest}\)$"
    with pytest.raises(ConfigError, match=said):
        SearchConfig(run="r", **{field: value}).validate()


@pytest.mark.parametrize("field", ["max_trials", "train_limit", "test_limit", "workers", "threads"])
def test_optional_counts_may_be_none_or_one(field):
    SearchConfig(run="r", **{field: None}).validate()
    SearchConfig(run="r", **{field: 1}).validate()


@pytest.mark.parametrize("seed", [-1, -1000])
def test_negative_seed_fails(seed):
    with pytest.raises(ConfigError, match=rf"--seed must be 0 or more, not {seed}"):
        SearchConfig(run="r", seed=seed).validate()


def test_seed_zero_validates():
    SearchConfig(run="r", seed=0).validate()


@pytest.mark.parametrize(
    "kwargs, said",
    [({"patience": 0}, "--patience must be at least 1"), ({"hyperband_factor": 1}, "at least 2")],
)
def test_bad_patience_or_hyperband_factor_fails(kwargs, said):
    with pytest.raises(ConfigError, match=said):
        SearchConfig(run="r", **kwargs).validate()


@pytest.mark.parametrize("run", ["", "../escape", "a/b"])
def test_validate_checks_the_run_name(run):
    with pytest.raises(ConfigError, match="run name"):
        SearchConfig(run=run).validate()


def test_config_is_frozen_and_run_dir_is_under_results():
    config = SearchConfig(run="r1", results="out")
    assert config.run_dir == Path("out") / "r1"
    with pytest.raises(FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]


# -- with_space_defaults -------------------------------------------------------------------


SPACE_DEFAULTS = {"max_epochs": 10, "batch_size": 200}


def test_space_defaults_apply_to_fields_not_given():
    config = SearchConfig(run="r", batch_size=64)
    updated = with_space_defaults(config, SPACE_DEFAULTS, given={"batch_size"})
    assert updated.batch_size == 64  # the user's value stays
    assert updated.max_epochs == 10  # the space's default fills in
    assert config.max_epochs == DEFAULT_MAX_EPOCHS  # the original is untouched


def test_space_defaults_apply_to_everything_when_nothing_is_given():
    updated = with_space_defaults(SearchConfig(run="r"), SPACE_DEFAULTS, given=set())
    assert (updated.max_epochs, updated.batch_size) == (10, 200)


def test_space_defaults_do_not_override_anything_given():
    config = SearchConfig(run="r", max_epochs=3, batch_size=32)
    updated = with_space_defaults(config, SPACE_DEFAULTS, given={"max_epochs", "batch_size"})
    assert updated == config


def test_space_defaults_ignore_unknown_keys():
    config = SearchConfig(run="r")
    updated = with_space_defaults(config, {"learning_rate": 0.1, "epochs": 5}, given=set())
    assert updated == config


def test_space_defaults_keep_other_fields():
    config = SearchConfig(run="keep", tuner="random", seed=7, results="out")
    updated = with_space_defaults(config, SPACE_DEFAULTS, given=set())
    assert (updated.run, updated.tuner, updated.seed, updated.results) == (
        "keep",
        "random",
        7,
        "out",
    )


# -- identity and JSON ---------------------------------------------------------------------


def test_identity_holds_exactly_the_identity_fields():
    identity = SearchConfig(run="r").identity()
    assert set(identity) == set(IDENTITY_FIELDS)
    for name in ("results", "data_dir", "verbose"):
        assert name not in identity
    assert set(IDENTITY_FIELDS) | set(NON_IDENTITY_FIELDS) == {f.name for f in fields(SearchConfig)}


def test_identity_ignores_where_and_how_loudly():
    a = SearchConfig(run="r")
    b = SearchConfig(run="r", results="elsewhere", data_dir="/tmp/mnist", verbose=2)
    assert a.identity() == b.identity()


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 1},
        {"tuner": "random"},
        {"max_epochs": 2},
        {"val_size": 5000},
        {"train_limit": 100},
        {"hyperband_factor": 4},
    ],
)
def test_identity_changes_with_what_a_run_computes(change):
    assert SearchConfig(run="r").identity() != SearchConfig(run="r", **change).identity()


@pytest.mark.parametrize(
    "config",
    [
        SearchConfig(run="r"),
        SearchConfig(
            run="night-2026-11-24",
            space="seed",
            tuner="bayesian",
            max_trials=5,
            max_epochs=2,
            batch_size=64,
            patience=1,
            seed=42,
            val_size=6000,
            train_limit=1000,
            test_limit=500,
            hyperband_factor=2,
            results="out",
            data_dir="/data/mnist",
            verbose=2,
        ),
    ],
    ids=["defaults", "everything-set"],
)
def test_to_json_round_trips(config):
    text = json.dumps(config.to_json())
    loaded = json.loads(text)
    assert loaded == config.to_json()
    assert set(loaded) == {f.name for f in fields(SearchConfig)}
    assert SearchConfig(**loaded) == config


def test_a_release_recipe_names_the_flag_that_does_not_fit():
    from bench.core.config import AS_TRAINED, Recipe
    from bench.errors import ExportError

    assert AS_TRAINED.validate() == Recipe()
    assert Recipe(retrain=True, epochs=25, seed=3, clean_epochs=1).validate().epochs == 25
    for recipe, said in [
        (Recipe(seed=1), "--seed needs --retrain"),
        (Recipe(retrain=True, epochs=0), "--epochs must be at least 1"),
        (Recipe(retrain=True, clean_epochs=-2), "--clean-epochs must be 0 or more, not -2"),
    ]:
        with pytest.raises(ExportError, match=said):
            recipe.validate()


# -- ranges ----------------------------------------------------------------------------------


def test_a_number_past_its_range_names_the_flag_the_value_and_the_range():
    from bench.core.config import MAX_SEED, check_range

    assert check_range("--seed", MAX_SEED, 0, MAX_SEED) == MAX_SEED
    with pytest.raises(ConfigError, match=r"^--seed must be at most 4294967295, not 4294967296 "):
        check_range("--seed", MAX_SEED + 1, 0, MAX_SEED)
    with pytest.raises(ConfigError, match=r"^--seed must be 0 or more, not -1 \(0 to 9\)$"):
        check_range("--seed", -1, 0, 9)
    with pytest.raises(ConfigError, match="must be a whole number, not True"):
        check_range("--seed", True, 0, 9)


def test_the_argparse_type_of_a_number_refuses_what_is_past_its_range():
    import argparse

    from bench.core.config import bounded_int

    parse = bounded_int(1, 100)
    assert parse("100") == 100 and parse.limits == (1, 100)
    for text, said in [("101", "at most 100, not 101"), ("0", "at least 1"), ("1e9", "whole")]:
        with pytest.raises(argparse.ArgumentTypeError, match=said):
            parse(text)


@pytest.mark.parametrize(
    "text, seconds", [("1m30s", 90), ("7h45m", 27900), ("2h", 7200), ("45s", 45)]
)
def test_durations_read_back_as_they_are_written(text, seconds):
    from bench.core.config import duration_text, parse_duration

    assert parse_duration(text) == seconds
    assert duration_text(seconds) == text


def test_a_budget_past_the_longest_is_refused():
    from bench.core.config import MAX_BUDGET_S, parse_duration

    assert parse_duration("720h") == MAX_BUDGET_S
    with pytest.raises(ConfigError, match="--budget 721h is longer than the most a run may take"):
        parse_duration("721h")
    with pytest.raises(ConfigError, match="--budget 99999999999999h is longer"):
        parse_duration("99999999999999h")
    with pytest.raises(ConfigError, match="--budget 720h1s is longer"):
        SearchConfig(run="r", budget=float(MAX_BUDGET_S + 1)).validate()
