"""Tests of bench.report.columns: the trials frame, architecture labels and value formatting."""

from __future__ import annotations

import pandas as pd
import pytest

from bench.report import columns
from tests.factories import fake_record


def frame_of(*trial_records: dict) -> pd.DataFrame:
    return columns.trials_frame([("r1", list(trial_records))])


def without_label(**fields) -> dict:
    """A record as written before trial records carried their architecture label."""
    record = fake_record(**fields)
    del record["architecture"]
    return record


def test_architecture_is_the_records_own_label_when_it_has_one():
    record = fake_record(architecture="3x[32,64,128] k3 adam lr1e-3")
    assert columns.architecture(record) == "3x[32,64,128] k3 adam lr1e-3"
    # The space's own label wins over the generic one, even for the seed space.
    assert columns.architecture(fake_record(space="seed", architecture="seed v2")) == "seed v2"
    assert frame_of(record)["architecture"].tolist() == ["3x[32,64,128] k3 adam lr1e-3"]


def test_architecture_falls_back_for_records_without_a_label():
    hp = {"units": 64, "learning_rate": 0.001, "dropout": 0.15000000000000002, "tuner/epochs": 4}
    record = without_label(hyperparameters=hp)
    assert columns.architecture(record) == "dropout=0.15 learning_rate=1e-3 units=64"
    assert columns.architecture({**record, "architecture": ""}) == columns.architecture(record)
    assert columns.architecture(without_label(space="seed")) == columns.SEED_LABEL
    assert columns.architecture(without_label(hyperparameters={})) == columns.DEFAULT_LABEL
    assert frame_of(record)["architecture"].tolist() == [columns.architecture(record)]


def test_trials_frame_numbers_trials_by_start_and_measures_elapsed_hours():
    late = fake_record(
        trial_id="b",
        started_at="2024-01-01T02:00:00+00:00",
        finished_at="2024-01-01T03:30:00+00:00",
    )
    early = fake_record(
        trial_id="a",
        started_at="2024-01-01T01:00:00+00:00",
        finished_at="2024-01-01T01:30:00+00:00",
    )
    df = frame_of(late, early)
    assert list(df["trial_id"]) == ["a", "b"]
    assert list(df["trial_number"]) == [1, 2]
    assert df["elapsed_hours"].tolist() == pytest.approx([0.5, 2.5])


def test_format_value_hides_float_noise_but_keeps_large_numbers():
    assert columns.format_value(0.15000000000000002) == "0.15"
    assert columns.format_value(0.0014025726538129193, scientific=True) == "1.4e-3"
    assert columns.format_value(0.99283) == "0.993"
    assert columns.format_value(123456.789) == "123456.789"
    assert columns.format_value(3) == "3"
