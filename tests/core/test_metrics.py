"""Tests of bench.core.metrics: figures over prediction arrays, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.core import metrics


def test_test_metrics_of_known_probabilities():
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.9, 0.1]])
    labels = np.array([0, 1, 1])
    accuracy, loss = metrics.test_metrics(probs, labels)
    assert accuracy == pytest.approx(2 / 3)
    assert loss == pytest.approx(-(math.log(0.8) + math.log(0.6) + math.log(0.1)) / 3)


def test_a_confident_mistake_costs_a_finite_loss():
    probs = np.array([[1.0, 0.0]], dtype=np.float16)  # float16 rounds tiny probabilities to 0
    loss = metrics.per_image_loss(probs, np.array([1]))
    assert loss.tolist() == pytest.approx([-math.log(metrics.PROB_EPSILON)])


def test_confusion_counts_add_up():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 500)
    y_pred = np.where(rng.random(500) < 0.8, y_true, rng.integers(0, 10, 500))
    matrix = metrics.confusion(y_true, y_pred)
    assert matrix.shape == (10, 10)
    assert matrix.to_numpy().sum() == 500
    assert np.trace(matrix.to_numpy()) == (y_true == y_pred).sum()
    assert matrix.loc[3, 5] == ((y_true == 3) & (y_pred == 5)).sum()


def test_per_class_confused_pairs_and_misclassified():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 7])
    y_pred = np.array([0, 0, 1, 1, 2, 1, 1, 2, 7])
    matrix = metrics.confusion(y_true, y_pred)
    per = metrics.per_class(matrix).set_index("class")
    assert per.loc[0, "images"] == 3 and per.loc[0, "errors"] == 1
    assert per.loc[2, "accuracy"] == pytest.approx(1 / 3)
    assert np.isnan(per.loc[5, "accuracy"])  # no image of a 5
    pairs = metrics.confused_pairs(matrix)
    assert pairs[["true", "predicted", "count"]].values.tolist() == [
        [2, 1, 2],
        [0, 1, 1],
        [1, 2, 1],
    ]
    assert pairs["share"].tolist() == pytest.approx([0.5, 0.25, 0.25])
    probs = np.full((len(y_true), 10), 0.05)
    probs[np.arange(len(y_true)), y_pred] = [0.5, 0.5, 0.6, 0.5, 0.9, 0.7, 0.8, 0.5, 0.5]
    wrong = metrics.misclassified(y_true, y_pred, probs, limit=3)
    assert wrong["index"].tolist() == [4, 6, 5]  # most confident mistakes first, top 3
    assert wrong["confidence"].tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert metrics.confused_pairs(metrics.confusion([1, 2], [1, 2])).empty
