"""Keep one process's memory flat over a long search: free what TensorFlow keeps of each fit.

Keras' TensorFlow optimizer sums the gradients over replicas with
`ReplicaContext.all_reduce`, even on one device. That function is a `tf.custom_gradient`,
and inside a `tf.function` every trace of it registers a "CustomGradient-<n>" entry in
TensorFlow's global gradient registry (`ops.gradient_registry`) that is never removed. Each
entry's gradient closure holds tensors of the traced train step, so the whole step graph
stays alive with the optimizer's and metrics' branch graphs: two entries per `fit()` (Keras
traces its train step twice), megabytes of resident memory per trial with Keras 3.15 and
TensorFlow 2.21 (docs/design.md).

`released_traces()` wraps a trial: entries that appeared during it are removed when it ends,
once its fit() has returned and nothing can ask for those gradients again (KerasTuner's
clear_session() and gc.collect() before the next build then free them). The registry is
a private attribute of TensorFlow; where it is missing (another version), this does nothing.
"""

from __future__ import annotations

import contextlib

ENTRY_PREFIX = "CustomGradient-"


def _registry() -> dict | None:
    try:
        from tensorflow.python.framework import ops
    except ImportError:
        return None
    registry = getattr(getattr(ops, "gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def custom_gradient_entries() -> set[str]:
    """The custom-gradient names TensorFlow's registry holds now."""
    registry = _registry()
    return {key for key in registry if key.startswith(ENTRY_PREFIX)} if registry else set()


@contextlib.contextmanager
def released_traces():
    """Remove the custom-gradient entries (and the graphs they hold) made inside the block."""
    before = custom_gradient_entries()
    try:
        yield
    finally:
        registry = _registry()
        for key in custom_gradient_entries() - before:
            registry.pop(key, None)
