"""A trial whose record was written before a stop is finished: a resume ends it as recorded
and never trains it again, whatever KerasTuner's own files say."""

import io
import json
import re
import types

import keras_tuner as kt
import pytest

from bench import runner
from bench.core import faults, records
from bench.search import asha, recorder, tuning
from bench.train import checkpoint, kt_compat
from tests.factories import fake_record

TINY = dict(space="tiny", train_limit=500, val_size=200, test_limit=200, max_trials=2)
FINISHED_LINE = re.compile(r"^trial \d+/\d+ \[(\w+)\]", re.M)  # a trial this process recorded
EPOCH_LINE = re.compile(r"^  trial (\w+) epoch \d+/\d+ \|", re.M)  # an epoch's end


def search(capsys, tmp_path, settings: dict) -> tuple[int, str]:
    """One `bench search` process's work, in this one, as a supervisor's child (no report)."""
    config = runner.search_config({"run": "r", "results": str(tmp_path), **TINY, **settings})
    code = runner.search_here(config, "process")
    return code, capsys.readouterr().out


def kept(record: dict) -> tuple:
    return record["started_at"], record["finished_at"], record["val_accuracy"]


@pytest.mark.parametrize(
    "settings, stop_at",
    [
        # The first trial: KerasTuner had not written tuner0.json yet, so it did not reload.
        (dict(tuner="random", max_epochs=1), 1),
        # The defaults' promotion to asha's second rung, continued from their weights: the
        # last trial planned, so the resume has nothing left to train.
        (dict(tuner="asha", max_epochs=3, promotion="continue"), 2),
    ],
    ids=["random", "asha"],
)
def test_a_trial_recorded_just_before_a_stop_is_not_trained_again(
    tmp_path, capsys, monkeypatch, settings, stop_at
):
    monkeypatch.setattr(faults, "_reached", {})
    monkeypatch.setenv(faults.KILL_ENV, f"record.written:{stop_at}:SIGINT")
    code, first = search(capsys, tmp_path, settings)
    assert code == 130, first
    before = records.load_records(tmp_path / "r")
    assert len(before) == stop_at
    cut = before[-1]["trial_id"]
    oracle = json.loads((tmp_path / "r" / "tuner" / "oracle.json").read_text())
    assert cut in oracle["ongoing_trials"].values()  # KerasTuner never saw it end
    monkeypatch.delenv(faults.KILL_ENV)

    code, resumed = search(capsys, tmp_path, settings)
    assert code == 0, resumed
    after = {r["trial_id"]: r for r in records.load_records(tmp_path / "r")}
    assert [kept(after[r["trial_id"]]) for r in before] == [kept(r) for r in before]
    assert len(after) == TINY["max_trials"]
    assert {r["status"] for r in after.values()} == {"completed"}
    assert f"finished before the last stop, as their records say: trial {cut}" in resumed
    # Each trial trained in one process only, and the resume trained the rest, once each.
    trained_first, trained_again = set(EPOCH_LINE.findall(first)), EPOCH_LINE.findall(resumed)
    assert trained_first == {r["trial_id"] for r in before}
    assert sorted(trained_first) + sorted(FINISHED_LINE.findall(resumed)) == sorted(after)
    assert not trained_first & set(trained_again)
    trial = json.loads((tmp_path / "r" / "tuner" / f"trial_{cut}" / "trial.json").read_text())
    assert trial["status"] == "COMPLETED"
    assert trial["score"] == pytest.approx(after[cut]["val_accuracy"])
    assert not list((tmp_path / "r" / checkpoint.RESUME_DIR).glob("*"))


# -- the oracle reconciled, without training --------------------------------------------------


def build(hp):
    hp.Float("x", 0.0, 1.0, default=0.5)
    return None


def tuner_of(folder, kind: str):
    """A KerasTuner tuner of the kind over a one-number space, as a fresh process makes it."""
    common = dict(objective=kt.Objective("val_accuracy", "max"), seed=1, directory=str(folder))
    common.update(project_name="tuner", max_consecutive_failed_trials=3)
    if kind == "hyperband":
        tuner = kt.Hyperband(build, max_epochs=3, factor=3, **common)
    elif kind == "bayesian":
        tuner = kt.BayesianOptimization(build, max_trials=5, **common)
    elif kind == "asha":
        tuner = asha.ASHA(build, max_epochs=3, factor=3, max_trials=5, **common)
    else:
        tuner = kt.RandomSearch(build, max_trials=5, **common)
    kt_compat.reload_oracle(tuner)
    return tuner


def record_of(folder, trial, val_accuracy: float) -> dict:
    record = fake_record(run="r", trial_id=trial.trial_id, val_accuracy=val_accuracy)
    record["history"]["val_accuracy"][-1] = val_accuracy
    records.write_record(folder, record)
    return record


def end(oracle, trial, score: float) -> None:
    oracle.update_trial(trial.trial_id, {"val_accuracy": score})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)


def resumed(folder, kind: str):
    """The tuner of the process after the stop, its oracle reconciled with the records."""
    tuner = tuner_of(folder, kind)
    config = types.SimpleNamespace(run_dir=folder, max_failures=3)
    return tuner.oracle, tuning.end_recorded_trials(tuner.oracle, config)


