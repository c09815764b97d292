"""ASHA: rungs, asynchronous promotion of each rung's top 1/factor, the defaults promoted to
full fidelity, state that survives a resume, and a real search with --tuner asha."""

import inspect
import io

import keras_tuner as kt
import pytest

from bench.core import records
from bench.core.config import SearchConfig
from bench.search import asha, tuning
from bench.train import kt_compat

FACTOR = 3


@pytest.mark.parametrize(
    "max_epochs, factor, rungs",
    [(15, 3, [1, 2, 5, 15]), (9, 3, [1, 3, 9]), (1, 3, [1]), (8, 2, [1, 2, 4, 8])],
)
def test_rungs_divide_the_full_budget_by_the_factor(max_epochs, factor, rungs):
    assert asha.rung_epochs(max_epochs, factor) == rungs


def build(hp):
    hp.Float("x", 0.0, 1.0, default=0.5)
    return None


def oracle_of(tmp_path, max_epochs=9, max_trials=None, promotion=asha.RETRAIN):
    tuner = asha.ASHA(
        build,
        objective=kt.Objective("val_accuracy", "max"),
        max_epochs=max_epochs,
        factor=FACTOR,
        promotion=promotion,
        max_trials=max_trials,
        seed=1,
        directory=str(tmp_path),
        project_name="tuner",
    )
    kt_compat.defaults_first(tuner.oracle)
    return tuner.oracle


def finish(oracle, trial, score: float) -> None:
    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def state(trial) -> dict:
    return {k: v for k, v in trial.hyperparameters.values.items() if k.startswith("tuner/")}


def test_promotions_take_each_rungs_top_third_and_always_the_defaults(tmp_path):
    oracle = oracle_of(tmp_path)
    first = oracle.create_trial("w")
    assert first.hyperparameters.values["x"] == 0.5  # the space's defaults first
    assert state(first) == {
        "tuner/epochs": 1,
        "tuner/initial_epoch": 0,
        "tuner/round": 0,
        "tuner/lineage": first.trial_id,
    }
    finish(oracle, first, 0.5)
    # The defaults go on to the next rung whatever their rank...
    promoted = oracle.create_trial("w")
    assert state(promoted)["tuner/promoted_from"] == first.trial_id
    assert state(promoted)["tuner/epochs"] == 3 and state(promoted)["tuner/initial_epoch"] == 0
    # ...the others only from the top third of their rung, asynchronously: no rung waits for
    # the promoted trial, still running, to end.
    others = [oracle.create_trial(worker) for worker in ("w1", "w2")]
    assert [state(t)["tuner/round"] for t in others] == [0, 0]
    finish(oracle, others[0], 0.9)
    finish(oracle, others[1], 0.7)
    best = oracle.create_trial("w3")  # three finished at rung 0: the best third is one trial
    assert state(best)["tuner/promoted_from"] == others[0].trial_id
    assert state(best)["tuner/round"] == 1
    finish(oracle, best, 0.95)
    assert state(oracle.create_trial("w4"))["tuner/round"] == 0  # nothing else is due


def test_the_defaults_reach_the_top_rung(tmp_path):
    oracle = oracle_of(tmp_path)
    lineage = None
    for _ in range(3):
        trial = oracle.create_trial("w")
        lineage = lineage or trial.trial_id
        assert state(trial)["tuner/lineage"] == lineage
        finish(oracle, trial, 0.1)  # the worst score each time
    assert state(trial)["tuner/epochs"] == 9


def test_a_promotion_longer_than_the_time_left_waits_and_a_screen_runs_instead(tmp_path):
    oracle = oracle_of(tmp_path)
    finish(oracle, oracle.create_trial("w"), 0.5)
    oracle.ceiling = 1  # the budget holds one epoch more, not the next rung's three
    screen = oracle.create_trial("w")
    assert state(screen)["tuner/round"] == 0 and "tuner/promoted_from" not in state(screen)
    oracle.ceiling = None  # time again (a resume with a fresh budget): the promotion is due
    assert state(oracle.create_trial("w2"))["tuner/round"] == 1


def test_a_random_draw_never_repeats_a_configuration_of_another_rung(tmp_path):
    oracle = oracle_of(tmp_path)
    hashes = {
        oracle._compute_values_hash({"x": 0.3, "tuner/epochs": epochs, "tuner/round": rung})
        for epochs, rung in ((1, 0), (3, 1))
    }
    assert hashes == {oracle._compute_values_hash({"x": 0.3})}


