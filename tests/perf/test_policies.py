"""make bench-search: events, the pick by validation over time, seeds, the Optuna adapter."""

import re
import types
from pathlib import Path

import optuna
import pytest
from keras_tuner.engine.hyperparameters import HyperParameter

from bench.core import records
from bench.core.config import (
    CONFIRM_SEED_OFFSET,
    LIMITS,
    MAX_CONFIRM_SEEDS,
    ORACLE_SEED_OFFSET,
    SearchConfig,
)
from bench.perf import optuna_adapter, policies, policy_stats
from bench.search import tuning
from tests.factories import fake_record


def event(minute: int, val: float, test: float, epochs: int = 1, config: str = "a") -> dict:
    return {
        "ended_at": f"2026-12-01T10:{minute:02d}:00+00:00",
        "epochs": epochs,
        "configuration": config,
        "val_accuracy": val,
        "test_accuracy": test,
    }


def test_the_pick_follows_validation_and_times_its_test_accuracy():
    started = policies._seconds("2026-12-01T10:00:00+00:00")
    events = [
        event(2, 0.97, 0.975),
        event(4, 0.96, 0.995, config="b"),  # the best test score, never the pick
        event(6, 0.985, 0.988, epochs=3),
        event(9, 0.991, 0.992, epochs=3, config="b"),
    ]
    got = policies.summary(events, started, wall=600.0)
    assert (got["trials"], got["configurations"], got["epochs"]) == (4, 2, 8)
    assert (got["best_val_accuracy"], got["test_accuracy_of_pick"]) == (0.991, 0.992)
    assert got["minutes_to_test"] == {"0.990": 9.0, "0.995": None}  # 0.995 was never picked
    assert got["curve"][1] == [4.0, 0.97, 0.975]  # the pick did not change at minute 4


def test_make_search_runs_the_incumbent_and_keeps_it_unless_beaten():
    flags = policies.POLICY_FLAGS[policies.INCUMBENT]
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    tuner = re.search(r"^TUNER \?= (\S+)$", makefile, re.M).group(1)
    assert flags[:2] == ["--tuner", tuner]  # the policy the benchmark defends is make search's
    assert flags[flags.index("--promotion") + 1] == SearchConfig.promotion  # and its default
    assert policy_stats.RULE.startswith(f"{policies.INCUMBENT} (what `make search` runs)")


def test_a_runs_records_become_events_in_the_order_they_ended():
    late = fake_record(trial_id="0", finished_at="2026-12-01T10:09:00+00:00")
    early = fake_record(trial_id="1", finished_at="2026-12-01T10:03:00+00:00")
    failed = fake_record(trial_id="2", status="failed")
    events = policies.events_of([late, early, failed])
    assert [e["ended_at"][-14:-9] for e in events] == ["10:03", "10:09"]
    assert events[0]["test_accuracy"] == early["test_accuracy"]


def test_the_suite_policies_run_the_same_search_but_for_the_tuners_flags():
    args = {p: policies.bench_args("r", "out", p, 1, 60, 6) for p in ("random", "asha")}
    at = args["random"].index("--tuner")
    assert args["random"][at : at + 2] == ["--tuner", "random"]
    for policy, flags in policies.POLICY_FLAGS.items():
        own = policies.bench_args("r", "out", policy, 1, 60, 6)
        assert own == [*args["random"][:at], *flags, *args["random"][at + 2 :]]
    assert "--no-warm-start" in args["asha"] and "--budget" in args["asha"]
    # Each asha policy names its promotion: the default would make the two the same search.
    promotions = {p: f[f.index("--promotion") + 1] for p, f in policies.POLICY_FLAGS.items()}
    assert promotions == {"asha": "retrain", "asha-continue": "continue"}


def test_the_adapter_finds_conditional_hyperparameters_and_asks_optuna_for_active_ones():
    space = optuna_adapter.full_space("cnn_plus")
    assert {"weight_decay", "dense_dropout"} <= {hp.name for hp in space.space}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    for _ in range(5):
        trial = study.ask()
        hp = optuna_adapter.suggest(trial, space)
        assert set(trial.params) == set(hp.values)  # only what is active was suggested
        assert ("weight_decay" in hp.values) == (hp.values["optimizer"] == "adamw")
        study.tell(trial, 0.5)


def test_the_study_tries_the_spaces_defaults_first():
    space = optuna_adapter.full_space("cnn_plus")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    defaults = optuna_adapter.start_from_defaults(study, "cnn_plus")
    first = optuna_adapter.suggest(study.ask(), space)
    assert first.values == defaults
    study.tell(0, 0.5)
    assert optuna_adapter.suggest(study.ask(), space).values != defaults  # then TPE draws


