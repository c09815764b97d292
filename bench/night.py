"""The night's last stage: its winner shipped into results/<run>/best/, within the budget."""

from __future__ import annotations

import shlex
from pathlib import Path

from bench.core import records
from bench.core.budget import Budget
from bench.core.config import Recipe, SearchConfig, parse_overrides, recipe_signature
from bench.errors import ConfigError, ExportError
from bench.release import choose, export, reference
from bench.search import confirm

# The Makefile's EXPORT_FLAGS: a night whose recipe is this one is shipped by `make release`
# alone.
MAKE_EXPORT_FLAGS = "--retrain --epochs 25 --clean-epochs 1"


def release(config: SearchConfig, budget: Budget, stream) -> Path | None:
    """With --release: ship the winner as `bench export RUN --retrain` does with the run's
    release recipe and seed, when the budget holds what is left of it (a release killed
    part-way goes on from its epoch backup); else one line on how to ship it later.

    The winner is choose.winner's: the confirmed ranking when the run has one, else the single
    best trial. A best/ that already holds it, trained by this recipe from this seed, is kept.
    The caller holds the run's lock. Returns best/ when it holds the release, else None.
    """
    if not config.release:
        return None
    run_dir = config.run_dir
    if records.best_by_validation(records.load_records(run_dir)) is None:
        print("release skipped: no trial finished", file=stream, flush=True)
        return None
    record, _ = choose.winner(run_dir, choose.AUTO)
    recipe = night_recipe(config)
    best = run_dir / export.BEST_DIR
    if already_shipped(best, record, recipe):
        kept = f"trained with this recipe from seed {recipe.seed}; kept"
        print(f"release: {best} already holds trial {record['trial_id']} {kept}", file=stream)
        return best
    needed = expected_seconds(run_dir, record, records.load_config(run_dir), recipe)
    if not budget.fits(needed):
        print(skipped(config, budget, needed, recipe), file=stream, flush=True)
        return None
    print(f"release: trial {record['trial_id']}, about {needed:.0f} s", file=stream, flush=True)
    command = export_command(config, recipe)
    out = export.export_run(run_dir, recipe, config.data_dir, choose.AUTO, command)
    reference.against_defaults(run_dir, out, "find", config.data_dir)  # kept from before
    return out


def night_recipe(config: SearchConfig) -> Recipe:
    """The run's release recipe, from the run's own seed."""
    return Recipe(
        retrain=True,
        epochs=config.release_epochs,
        seed=config.seed,
        clean_epochs=config.release_clean_epochs,
        ema=config.release_ema,
        elastic=config.release_elastic,
        overrides=parse_overrides(config.release_set),
    ).validate()


def check_release_set(config: SearchConfig) -> None:
    """ConfigError, when the run starts rather than after its search, for a --release-set
    naming a hyperparameter the space does not have or a value not of its kind."""
    if not config.release_set:
        return
    import keras_tuner as kt

    from bench.train import fitting

    hp = kt.HyperParameters()
    fitting.hypermodel(config.space).build(hp)
    defaults = {h.name: h.default for h in hp.space}
    for name, text in parse_overrides(config.release_set):
        if name not in defaults:
            have = ", ".join(sorted(defaults))
            raise ConfigError(
                f"--release-set {name}: the space has no such hyperparameter (it has {have})"
            )
        try:
            export.typed_value(name, text, defaults[name])
        except ExportError as exc:
            raise ConfigError(str(exc).replace("--set", "--release-set", 1)) from None


def expected_seconds(run_dir: Path, record: dict, saved: dict, recipe: Recipe) -> float:
    """Seconds the release still needs: its share of epochs that its backup does not hold
    yet, of what the whole release costs at the pace the run measured
    (confirm.release_seconds). The one place the night prices it."""
    epochs = recipe.epochs or record["best_epoch"]
    key = export.release_key(export.with_overrides(record, recipe.overrides), saved, recipe, epochs)
    done = export.epochs_done(export.release_backup(run_dir, recipe.seed), key)
    total = epochs + recipe.clean_epochs
    whole = confirm.release_seconds(run_dir, saved, record, epochs, recipe.clean_epochs)
    return whole * (total - done) / total


def already_shipped(best: Path, record: dict, recipe: Recipe) -> bool:
    """Whether best/ holds `record`'s configuration retrained by `recipe` (its seed given)."""
    path = best / records.CONFIG_FILE
    if not path.is_file() or not (best / records.MODEL_FILE).is_file():
        return False
    shipped = records.read_json(path, f"delete {best} to ship the release again")
    training = shipped.get("training") or {}
    made = (
        shipped.get("trial_id"),
        training.get("retrained_on_all_training_images"),
        recipe_signature(training),
        training.get("seed"),
    )
    signature = recipe.signature(recipe.epochs or record["best_epoch"])
    return made == (record["trial_id"], True, signature, recipe.seed)


def recipe_flags(recipe: Recipe) -> list[str]:
    """`bench export`'s flags for a retraining recipe, its seed left out."""
    return recipe.flags(with_seed=False)


def export_command(config: SearchConfig, recipe: Recipe) -> str:
    """The `bench export` command that ships what the night ships, for the model card."""
    parts = ["bench", "export", config.run, *recipe_flags(recipe), "--seed", str(recipe.seed)]
    if config.results != _default_results(config):
        parts += ["--results", config.results]
    return shlex.join(parts + (["--data-dir", config.data_dir] if config.data_dir else []))


def make_command(config: SearchConfig, recipe: Recipe) -> str:
    """The `make release` line that ships this release later (its flags where they are not
    the Makefile's; make trains from the run's seed, as the night does)."""
    parts = ["make", "release", f"RUN={config.run}"]
    if config.results != _default_results(config):
        parts.append(f"RESULTS={config.results}")
    flags = shlex.join(recipe_flags(recipe))
    if flags != MAKE_EXPORT_FLAGS:
        parts.append(f"EXPORT_FLAGS={flags}")
    return shlex.join(parts)


def _default_results(config: SearchConfig) -> str:
    return SearchConfig(run=config.run).results


def skipped(config: SearchConfig, budget: Budget, needed: float, recipe: Recipe) -> str:
    """The line for a release the budget cannot hold."""
    left = max((budget.left() or 0.0) - budget.margin, 0.0)
    return (
        f"release skipped: the budget has {left:.0f} s left, the release needs about "
        f"{needed:.0f} s; `{make_command(config, recipe)}` ships it"
    )