def test_rungs_and_promotions_survive_a_reload(tmp_path):
    oracle = oracle_of(tmp_path, max_epochs=15, promotion=asha.CONTINUE)
    finish(oracle, oracle.create_trial("w"), 0.5)
    oracle.create_trial("w")  # the promotion of the defaults
    again = oracle_of(tmp_path, max_epochs=9)  # other settings now: the saved state wins
    again.reload()
    assert again.rungs == [1, 2, 5, 15] and again.promotion == asha.CONTINUE
    assert again.promoted == oracle.promoted and again.favoured == oracle.favoured


def test_a_continued_promotion_starts_from_its_parent_and_costs_only_the_added_epochs(tmp_path):
    oracle = oracle_of(tmp_path, promotion=asha.CONTINUE)
    first = oracle.create_trial("w")
    finish(oracle, first, 0.5)
    promoted = oracle.create_trial("w")
    assert state(promoted)["tuner/trial_id"] == first.trial_id
    assert state(promoted)["tuner/epochs"] == 3 and state(promoted)["tuner/trained_epochs"] == 1
    assert asha.trial_epochs(promoted.hyperparameters.values) == 2
    assert [oracle.cost(rung) for rung in range(3)] == [1, 2, 6]
    # The budget holds two epochs: enough to continue to the next rung, not to retrain it.
    finish(oracle, promoted, 0.6)
    oracle.ceiling = 2
    assert state(oracle.create_trial("w"))["tuner/round"] == 0  # 9 - 3 = 6 epochs do not fit
    retraining = oracle_of(tmp_path / "r")
    finish(retraining, retraining.create_trial("w"), 0.5)
    retraining.ceiling = 2
    assert state(retraining.create_trial("w"))["tuner/round"] == 0  # 3 epochs afresh do not


def test_max_trials_counts_promotions(tmp_path):
    oracle = oracle_of(tmp_path, max_trials=2)
    finish(oracle, oracle.create_trial("w"), 0.5)
    finish(oracle, oracle.create_trial("w"), 0.5)
    assert oracle.create_trial("w").status == "STOPPED"


def tiny_search(tmp_path, promotion=asha.RETRAIN) -> SearchConfig:
    """Five asha trials of the tiny space on rungs of 1 and 3 epochs, run to the end."""
    config = SearchConfig(
        run="a",
        space="tiny",
        tuner="asha",
        promotion=promotion,
        max_trials=5,
        max_epochs=3,
        train_limit=256,
        val_size=128,
        test_limit=128,
        results=str(tmp_path),
    ).validate()
    assert tuning.run_search(config, stream=io.StringIO()) is True
    return config


def test_a_search_with_asha_records_rungs_and_trains_each_for_its_budget(tmp_path):
    config = tiny_search(tmp_path)
    done = records.load_records(config.run_dir)
    assert len(done) == 5 and {r["status"] for r in done} == {"completed"}
    for record in done:
        epochs = record["tuner_state"]["epochs"]
        assert record["epochs_run"] == epochs and epochs in (1, 3)
    promoted = [r for r in done if r["tuner_state"]["round"] == 1]
    assert promoted and all("promoted_from" in r["tuner_state"] for r in promoted)
    first = done[0]
    assert promoted[0]["tuner_state"]["promoted_from"] == first["trial_id"]  # the defaults
    assert promoted[0]["hyperparameters"] == first["hyperparameters"]


def test_a_search_that_continues_promotions_trains_on_from_the_parents_weights(
    tmp_path, monkeypatch
):
    loaded = []
    load = asha.fitting.load_checkpoint

    def noting(model, path):
        if inspect.stack()[1].function == "_build_hypermodel":  # not a best-epoch reload
            loaded.append(str(path))
        return load(model, path)

    monkeypatch.setattr(asha.fitting, "load_checkpoint", noting)
    config = tiny_search(tmp_path, asha.CONTINUE)
    done = records.load_records(config.run_dir)
    first, promoted = done[0], [r for r in done if r["tuner_state"]["round"] == 1]
    assert promoted and {r["status"] for r in done} == {"completed"}
    continued = promoted[0]
    assert continued["tuner_state"]["trial_id"] == first["trial_id"]
    assert continued["epochs_run"] == 2 and continued["tuner_state"]["epochs"] == 3
    assert continued["best_epoch"] in (2, 3)  # counted from the configuration's first epoch
    tuner = tuning.make_tuner(config)
    parents = [kt_compat.checkpoint_of(tuner, r["tuner_state"]["trial_id"]) for r in promoted]
    assert loaded == [str(path) for path in parents]  # each continuation from its parent
