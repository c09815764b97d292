"""Weight averaging for a release: an exponential moving average of the weights, and the
batch-norm statistics recomputed for the averaged weights."""

from __future__ import annotations

import keras

# Batches of digits whose statistics the batch-norm layers take after averaging: 100 batches
# of 128 are 12,800 digits, a forward pass of about a fifth of an epoch.
RECOMPUTE_BATCHES = 100
MIN_MOMENTUM, MAX_MOMENTUM = 0.9, 0.99999


def with_ema(model: keras.Model, momentum: float) -> keras.Model:
    """The model compiled again with its own optimizer (the same class and settings, from
    its config) keeping an exponential moving average of the weights at `momentum`. Keras'
    fit() puts the average into the weights when it ends; the optimizer's variables hold it
    meanwhile, so an epoch backup keeps it too."""
    config = {**model.optimizer.get_config(), "use_ema": True, "ema_momentum": momentum}
    optimizer = model.optimizer.__class__.from_config(config)
    model.compile(optimizer=optimizer, loss=model.loss, metrics=["accuracy"])
    return model


def ema_optimizer(rate: float, momentum: float | None) -> keras.optimizers.Optimizer:
    """A fresh Adam at `rate`, averaging the weights at `momentum` when given."""
    if momentum is None:
        return keras.optimizers.Adam(rate)
    return keras.optimizers.Adam(rate, use_ema=True, ema_momentum=momentum)


def batch_norm_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


def recompute_batch_norm(model: keras.Model, dataset, batches: int = RECOMPUTE_BATCHES) -> int:
    """Set every batch-norm layer's moving mean and variance to the average of its batch
    statistics over `batches` batches of `dataset` (images, labels), under the weights the
    model has now; returns the batches used.

    The moving statistics followed the raw weights during training, not their average: left
    as they are, inference would normalise the averaged weights' activations by another
    model's statistics. Dropout is held off meanwhile, as at inference, so that the layers
    after it see the spread they will see when serving. A cumulative mean (momentum k/(k+1)
    at batch k) weighs every batch alike, whatever momentum the space chose.
    """
    norms = batch_norm_layers(model)
    if not norms:
        return 0
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    kept = [layer.momentum for layer in norms], [layer.rate for layer in dropouts]
    for layer in dropouts:
        layer.rate = 0.0
    used = 0
    try:
        for images, _ in dataset.take(batches):
            for layer in norms:
                layer.momentum = used / (used + 1)
            model(images, training=True)
            used += 1
    finally:
        for layer, momentum in zip(norms, kept[0], strict=True):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, kept[1], strict=True):
            layer.rate = rate
    return used
