"""A release recipe's refinements: checked before any work, named the same way everywhere
(the stored release, the command that repeats it), and invisible when not given."""

import pytest

from bench import api
from bench.core.config import Recipe, parse_overrides, recipe_signature
from bench.errors import ExportError
from tests.test_cli import assert_one_line_error, run_cli

REFINED = Recipe(True, 25, 3, 1, ema=0.999, elastic=34.0, overrides=(("rotation_degrees", "15"),))


def test_a_recipe_without_refinements_reads_as_releases_stored_before_them():
    older = {"epochs": 25, "clean_epochs": 1, "seed": 0, "batch_size": 128}
    assert recipe_signature(older) == Recipe(True, 25, 0, 1).signature(25)
    assert Recipe(True, 25, 0, 1).extras() == {}


def test_a_refined_recipe_round_trips_through_what_a_release_stores():
    stored = {**REFINED.signature(25), "seed": 3, "clean_learning_rate": 1e-5}
    assert recipe_signature(stored) == REFINED.signature(25)
    assert Recipe.of_signature(recipe_signature(stored), seed=3) == REFINED
    assert REFINED.flags() == [
        "--retrain", "--epochs", "25", "--seed", "3", "--clean-epochs", "1", "--ema", "0.999",
        "--elastic", "34", "--set", "rotation_degrees=15",
    ]  # fmt: skip
    command = api.export_command("night", REFINED, "auto", None, None)
    assert command.endswith("--elastic 34 --set rotation_degrees=15")


@pytest.mark.parametrize(
    "recipe, refusal",
    [
        (Recipe(ema=0.999), "--ema needs --retrain"),
        (Recipe(elastic=34.0), "--elastic needs --retrain"),
        (Recipe(overrides=(("zoom", "0.1"),)), "--set needs --retrain"),
        (Recipe(True, ema=0.5), r"--ema must be from 0.9 to 0.99999, not 0.5"),
        (Recipe(True, elastic=float("nan")), "--elastic must be from 0 to 100, not nan"),
    ],
)
def test_a_refinement_that_cannot_be_is_refused(recipe, refusal):
    with pytest.raises(ExportError, match=refusal):
        recipe.validate()


def test_set_takes_name_equals_value_only():
    assert parse_overrides(["zoom = 0.15", "head=gap"]) == (("zoom", "0.15"), ("head", "gap"))
    for wrong in ("zoom", "=0.1", "zoom="):
        with pytest.raises(ExportError, match="is not NAME=VALUE"):
            parse_overrides([wrong])


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--ema", "1.5"], ["--ema", "1.5", "(0.9 to 0.99999)"]),
        (["--elastic", "much"], ["--elastic", "'much' is not a number"]),
    ],
)
def test_the_command_line_refuses_bad_refinements_before_anything(capsys, tmp_path, flags, words):
    code, _, err = run_cli(capsys, "export", "r", "--retrain", *flags, "--results", str(tmp_path))
    assert code == 2
    assert_one_line_error(err, *words)
    assert list(tmp_path.iterdir()) == []
