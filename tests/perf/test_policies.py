"""make bench-search: events, the pick by validation over time, the Optuna adapter, the table."""

import re
import types
from pathlib import Path

import optuna

from bench.core.config import SearchConfig
from bench.perf import doc_tables, optuna_adapter, policies
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
    assert got["minutes_to_test"] == {"0.98": 6.0, "0.99": 9.0}
    assert got["curve"][1] == [4.0, 0.97, 0.975]  # the pick did not change at minute 4


def picks(**tests) -> list[dict]:
    """Runs of each policy at seeds 0 and 1 with these test accuracies of their picks."""
    return [
        {"policy": policy, "seed": seed, "test_accuracy_of_pick": accuracy}
        for policy, pair in tests.items()
        for seed, accuracy in enumerate(pair)
    ]


def test_a_policy_wins_only_by_beating_the_incumbent_at_every_seed():
    def winner(runs):
        return policies.winner(runs, incumbent="random")

    assert winner(picks(random=(0.990, 0.990), asha=(0.991, 0.992))) == "asha"
    # optuna's mean is the best, but it lost at seed 1: one seed's luck decides nothing.
    lucky = picks(random=(0.990, 0.990), asha=(0.991, 0.991), optuna=(0.998, 0.989))
    assert winner(lucky) == "asha"
    assert winner(picks(random=(0.990, 0.990), optuna=(0.998, 0.989))) is None
    tied = picks(random=(0.990, 0.990), hyperband=(0.990, 0.995))
    assert winner(tied) is None
    both = picks(random=(0.990, 0.990), asha=(0.991, 0.993), hyperband=(0.992, 0.991))
    assert winner(both) == "asha"  # the better of the two on average


def test_make_search_runs_the_incumbent_and_keeps_it_unless_beaten():
    flags = policies.POLICY_FLAGS[policies.INCUMBENT]
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    tuner = re.search(r"^TUNER \?= (\S+)$", makefile, re.M).group(1)
    assert flags[:2] == ["--tuner", tuner]  # the policy the benchmark defends is make search's
    assert flags[flags.index("--promotion") + 1] == SearchConfig.promotion  # and its default
    beaten_once = picks(**{"asha-continue": (0.990, 0.990), "random": (0.995, 0.989)})
    assert policies.winner(beaten_once) is None
    shown = policies.table({"runs": [], "winner": None})
    assert shown.endswith("wins across seeds: none; asha-continue stays")


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


def test_the_search_table_has_a_row_per_policy_and_seed():
    run = {
        "policy": "asha",
        "seed": 1,
        "configurations": 40,
        "trials": 55,
        "epochs": 90,
        "best_val_accuracy": 0.9912,
        "test_accuracy_of_pick": 0.9905,
        "minutes_to_test": {"0.98": 1.5, "0.99": None},
    }
    result = {"command": "make bench-search", "measured_at": "2026-12-01T16:00:00", "runs": [run]}
    table = doc_tables.table("search", result)
    header, separator, row = table.split("\n")
    assert row.endswith("| asha | 1 | 40 | 55 | 90 | 0.9912 | 0.9905 | 1.5 | not reached |")
    assert header.count("|") == separator.count("|") == row.count("|")


def test_the_published_command_runs_the_measured_settings():
    assert policies.make_command(300, 6, policies.POLICIES) == "make bench-search"
    assert (
        policies.make_command(900, 6, ("random", "asha-continue"))
        == 'make bench-search SEARCH_BUDGET=900 SEARCH_POLICIES="random asha-continue"'
    )
    other = policies.make_command(60, 2, ("random",))
    assert other == "python -m bench.perf search --budget 60 --max-epochs 2 --policies random"