def test_the_pruner_stops_training_when_optuna_says_so():
    said = {"prune": False}
    reported = []
    trial = types.SimpleNamespace(
        report=lambda value, step: reported.append((step, value)),
        should_prune=lambda: said["prune"],
    )
    callback = optuna_adapter.PruneByOptuna(trial)
    callback.set_model(types.SimpleNamespace(stop_training=False))
    callback.on_epoch_end(0, {"val_accuracy": 0.9})
    said["prune"] = True
    callback.on_epoch_end(1, {"val_accuracy": 0.8})
    assert reported == [(1, 0.9), (2, 0.8)]
    assert callback.pruned and callback.model.stop_training


def test_an_outside_optimizers_run_is_its_child_command_and_its_row_holds_its_settings(
    tmp_path, monkeypatch
):
    seen = []

    def child(command):
        seen.append(command)
        run_dir = tmp_path / policies.run_name("dehb", 2)
        events = [event(1, 0.98, 0.97, epochs=2), event(3, 0.99, 0.985, epochs=6, config="b")]
        records.atomic_write_json(run_dir / policies.EVENTS_FILE, events)
        records.atomic_write_json(run_dir / policies.OPTIMIZER_FILE, {"eta": 3})

    monkeypatch.setattr(policies, "run_child", child)
    row = policies.run_policy(tmp_path, "dehb", 2, budget=60, epochs=6)
    (command,) = seen
    assert command[command.index("-m") + 1 :][:3] == ["bench.perf", "dehb-child", "--run"]
    assert command[command.index("--seed") + 1] == str(policies.search_seed(2))
    assert (row["policy"], row["optimizer"]) == ("dehb", {"eta": 3})
    assert (row["trials"], row["epochs"]) == (2, 8)
    assert policies.finished_run(tmp_path, "dehb", 2, policies.settings(2, 60, 6)) == row


def test_the_published_command_runs_the_measured_settings():
    assert policies.make_command(900, 6, policies.POLICIES, range(5)) == "make bench-search"
    assert (
        policies.make_command(300, 6, ("random", "asha-continue"), (0, 1))
        == 'make bench-search SEARCH_BUDGET=300 SEARCH_SEEDS="0 1" '
        'SEARCH_POLICIES="random asha-continue"'
    )
    other = policies.make_command(60, 2, ("random",), (3,))
    assert (
        other
        == "python -m bench.perf search --budget 60 --max-epochs 2 --seeds 3 --policies random"
    )


def test_benchmark_seeds_own_disjoint_blocks_of_search_seeds_in_range():
    seeds = [policies.search_seed(k) for k in (0, 1, policies.MAX_BENCH_SEED)]
    assert len(set(seeds)) == 3
    # All a run seeds from its search seed: the oracle's draws and the confirmation seeds.
    room = ORACLE_SEED_OFFSET + CONFIRM_SEED_OFFSET + MAX_CONFIRM_SEEDS
    assert room < policies.SEED_SPACING == seeds[1] - seeds[0]
    assert seeds[-1] + policies.SEED_SPACING - 1 <= LIMITS["seed"][1]  # `bench search --seed`
    with pytest.raises(ValueError, match="outside"):
        policies.search_seed(policies.MAX_BENCH_SEED + 1)


def first_draws(tmp_path, seed: int, count: int = 4) -> tuple[list[dict], set[int]]:
    """The first configurations `bench search --tuner random --seed SEED` draws on the tiny
    space, after the space's defaults, and the seed states they were drawn from."""
    config = SearchConfig(
        run=f"draws-{seed}", space="tiny", tuner="random", seed=seed, results=str(tmp_path)
    ).validate()
    oracle = tuning.make_tuner(config).oracle
    states, sample = [], HyperParameter.random_sample

    def recorded(hp, state=None):
        states.append(state)
        return sample(hp, state)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HyperParameter, "random_sample", recorded)
        trials = [oracle.create_trial(f"worker{i}") for i in range(count + 1)]
    return [t.hyperparameters.values for t in trials[1:]], set(states)


def test_two_benchmark_seeds_draw_different_configurations_from_unshared_random_numbers(tmp_path):
    draws = {k: first_draws(tmp_path, policies.search_seed(k)) for k in (0, 1)}
    (first, first_states), (second, second_states) = draws[0], draws[1]
    assert all(a != b for a, b in zip(first, second, strict=True))
    assert not first_states & second_states
    # Seeds 0 and 1 as they were: all but one of the random numbers are the same, shifted.
    (_, raw0), (_, raw1) = first_draws(tmp_path, 0), first_draws(tmp_path, 1)
    assert len(raw0 & raw1) == len(raw0) - 1
