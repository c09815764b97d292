"""What a model costs to serve: the model as served (no augmentation, no optimizer), its size
on disk, its FLOPs per image from the layer shapes, and CPU latency and throughput."""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import keras
import numpy as np

from bench.core import data, records, swap
from search_spaces import hypermodel

# Latency at batch 1: the median of LATENCY_CALLS calls after WARMUP_CALLS (the first call
# traces the graph); throughput: THROUGHPUT_CALLS calls of THROUGHPUT_BATCH images.
WARMUP_CALLS = 3
LATENCY_CALLS = 30
THROUGHPUT_BATCH = 256
THROUGHPUT_CALLS = 3
BYTES_PER_WEIGHT = 4  # float32
KERAS_SUFFIX = ".keras"


def served_model(space: str, model: keras.Model) -> keras.Model:
    """The model as it serves: its space's augmentation taken out (weights shared), so that a
    SavedModel, a TFLite file or a size on disk holds no training-only layer."""
    return hypermodel(space).without_augmentation(model)


def uncompiled(model: keras.Model) -> keras.Model:
    """The same layers (weights shared) as a model with no optimizer, loss or metrics."""
    return keras.Model(model.inputs, model.outputs, name=model.name)


def saved_bytes(model: keras.Model) -> int:
    """Bytes of the model saved as .keras without optimizer state."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / records.MODEL_FILE
        uncompiled(model).save(path)
        return path.stat().st_size


def save_served(model: keras.Model, path: Path) -> None:
    """The served model as .keras at path (no optimizer state), written atomically."""
    records.ensure_room(path.parent, BYTES_PER_WEIGHT * model.count_params())
    save_atomic(uncompiled(model), path)


def save_atomic(model: keras.Model, path: Path) -> None:
    """model.save to path so that readers see the old file or the new one, never a part, with
    the mode every result has (records.atomic_write_bytes)."""
    # Keras insists on the .keras suffix, so the temporary file keeps it. Keras makes the file
    # itself: one made first by tempfile.mkstemp would stay 0600.
    tmp = swap.scratch_name(path, swap.TEMP, KERAS_SUFFIX)
    try:
        model.save(tmp)
        os.chmod(tmp, swap.file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise records.disk_full_or(exc, path) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    swap.sweep_after_write(path.parent)


def threads_used() -> int:
    """TensorFlow's intra-op threads in this process (0 in its settings means one per core)."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1


def flops_per_image(model: keras.Model) -> int:
    """Floating-point operations of one image's forward pass, from the layer shapes: 2 per
    multiply-add of convolutions and dense layers, 1 per output value of every other layer
    that computes (normalization, activation, pooling, averaging); nothing for reshapes,
    dropout and the input."""
    total = 0
    for layer in _layers(model):
        total += _layer_flops(layer)
    return int(total)


NO_COMPUTE = ("InputLayer", "Dropout", "Flatten", "Reshape", "SpatialDropout2D")


def _layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


def _per_image(shape) -> int:
    return math.prod(int(d) for d in shape[1:])


def _layer_flops(layer) -> int:
    kind = type(layer).__name__
    if kind in NO_COMPUTE:
        return 0
    out = _per_image(layer.output.shape)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        channels_in = int(layer.input.shape[-1]) // layer.groups
        return 2 * kh * kw * channels_in * out
    if isinstance(layer, keras.layers.Dense):
        return 2 * int(layer.input.shape[-1]) * out
    return out


def latency(model: keras.Model) -> dict:
    """Median seconds per image at batch 1 and images per second at batch THROUGHPUT_BATCH,
    through one traced call of the model (as a server runs it), with the threads used."""
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    return timed(lambda x: call(x).numpy(), threads_used())


def timed(predict, threads: int) -> dict:
    """latency() for any predict(float32 images) -> probabilities running on `threads`."""
    rng = np.random.default_rng(0)
    one = rng.random((1, *data.IMAGE_SHAPE), dtype=np.float32)
    batch = rng.random((THROUGHPUT_BATCH, *data.IMAGE_SHAPE), dtype=np.float32)
    for _ in range(WARMUP_CALLS):
        predict(one)
    predict(batch)
    seconds = []
    for _ in range(LATENCY_CALLS):
        began = time.perf_counter()
        predict(one)
        seconds.append(time.perf_counter() - began)
    began = time.perf_counter()
    for _ in range(THROUGHPUT_CALLS):
        predict(batch)
    per_second = THROUGHPUT_BATCH * THROUGHPUT_CALLS / (time.perf_counter() - began)
    return {
        "latency_ms": round(1000 * statistics.median(seconds), 4),
        "images_per_second": round(per_second, 1),
        "threads": threads,
    }


def cost(model: keras.Model) -> dict:
    """Everything above for a served model: latency_ms (batch 1), images_per_second (batch
    256), threads, bytes and flops (per image)."""
    return {**latency(model), "bytes": saved_bytes(model), "flops": flops_per_image(model)}
