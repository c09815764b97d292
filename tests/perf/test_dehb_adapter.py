"""bench.perf.dehb_adapter: a KerasTuner space as DEHB's ConfigSpace, its fidelities in epochs,
and a tiny study on a few hundred images."""

import json

import ConfigSpace as cs
import keras_tuner as kt
import pytest

from bench.core.budget import REPORT_MARGIN_S
from bench.perf import dehb_adapter, optuna_adapter, policies
from bench.train import fitting
from search_spaces import tiny
from tests.factories import fake_record

TINY_DATA = {"train_limit": 256, "val_size": 128, "test_limit": 128}
FILTER_STEP = 4  # tiny's filters: MIN_FILTERS to MAX_FILTERS in steps of 4
OPTIMIZERS = ["adam", "adamw"]
DROPOUT_STEP = 0.1


@pytest.fixture(scope="module")
def tiny_space():
    return optuna_adapter.full_space("tiny")


def test_the_tiny_space_maps_onto_configspace_one_dimension_each(tiny_space):
    mapped = dehb_adapter.config_space(tiny_space, seed=0)
    assert sorted(mapped) == sorted(hp.name for hp in tiny_space.space)
    blocks, filters = mapped["conv_blocks"], mapped["filters"]
    units, rate = mapped["dense_units"], mapped["learning_rate"]
    assert type(blocks) is cs.UniformIntegerHyperparameter
    assert (blocks.lower, blocks.upper, blocks.log) == (1, tiny.MAX_BLOCKS, False)
    assert type(filters) is cs.OrdinalHyperparameter
    assert list(filters.sequence) == list(
        range(tiny.MIN_FILTERS, tiny.MAX_FILTERS + 1, FILTER_STEP)
    )
    assert type(units) is cs.OrdinalHyperparameter and list(units.sequence) == tiny.DENSE_UNITS
    assert type(rate) is cs.UniformFloatHyperparameter
    assert (rate.lower, rate.upper, rate.log) == (tiny.MIN_LR, tiny.MAX_LR, True)
    # Back in KerasTuner: the defaults are the space's, and every value of its own type.
    default = dehb_adapter.hyperparameters(mapped.get_default_configuration(), tiny_space)
    assert default.values == fitting.default_values("tiny")
    for config in mapped.sample_configuration(8):
        values = dehb_adapter.hyperparameters(config, tiny_space).values
        assert {type(v) for k, v in values.items() if k != "learning_rate"} == {int}
        assert type(values["learning_rate"]) is float


def test_every_kind_of_hyperparameter_maps_and_an_inactive_one_is_left_out():
    space = kt.HyperParameters()
    space.Boolean("batch_norm", default=True)
    space.Choice("head", ["flatten", "gap"])
    space.Fixed("classes", 10)
    space.Float("dropout", 0.0, 0.4, step=DROPOUT_STEP, default=0.3)
    space.Int("units", 8, 512, sampling="log")
    space.Choice("optimizer", OPTIMIZERS)
    with space.conditional_scope("optimizer", ["adamw"]):
        space.Float("weight_decay", 1e-5, 1e-2, sampling="log")
    mapped = dehb_adapter.config_space(space, seed=0)
    assert type(mapped["batch_norm"]) is cs.CategoricalHyperparameter
    assert mapped["batch_norm"].default_value is True
    assert type(mapped["head"]) is cs.CategoricalHyperparameter  # strings have no order
    assert type(mapped["classes"]) is cs.Constant and mapped["classes"].value == 10
    dropout = mapped["dropout"]
    assert list(dropout.sequence) == [0.0, 0.1, 0.2, 0.3, 0.4] and dropout.default_value == 0.3
    assert mapped["units"].log and type(mapped["units"]) is cs.UniformIntegerHyperparameter
    assert "weight_decay" in mapped and not mapped.conditions  # flat: DEHB evolves it anyway
    seen = set()
    for config in mapped.sample_configuration(12):
        values = dehb_adapter.hyperparameters(config, space).values
        assert ("weight_decay" in values) == (values["optimizer"] == "adamw")
        assert type(values["batch_norm"]) is bool and values["classes"] == 10
        seen.add(values["optimizer"])
    assert seen == set(OPTIMIZERS)


def test_fidelities_are_whole_epochs_from_one_up_and_the_seed_fixes_the_draws(tmp_path, tiny_space):
    def first_asks(seed: int, count: int = 4) -> list[dict]:
        mapped = dehb_adapter.config_space(tiny_space, seed)
        dehb = dehb_adapter.make_dehb(mapped, policies.MAX_EPOCHS, seed, tmp_path)
        return [dict(dehb.ask()["config"]) for _ in range(count)]

    mapped = dehb_adapter.config_space(tiny_space, 0)
    dehb = dehb_adapter.make_dehb(mapped, policies.MAX_EPOCHS, 0, tmp_path)
    # The benchmark's 6 epochs with eta 3: asha's rungs of the published setting.
    assert [dehb_adapter.fidelity_epochs(f) for f in dehb.fidelities] == [2, policies.MAX_EPOCHS]
    assert dehb_adapter.fidelity_epochs(5 / 3) == 2
    assert first_asks(7) == first_asks(7) != first_asks(8)
    with pytest.raises(ValueError, match="max-epochs"):
        dehb_adapter.make_dehb(mapped, dehb_adapter.MIN_EPOCHS, 0, tmp_path)
    assert policies.MIN_DEHB_EPOCHS == dehb_adapter.MIN_EPOCHS + 1


def test_a_tiny_study_starts_from_the_defaults_and_screens_at_lower_fidelity(tmp_path):
    max_epochs, evaluations = 2, 3
    events = dehb_adapter.run_study(
        tmp_path, seed=11, budget_s=REPORT_MARGIN_S + 60, max_epochs=max_epochs,
        data_limits=TINY_DATA, space="tiny", eta=2, max_evaluations=evaluations,
    )  # fmt: skip
    assert json.loads((tmp_path / policies.EVENTS_FILE).read_text()) == events
    assert len(events) == evaluations
    fields = set(policies.events_of([fake_record(finished_at="2026-12-01T10:00:00+00:00")])[0])
    assert all(set(event) == fields for event in events)
    defaults = json.dumps(fitting.default_values("tiny"), sort_keys=True)
    assert (events[0]["configuration"], events[0]["epochs"]) == (defaults, max_epochs)
    assert any(event["epochs"] < max_epochs for event in events[1:])
    assert all(0.0 <= event["val_accuracy"] <= 1.0 for event in events)
    settings = json.loads((tmp_path / policies.OPTIMIZER_FILE).read_text())
    assert (settings["optimizer"], settings["eta"], settings["epochs"]) == ("dehb", 2, [1, 2])
    started = policies._seconds(events[0]["ended_at"]) - 1.0
    assert policies.summary(events, started, wall=10.0)["trials"] == evaluations
