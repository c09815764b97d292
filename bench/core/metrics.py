"""Pure functions over test predictions: loss, accuracy, confusion matrix, per-class figures
and the mistakes; no file reads, numpy and pandas only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

NUM_CLASSES = 10


def confusion(y_true, y_pred, num_classes: int = NUM_CLASSES) -> pd.DataFrame:
    """Counts of (true, predicted) label pairs as a num_classes x num_classes frame."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred {y_pred.shape}")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2)
    labels = range(num_classes)
    return pd.DataFrame(
        counts.reshape(num_classes, num_classes),
        index=pd.Index(labels, name="true"),
        columns=pd.Index(labels, name="predicted"),
    )


# Probabilities are clipped to [PROB_EPSILON, 1 - PROB_EPSILON] before the log, as Keras does:
# a confident wrong answer (stored float16 probabilities round to 0) costs a finite loss.
PROB_EPSILON = 1e-7


def per_image_loss(probs, labels) -> np.ndarray:
    """Each image's cross-entropy: -log of the probability given to its true class."""
    probs = np.asarray(probs, dtype=np.float64)
    picked = np.clip(probs[np.arange(len(labels)), labels], PROB_EPSILON, 1 - PROB_EPSILON)
    return -np.log(picked)


def test_metrics(probs, labels) -> tuple[float, float]:
    """Accuracy and sparse categorical cross-entropy of class probabilities."""
    accuracy = float(np.mean(np.asarray(probs).argmax(axis=1) == labels))
    return accuracy, float(np.mean(per_image_loss(probs, labels)))


CONFUSED_PAIRS_N = 10
MISCLASSIFIED_N = 40


def per_class(matrix: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per true class of a confusion() frame: test images, errors and accuracy; with names
    (Fashion-MNIST's "Trouser", ...), a name column too."""
    counts = matrix.to_numpy()
    images = pd.Series(counts.sum(axis=1))
    correct = pd.Series(np.diag(counts))
    frame = pd.DataFrame(
        {
            "class": matrix.index.to_numpy(),
            "images": images,
            "errors": images - correct,
            "accuracy": correct / images.where(images > 0),  # a class with no images: NaN
        }
    )
    if names is not None:
        frame.insert(1, "name", list(names))
    return frame


def confused_pairs(matrix: pd.DataFrame, top: int = CONFUSED_PAIRS_N) -> pd.DataFrame:
    """The most frequent mistakes of a confusion() frame: (true, predicted, count, share), where
    share is the pair's part of all errors; most first, ties in digit order."""
    pairs = matrix.stack().rename("count").reset_index()
    pairs = pairs[(pairs["true"] != pairs["predicted"]) & (pairs["count"] > 0)]
    pairs = pairs.assign(share=pairs["count"] / pairs["count"].sum())
    ordered = pairs.sort_values(["count", "true", "predicted"], ascending=[False, True, True])
    return ordered.head(top).reset_index(drop=True)


def misclassified(y_true, y_pred, probs, limit: int = MISCLASSIFIED_N) -> pd.DataFrame:
    """Test images the model got wrong (index, true, predicted, confidence), the most confident
    mistakes first: those are the likeliest to be mislabelled digits."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    wrong = np.flatnonzero(y_pred != y_true)
    frame = pd.DataFrame(
        {
            "index": wrong,
            "true": y_true[wrong],
            "predicted": y_pred[wrong],
            "confidence": np.asarray(probs, dtype=np.float64)[wrong, y_pred[wrong]],
        }
    )
    return frame.sort_values(["confidence", "index"], ascending=[False, True]).head(limit)
