"""Weight averaging: the moving average that ships, its epoch backups, and batch-norm
statistics recomputed for the averaged weights."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from bench.train import averaging, checkpoint

FEATURES, BATCH, BATCHES = 6, 16, 4


def _model(dropout: float = 0.0) -> keras.Model:
    inputs = keras.Input((FEATURES,))
    x = keras.layers.BatchNormalization(momentum=0.99)(keras.layers.Dense(5)(inputs))
    x = keras.layers.Dropout(dropout)(x)
    x = keras.layers.BatchNormalization(momentum=0.99)(keras.layers.Dense(4)(x))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    return model


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, (BATCH * BATCHES, FEATURES)).astype(np.float32)
    return x, rng.integers(0, 3, len(x))


def _dataset():
    x, y = _data()
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)


class Weights(keras.callbacks.Callback):
    """The trainable weights after every step."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append([v.numpy().copy() for v in self.model.trainable_variables])


def test_the_weights_shipped_are_the_moving_average_of_every_step():
    keras.utils.set_random_seed(0)
    model = averaging.with_ema(_model(), 0.8)
    seen = Weights()
    model.fit(_dataset(), epochs=2, verbose=0, shuffle=False, callbacks=[seen])
    # Keras starts the average at the first step's weights, then averages at the momentum.
    average = seen.steps[0]
    for step in seen.steps[1:]:
        average = [0.8 * a + 0.2 * w for a, w in zip(average, step, strict=True)]
    final = [v.numpy() for v in model.trainable_variables]
    for got, want, raw in zip(final, average, seen.steps[-1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert not np.allclose(got, raw)  # not the last step's own weights
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(0.05)


def test_an_epoch_backup_keeps_the_average_so_a_resume_ships_the_same_weights(tmp_path):
    keras.utils.set_random_seed(0)
    first = averaging.with_ema(_model(), 0.9)
    first.fit(
        _dataset(),
        epochs=2,
        verbose=0,
        shuffle=False,
        callbacks=[checkpoint.EpochBackup(tmp_path, {})],
    )
    shipped = [v.numpy() for v in first.trainable_variables]
    keras.utils.set_random_seed(1)  # other starting weights: all must come from the backup
    again = averaging.with_ema(_model(), 0.9)
    # Both epochs are in the backup: nothing trains, and the restored average is put in place.
    again.fit(
        _dataset(),
        epochs=2,
        verbose=0,
        shuffle=False,
        callbacks=[checkpoint.EpochBackup(tmp_path, {})],
    )
    for got, want in zip(again.trainable_variables, shipped, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_batch_norm_takes_the_mean_of_its_batch_statistics_with_dropout_off():
    keras.utils.set_random_seed(0)
    model = _model(dropout=0.5)
    norms = averaging.batch_norm_layers(model)
    dropout = next(layer for layer in model.layers if isinstance(layer, keras.layers.Dropout))
    assert averaging.recompute_batch_norm(model, _dataset(), batches=3) == 3
    x, _ = _data()
    dense = model.layers[1]
    outputs = [dense(x[i * BATCH : (i + 1) * BATCH]).numpy() for i in range(3)]
    np.testing.assert_allclose(
        norms[0].moving_mean.numpy(), np.mean([o.mean(0) for o in outputs], 0), rtol=1e-5
    )
    np.testing.assert_allclose(
        norms[0].moving_variance.numpy(), np.mean([o.var(0) for o in outputs], 0), rtol=1e-4
    )
    after_dropout = norms[1].moving_mean.numpy().copy()
    averaging.recompute_batch_norm(model, _dataset(), batches=3)
    # Random dropout masks would have given the second layer other statistics.
    np.testing.assert_allclose(norms[1].moving_mean.numpy(), after_dropout, rtol=1e-6)
    assert [layer.momentum for layer in norms] == [0.99, 0.99]
    assert dropout.rate == 0.5
