"""The cnn_plus space: every structure builds and runs, every training choice compiles and fits."""

import itertools
import types

import keras
import keras_tuner as kt
import numpy as np
import pytest

import search_spaces
from bench.release import export
from bench.train import kt_compat, pipeline
from search_spaces import cnn_plus

IMAGES = 4
FIT_IMAGES = 32
FIT_EPOCHS = 2
SMALLEST = {
    "conv_blocks": 1,
    "convs_per_block": 1,
    "filters": cnn_plus.MIN_FILTERS,
    "dense_units": 0,
    "rotation_degrees": 0.0,
    "shift": 0.0,
    "zoom": 0.0,
}
AUGMENTATIONS = {
    "none": {"rotation_degrees": 0.0, "shift": 0.0, "zoom": 0.0},
    "strongest": {
        "rotation_degrees": max(cnn_plus.ROTATIONS),
        "shift": max(cnn_plus.SHIFTS),
        "zoom": max(cnn_plus.ZOOMS),
    },
}
AUGMENTATION_LAYERS = {"RandomRotation", "RandomTranslation", "RandomZoom"}


def hyperparameters(**values) -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.values = dict(values)
    return hp


def layer_kinds(model) -> list[str]:
    return [layer.__class__.__name__ for layer in model.layers]


STRUCTURES = list(
    itertools.product(
        range(1, cnn_plus.MAX_BLOCKS + 1),  # conv_blocks
        (1, 2),  # convs_per_block
        (True, False),  # batch_norm
        cnn_plus.HEADS,
        (0, min(u for u in cnn_plus.DENSE_UNITS if u)),  # no hidden dense layer, or one
        sorted(AUGMENTATIONS),
    )
)


@pytest.mark.parametrize("blocks,convs,batch_norm,head,units,augment", STRUCTURES)
def test_every_structure_builds_and_maps_images_to_probabilities(
    blocks, convs, batch_norm, head, units, augment
):
    values = dict(
        conv_blocks=blocks,
        convs_per_block=convs,
        batch_norm=batch_norm,
        head=head,
        dense_units=units,
        filters=cnn_plus.MIN_FILTERS,
        **AUGMENTATIONS[augment],
    )
    model = cnn_plus.build(hyperparameters(**values))
    kinds = layer_kinds(model)
    assert kinds.count("Conv2D") == blocks * convs
    assert kinds.count("BatchNormalization") == (blocks * convs if batch_norm else 0)
    assert kinds.count("MaxPooling2D") == blocks
    assert ("GlobalAveragePooling2D" in kinds) == (head == "gap")
    assert ("Flatten" in kinds) == (head == "flatten")
    assert kinds.count("Dense") == (2 if units else 1)
    assert (AUGMENTATION_LAYERS <= set(kinds)) == (augment == "strongest")
    filters = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert filters == [cnn_plus.MIN_FILTERS * 2**b for b in range(blocks) for _ in range(convs)]
    images = np.random.rand(IMAGES, 28, 28, 1).astype("float32")
    for training in (True, False):  # augmentation and dropout act only in training
        probs = keras.ops.convert_to_numpy(model(images, training=training))
        assert probs.shape == (IMAGES, 10)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


TRAINING_CHOICES = list(
    itertools.product(cnn_plus.OPTIMIZERS, cnn_plus.SCHEDULES, cnn_plus.SMOOTHINGS)
)
SCHEDULE_CALLBACKS = {
    "cosine": cnn_plus.WarmupCosine,
    "plateau": keras.callbacks.ReduceLROnPlateau,
    "constant": type(None),
}
RATE = 4e-3


@pytest.mark.parametrize("optimizer,schedule,smoothing", TRAINING_CHOICES)
def test_every_training_choice_compiles(optimizer, schedule, smoothing):
    hp = hyperparameters(
        **SMALLEST,
        optimizer=optimizer,
        schedule=schedule,
        label_smoothing=smoothing,
        learning_rate=RATE,
        weight_decay=1e-3,
    )
    model = cnn_plus.build(hp)
    assert isinstance(model.optimizer, keras.optimizers.AdamW) == (optimizer == "adamw")
    assert hp.is_active("weight_decay") == (optimizer == "adamw")
    if optimizer == "adamw":
        assert model.optimizer.weight_decay == pytest.approx(1e-3)
    assert isinstance(model.loss, cnn_plus.SmoothedSparseCrossentropy) == bool(smoothing)
    callback = cnn_plus.schedule_callback(hp.get("schedule"), RATE, FIT_EPOCHS)
    assert isinstance(callback, SCHEDULE_CALLBACKS[schedule])


