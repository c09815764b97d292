"""A KerasTuner search space driven by Optuna (TPE sampler, Hyperband pruner): the tool people
would pick instead, for `make bench-search` only.

Optuna samples define-by-run; a KerasTuner space declares its hyperparameters as it builds,
some only under a condition (AdamW's weight decay). full_space() builds the space with each
value of each choice until no new hyperparameter appears, and suggest() walks that space in
order, asking Optuna for each hyperparameter that is active under the values chosen so far.
"""

from __future__ import annotations

import keras
import keras_tuner as kt

from bench.train import kt_compat
from search_spaces import hypermodel

MAX_DISCOVERY_BUILDS = 200  # a space whose conditions never settle is a bug in the space


def full_space(space: str) -> kt.HyperParameters:
    """Every hyperparameter the space can declare, with its conditions."""
    model = hypermodel(space)
    known = kt.HyperParameters()
    model.build(known)
    tried: set[tuple] = set()
    for _ in range(MAX_DISCOVERY_BUILDS):
        todo = [
            (hp.name, v) for hp in known.space for v in _choices(hp) if (hp.name, v) not in tried
        ]
        if not todo:
            return known
        name, value = todo[0]
        tried.add((name, value))
        probe = kt.HyperParameters()
        probe.values = {name: value}
        keras.backend.clear_session()
        model.build(probe)
        known.merge([hp for hp in probe.space if hp.name not in known])
    raise RuntimeError(f"space {space!r} kept declaring new hyperparameters")


def start_from_defaults(study, space: str) -> dict:
    """Queue the space's defaults as the study's first trial, as the suite's tuners try them
    first (Optuna's enqueue_trial, what its users do with a known-good configuration)."""
    defaults = kt.HyperParameters()
    hypermodel(space).build(defaults)
    keras.backend.clear_session()
    study.enqueue_trial(dict(defaults.values))
    return dict(defaults.values)


def _choices(hp) -> list:
    from keras_tuner.engine import hyperparameters as kinds

    if isinstance(hp, kinds.Choice):
        return list(hp.values)
    if isinstance(hp, kinds.Boolean):
        return [False, True]
    return []


def suggest(trial, space: kt.HyperParameters) -> kt.HyperParameters:
    """KerasTuner hyperparameters whose active values Optuna's trial suggested."""
    return kt_compat.choose_values(space, lambda hp: _suggest_one(trial, hp))


def _suggest_one(trial, hp):
    from keras_tuner.engine import hyperparameters as kinds

    if isinstance(hp, kinds.Choice):
        return trial.suggest_categorical(hp.name, list(hp.values))
    if isinstance(hp, kinds.Boolean):
        return trial.suggest_categorical(hp.name, [False, True])
    log = hp.sampling == "log"
    if isinstance(hp, kinds.Int):
        step = None if log else hp.step
        return trial.suggest_int(hp.name, hp.min_value, hp.max_value, step=step or 1, log=log)
    if isinstance(hp, kinds.Float):
        step = None if log else hp.step
        return trial.suggest_float(hp.name, hp.min_value, hp.max_value, step=step, log=log)
    return hp.default  # Fixed


class PruneByOptuna(keras.callbacks.Callback):
    """Reports each epoch's validation accuracy to Optuna's trial and stops training when its
    pruner says so (pruned stays True)."""

    def __init__(self, trial, monitor: str = "val_accuracy"):
        super().__init__()
        self.trial, self.monitor, self.pruned = trial, monitor, False

    def on_epoch_end(self, epoch, logs=None):
        self.trial.report(float((logs or {})[self.monitor]), step=epoch + 1)
        if self.trial.should_prune():
            self.pruned = True
            self.model.stop_training = True


def run_study(run_dir, seed: int, budget_s: float, max_epochs: int, data_limits: dict) -> list:
    """Optuna's TPE sampler and Hyperband pruner over `space` on the benchmark's data, for
    budget_s seconds; every trial (pruned ones too) an event as bench.perf.policies reads them,
    written to run_dir/events.json as it goes."""
    import json
    from pathlib import Path

    import optuna

    from bench.core import data, records
    from bench.core.budget import REPORT_MARGIN_S, Budget, BudgetSpent
    from bench.perf import policies
    from bench.search.recorder import BudgetCallback
    from bench.train import fitting, pipeline

    kt_compat.install()
    run_dir = Path(run_dir)
    splits = data.load(**data_limits)
    train = pipeline.training_set(splits.train_images, splits.y_train, 128, seed)
    val = fitting.evaluation_set(splits.val_images, splits.y_val)
    test = fitting.evaluation_set(splits.test_images, splits.y_test)
    space, model_space = full_space(policies.SPACE), hypermodel(policies.SPACE)
    # The suite's own search keeps the same margin (for its report): the same training time.
    budget, events = Budget(budget_s, margin=REPORT_MARGIN_S), []

    def objective(trial):
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        hp = suggest(trial, space)
        model = model_space.build(hp)
        prune = PruneByOptuna(trial)
        best = keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=max_epochs, restore_best_weights=True
        )
        history = model_space.fit(
            hp,
            model,
            train,
            validation_data=val,
            epochs=max_epochs,
            shuffle=False,
            verbose=0,
            callbacks=[prune, best, BudgetCallback(budget)],
        ).history
        _, test_accuracy, _ = fitting.evaluate(model, test, splits.y_test)
        events.append(
            {
                "ended_at": records.utc_now(),
                "epochs": len(history["val_accuracy"]),
                "configuration": json.dumps(hp.values, sort_keys=True),
                "val_accuracy": max(history["val_accuracy"]),
                "test_accuracy": test_accuracy,
            }
        )
        records.atomic_write_json(run_dir / policies.EVENTS_FILE, events)
        if prune.pruned:
            raise optuna.TrialPruned()
        return max(history["val_accuracy"])

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs),
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start_from_defaults(study, policies.SPACE)
    try:
        study.optimize(objective, timeout=budget_s - REPORT_MARGIN_S, gc_after_trial=True)
    except BudgetSpent:
        pass  # the trial the budget cut counts for nothing, as in the suite's own search
    records.atomic_write_json(run_dir / policies.EVENTS_FILE, events)
    return events