@pytest.mark.parametrize("kind", ["random", "bayesian", "hyperband", "asha"])
def test_every_tuner_ends_a_recorded_trial_with_its_recorded_score(tmp_path, kind):
    oracle = tuner_of(tmp_path, kind).oracle
    trial = oracle.create_trial("tuner0")
    record_of(tmp_path, trial, 0.875)  # and the process stopped there
    (tmp_path / checkpoint.RESUME_DIR / trial.trial_id).mkdir(parents=True)
    oracle, ended = resumed(tmp_path, kind)
    assert ended == [trial.trial_id]
    again = oracle.get_trial(trial.trial_id)
    assert again.status == "COMPLETED" and again.score == pytest.approx(0.875)
    assert kt_compat.awaiting_rerun(oracle) == []
    assert oracle.create_trial("tuner0").trial_id != trial.trial_id
    assert not (tmp_path / checkpoint.RESUME_DIR / trial.trial_id).exists()


def test_a_trial_whose_end_was_saved_but_not_the_tuner_is_not_run_again(tmp_path):
    oracle = tuner_of(tmp_path, "random").oracle
    trial = oracle.create_trial("tuner0")
    record_of(tmp_path, trial, 0.75)
    # end_trial saves oracle.json before it forgets the trial as ongoing; the tuner's own
    # save after it was cut.
    end(oracle, trial, 0.75)
    oracle, ended = resumed(tmp_path, "random")
    assert ended == [trial.trial_id]
    assert oracle.end_order.count(trial.trial_id) == 1
    assert oracle.create_trial("tuner0").trial_id != trial.trial_id


def test_a_recorded_asha_promotion_counts_at_its_rung(tmp_path):
    oracle = tuner_of(tmp_path, "asha").oracle
    first = oracle.create_trial("tuner0")
    end(oracle, first, 0.5)
    promoted = oracle.create_trial("tuner0")
    assert promoted.hyperparameters.values[asha.PROMOTED_FROM] == first.trial_id
    record_of(tmp_path, promoted, 0.625)
    oracle, _ = resumed(tmp_path, "asha")
    done = [t for t in oracle.trials.values() if asha.rung_of(t) == 1 and asha._scored(t)]
    assert [t.trial_id for t in done] == [promoted.trial_id]
    assert done[0].score == pytest.approx(0.625)
    following = oracle.create_trial("tuner0")  # a new configuration at the lowest rung
    assert following.trial_id not in (first.trial_id, promoted.trial_id)
    assert asha.rung_of(following) == 0 and oracle.promoted == [first.trial_id]


def test_a_failed_record_ends_its_trial_as_failed(tmp_path):
    oracle = tuner_of(tmp_path, "random").oracle
    trial = oracle.create_trial("tuner0")
    failed = fake_record(run="r", trial_id=trial.trial_id, status="failed")
    records.write_record(tmp_path, failed)
    oracle, ended = resumed(tmp_path, "random")
    assert ended == [trial.trial_id]
    assert oracle.get_trial(trial.trial_id).status == "FAILED"


# -- a second result of a finished trial ------------------------------------------------------


def test_a_completed_record_is_never_replaced(tmp_path):
    first = fake_record(run="r", trial_id="04", val_accuracy=0.9)
    out = io.StringIO()
    assert recorder.write_once(tmp_path, first, out)
    written = records.record_path(tmp_path, "04").read_text()
    second = fake_record(run="r", trial_id="04", val_accuracy=0.5, started_at="2027-01-01")
    assert not recorder.write_once(tmp_path, second, out)
    assert records.record_path(tmp_path, "04").read_text() == written
    (line,) = out.getvalue().splitlines()
    assert str(records.record_path(tmp_path, "04")) in line and "is not" in line
    assert "val 0.9000" in line


def test_a_trial_handed_out_again_returns_its_record_untrained(tmp_path):
    # A worker killed after its record: the chief, which never learnt that the trial ended,
    # gives it back to the worker restarted under the same id.
    done = fake_record(run="r", trial_id="02", val_accuracy=0.8125)
    records.write_record(tmp_path, done)
    (tmp_path / checkpoint.RESUME_DIR / "02").mkdir(parents=True)
    stream = io.StringIO()
    bare = types.SimpleNamespace(run_dir=tmp_path, progress=types.SimpleNamespace(stream=stream))
    bare.recorded_result = types.MethodType(recorder.TrialRecorder.recorded_result, bare)
    tuner = types.SimpleNamespace(recorder=bare)  # no trial can run: it has no tuner below
    trial = types.SimpleNamespace(trial_id="02")
    metrics = recorder.RecordingTuner.run_trial(tuner, trial)
    assert metrics["val_accuracy"] == 0.8125
    assert "trial 02 finished before the last stop" in stream.getvalue()
    assert not (tmp_path / checkpoint.RESUME_DIR / "02").exists()
    records.write_record(tmp_path, fake_record(run="r", trial_id="03", status="failed"))
    with pytest.raises(kt.errors.FailedTrialError, match="OOM"):
        recorder.RecordingTuner.run_trial(tuner, types.SimpleNamespace(trial_id="03"))