@pytest.mark.parametrize("schedule", cnn_plus.SCHEDULES)
def test_every_schedule_trains_through_the_space_fit(schedule):
    # The schedule is a callback that fit() adds; optimizer and loss are fixed at compile
    # time, so training each schedule once (with AdamW and smoothing) covers the rest.
    hp = hyperparameters(
        **SMALLEST,
        optimizer="adamw",
        schedule=schedule,
        label_smoothing=max(cnn_plus.SMOOTHINGS),
        learning_rate=RATE,
    )
    space = search_spaces.hypermodel("cnn_plus")
    model = space.build(hp)
    rng = np.random.default_rng(0)
    x = rng.random((FIT_IMAGES, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, FIT_IMAGES)
    history = space.fit(
        hp, model, x, y, validation_data=(x, y), epochs=FIT_EPOCHS, batch_size=8, verbose=0
    )
    assert np.isfinite(history.history["loss"]).all()
    final_rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    if schedule == "cosine":  # set before the last step: annealed to its floor
        assert final_rate == pytest.approx(RATE * cnn_plus.MIN_LR_FRACTION)
    elif schedule == "constant":
        assert final_rate == pytest.approx(RATE)
    else:  # plateau: never above the start, never below its floor
        assert RATE * cnn_plus.MIN_LR_FRACTION <= final_rate <= RATE * (1 + 1e-6)


@pytest.mark.parametrize("epochs", [1, 2, 15])
def test_cosine_warms_up_then_anneals_within_any_budget(epochs):
    rate, steps = 1e-2, 100
    rates = [cnn_plus.cosine_rate(step, rate, steps, epochs) for step in range(steps * epochs)]
    warmup = min(steps, int(cnn_plus.WARMUP_FRACTION * steps * epochs))  # one epoch, or 20%
    assert rates[0] == pytest.approx(rate / warmup)
    assert rates[warmup - 1] == pytest.approx(rate)  # the peak at the warm-up's end
    assert all(a < b for a, b in itertools.pairwise(rates[:warmup]))
    assert all(a >= b for a, b in itertools.pairwise(rates[warmup - 1 :]))
    assert rates[-1] == pytest.approx(rate * cnn_plus.MIN_LR_FRACTION)  # the last step
    middle = warmup + (steps * epochs - 1 - warmup) / 2
    floor = rate * cnn_plus.MIN_LR_FRACTION
    assert cnn_plus.cosine_rate(middle, rate, steps, epochs) == pytest.approx((rate + floor) / 2)


def test_a_resumed_fit_takes_the_schedule_up_where_it_was():
    # The rate depends on the step counted from the model's epoch 0, not from fit's start.
    callback = cnn_plus.WarmupCosine(1e-2, epochs=4)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    callback.set_model(model)
    callback.set_params({"steps": 10, "epochs": 4})
    callback.on_epoch_begin(2)
    callback.on_train_batch_begin(5)
    rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    assert rate == pytest.approx(cnn_plus.cosine_rate(25, 1e-2, 10, 4))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_smoothed_loss_matches_keras_categorical_crossentropy(smoothing):
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(10), size=6).astype("float32")
    labels = rng.integers(0, 10, 6)
    ours = cnn_plus.SmoothedSparseCrossentropy(smoothing)(labels, probs)
    theirs = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)(
        keras.ops.one_hot(labels, 10), probs
    )
    assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    if smoothing == 0.0:
        plain = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
        assert float(ours) == pytest.approx(float(plain), rel=1e-5)


def test_a_shipped_model_has_plain_crossentropy_and_loads_back(tmp_path):
    model = cnn_plus.build(hyperparameters(**SMALLEST, label_smoothing=0.1))
    export.save_model_atomic(model, tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.loss == "sparse_categorical_crossentropy"
    images = np.random.rand(IMAGES, 28, 28, 1).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0))


def _trial(values: dict):
    return types.SimpleNamespace(hyperparameters=types.SimpleNamespace(values=values))


def test_the_first_trials_of_a_run_try_the_defaults_then_the_warm_start():
    oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("val_accuracy", "max"), seed=3)
    hp = kt.HyperParameters()
    cnn_plus.build(hp)
    oracle.update_space(hp)
    defaults = {p.name: p.default for p in hp.space if hp.is_active(p)}
    earlier = {**defaults, "filters": 64, "optimizer": "adamw", "weight_decay": 1e-3}
    foreign = {"filters": 999}  # a value this space does not allow: the defaults again
    kt_compat.defaults_first(oracle, [defaults, earlier, foreign])
    first = oracle._random_values()
    assert first == defaults
    assert "weight_decay" not in first  # adam by default: AdamW's decay is inactive
    oracle.trials["0"] = _trial(first)
    assert oracle._random_values() == earlier  # each configuration once, in order
    oracle.trials["1"] = _trial(earlier)
    oracle.trials["2"] = _trial({**earlier, "tuner/promoted_from": "1"})  # not a draw
    assert oracle._random_values() not in (defaults, earlier)  # random again


def test_mixed_precision_keeps_float32_probabilities():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = cnn_plus.build(hyperparameters(**SMALLEST))
        assert model.layers[1].compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def count_augmentation_calls(monkeypatch) -> list:
    """Patches the augmentation layers to note each call (eager or traced) in the list."""
    calls = []
    for kind in cnn_plus.AUGMENTATION:
        original = kind.call

        def noting(self, *args, _original=original, **kwargs):
            calls.append(self.__class__.__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(kind, "call", noting)
    return calls


def test_clean_epochs_train_the_same_weights_without_the_augmentation(monkeypatch):
    space = search_spaces.hypermodel("cnn_plus")
    hp = hyperparameters(**{**SMALLEST, **AUGMENTATIONS["strongest"]}, batch_norm=True)
    model = space.build(hp)
    plain = space.without_augmentation(model)
    assert AUGMENTATION_LAYERS <= set(layer_kinds(model))
    assert AUGMENTATION_LAYERS.isdisjoint(layer_kinds(plain))
    assert [id(w) for w in plain.weights] == [id(w) for w in model.weights]  # shared, not copied
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (FIT_IMAGES, 28, 28, 1), dtype=np.uint8)
    train = pipeline.training_set(images, rng.integers(0, 10, FIT_IMAGES), 8, seed=0)
    calls = count_augmentation_calls(monkeypatch)
    space.fit(hp, model, train, epochs=1, shuffle=False, verbose=0)
    assert set(calls) == AUGMENTATION_LAYERS  # the scheduled epochs augment
    calls.clear()
    model.optimizer.learning_rate.assign(3e-4)
    before = [w.copy() for w in model.get_weights()]
    assert export.clean_fit(space, model, train, epochs=1) == pytest.approx(3e-4)
    assert calls == []  # the clean epoch does not
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights(), strict=True))
