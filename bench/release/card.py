"""The model card of an export, in the sections of Mitchell et al. 2019, "Model Cards for
Model Reporting" (FAT* '19): details, intended use, factors, metrics, evaluation and training
data, quantitative analyses, caveats; rendered from the export's config.json dict alone."""

from __future__ import annotations

from bench.core import data, records
from bench.core.config import ELASTIC_SIGMA

# Northcutt, Athalye and Mueller 2021, "Pervasive Label Errors in Test Sets Destabilize
# Machine Learning Benchmarks": 15 of MNIST's 10,000 test labels judged wrong by reviewers.
DOUBTFUL_LABELS = {"mnist": "about 0.15% (15 digits, Northcutt et al. 2021)"}
INTENDED = {
    "mnist": (
        "single handwritten digits as MNIST has them: 28x28 grey, the digit fitted into a 20x20 "
        "box and centred by its centre of mass (`bench predict` prepares image files so)",
        "handwriting in general (letters, numbers of several digits, cursive lines), digits "
        "cut from photos or forms without that preparation, printed digits, and any decision "
        "about a person (grading, identity, cheques) without a human check",
    ),
    "fashion_mnist": (
        "28x28 grey product photos of Zalando's ten clothing classes, centred on a plain "
        "background as Fashion-MNIST has them",
        "photos of clothes worn or on a crowded background, other kinds of clothing, colour or "
        "material questions, and any decision about a person",
    ),
}
CUSTOM_USE = (
    "images like those of the custom data it was trained on",
    "anything its custom data does not stand for",
)


def model_card(s: dict) -> str:
    """Markdown for an export's config dict (export.shipped_config plus the evaluation)."""
    dataset = s["dataset"].get("name", data.DEFAULT_DATASET)
    custom = bool(s["dataset"].get("custom"))
    name = "Custom data" if custom else data.DATASETS.get(dataset, dataset)
    kind = "ensemble" if s.get("ensemble") else s["space"]
    parts = [
        f"# Model card: {name} classifier ({kind}, trial {s['trial_id']})",
        _details(s),
        _use(dataset, custom),
        _factors(s),
        _metrics(s),
        _data(s, name, dataset, custom),
        _analyses(s),
        against_defaults(s.get("against_defaults")),
        _cost(s),
        _caveats(s, dataset, custom),
        _reproduce(s),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _details(s: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in s["versions"].items())
    ensemble = s.get("ensemble")
    what = (
        f"An average of the class probabilities of {len(ensemble['members'])} models "
        f"({_sources(ensemble['source'])}), saved as one Keras model."
        if ensemble
        else f"A convolutional network of space `{s['space']}`: "
        f"{s.get('architecture') or s['space']}, {s['params']:,} parameters."
    )
    return f"""## Model details
{what} Exported from run `{s["run"]}` (tuner `{s["tuner"]}`), chosen by {s["selection"]}; the
test set was never used to choose. {_training(s)}
Versions: {versions}. Trained at commit `{s["trained_with_commit"]}`, exported at
`{s["exported_with_commit"]}`.

{_hyperparameters(s)}"""


def _sources(source: str) -> str:
    return {
        "seeds": "the winning configuration retrained from several seeds by `bench confirm`",
        "top": "the best `bench confirm` seed of each of the top configurations",
        "release": "the winning configuration retrained with the release recipe from several seeds",
        "top-release": "the top configurations by confirmed validation accuracy, each retrained "
        "with the release recipe",
    }[source]


def _training(s: dict) -> str:
    train = s["training"]
    if s.get("ensemble"):
        return _members_training(s)
    if train["retrained_on_all_training_images"]:
        how = (
            f"Retrained from scratch on all {train['train_images']:,} training images "
            f"(validation images included), for {_retrain_epochs(train)}.{_clean_epochs(train)}"
            f"{_refinements(train)}"
        )
    else:
        how = (
            f"Weights of the trial's best epoch ({train['epochs']}), trained on "
            f"{train['train_images']:,} images."
        )
    seconds = train["train_seconds"]
    return f"{how} Batch size {train['batch_size']}, seed {train['seed']}, {seconds:.1f} s."


def _members_training(s: dict) -> str:
    train = s["training"]
    if train["retrained_on_all_training_images"]:
        how = (
            f"Each member retrained from scratch on all {train['train_images']:,} training "
            f"images (validation images included), for {train['epochs']} epochs."
            f"{_clean_epochs(train)}{_refinements(train)}"
        )
    else:
        how = (
            f"Each member trained afresh by `bench confirm` on {train['train_images']:,} "
            "training images, for the epochs in the members' table."
        )
    seeds = ", ".join(str(seed) for seed in train["seed"])
    seconds = train["train_seconds"]
    return f"{how} Batch size {train['batch_size']}, seeds {seeds}, {seconds:.0f} s in all."


def _retrain_epochs(train: dict) -> str:
    best = train.get("trial_best_epoch", train["epochs"])
    if train["epochs"] == best:
        return f"the winning trial's best epoch count ({best})"
    return f"{train['epochs']} epochs (the winning trial's best epoch was {best} of its run)"


def _clean_epochs(train: dict) -> str:
    clean = train.get("clean_epochs", 0)
    if not clean:
        return ""
    return (
        f" Then {clean} more epoch{'s' if clean > 1 else ''} on the digits as they are "
        f"(augmentation off), at learning rate {train['clean_learning_rate']:.3g}."
    )


def _refinements(train: dict) -> str:
    """The recipe's refinements in sentences: what `bench export --ema/--elastic/--set`
    added to the release."""
    said = []
    if train.get("elastic"):
        said.append(
            f" The training digits were distorted elastically (alpha {train['elastic']:g} "
            f"pixels, sigma {ELASTIC_SIGMA:g}; Simard et al. 2003), except in the clean epochs."
        )
    if train.get("ema"):
        said.append(
            " The weights shipped are the exponential moving average of the training's "
            f"weights (momentum {train['ema']:g}), their batch-norm statistics recomputed on "
            "the training digits as they are."
        )
    if overrides := train.get("overrides"):
        values = ", ".join(f"`{name}={value}`" for name, value in overrides.items())
        said.append(f" Trained with {values} in place of the trial's values.")
    return "".join(said)


def _hyperparameters(s: dict) -> str:
    title = "hyperparameter of the winner" if s.get("ensemble") else "hyperparameter"
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(s["hyperparameters"].items()))
    rows = rows or "| (none) | fixed architecture |"
    return f"| {title} | value |\n| --- | --- |\n{rows}"


def _use(dataset: str, custom: bool) -> str:
    intended, out_of_scope = CUSTOM_USE if custom else INTENDED.get(dataset, CUSTOM_USE)
    return f"""## Intended use
For {intended}. Input: float32 (n, 28, 28, 1) in [0, 1] (model.keras and the SavedModel's
default signature) or uint8 0-255 (the SavedModel's `serving_uint8`); output: (n, 10) class
probabilities.

Out of scope: {out_of_scope}."""


def _factors(s: dict) -> str:
    return (
        "## Factors\nResults are given per class below; the data records no writer, device or "
        "other group, so no analysis by group was possible."
    )


def _metrics(s: dict) -> str:
    low, high = s["test_interval"]
    loss_low, loss_high = s["test_loss_interval"]
    val_note = (
        " (before retraining; the retrained model has seen these images)"
        if s["training"]["retrained_on_all_training_images"]
        else ""
    )
    return f"""## Metrics
Accuracy and cross-entropy on the test images; 95% intervals: Wilson's for accuracy,
a percentile bootstrap over the test images for the loss.

| metric | value | 95% interval |
| --- | --- | --- |
| test accuracy | {s["test_accuracy"]:.4f} | {low:.4f} - {high:.4f} |
| test loss | {s["test_loss"]:.4f} | {loss_low:.4f} - {loss_high:.4f} |
| validation accuracy{val_note} | {s["val_accuracy"]:.4f} | |
| validation loss | {s["val_loss"]:.4f} | |
{_ensemble_metrics(s)}"""


def _ensemble_metrics(s: dict) -> str:
    ensemble = s.get("ensemble")
    if not ensemble:
        return ""
    rows = "\n".join(
        f"| {m['label']} | {m['trial_id']} | {m['seed']} | {m['epochs']} | "
        f"{m['test_accuracy']:.4f} | {m['test_loss']:.4f} |"
        for m in ensemble["members"]
    )
    test = ensemble["mcnemar"]
    return f"""
Members, each on the same test images:

| member | trial | seed | epochs | test accuracy | test loss |
| --- | --- | --- | --- | --- | --- |
{rows}

Against its best member on these test images ({ensemble["best_member"]}: the hardest
comparison, after the fact; the test images chose nothing that ships), McNemar's test: the
ensemble alone right on {test["a_only"]} test images, the member alone on {test["b_only"]},
p = {test["p_value"]:.3g}.
"""


def _data(s: dict, name: str, dataset: str, custom: bool) -> str:
    what, credit = data.DATASET_CREDITS.get(dataset, ("images", "see its source"))
    if custom:
        what, credit = f"in {data.DATASETS.get(dataset, dataset)}'s file format", "not published"
    return f"""## Evaluation data
{s["test_images"]:,} test images of {name} {what} ({credit}), 28x28 grey, scaled to [0, 1].

## Training data
The {name} training images: validation is the last {s["val_images"]:,} of them, the rest
trained the trials. Dataset SHA256 (pixels and labels): `{s["dataset"]["sha256"]}`."""


def _analyses(s: dict) -> str:
    names = any("name" in row for row in s["per_class"])
    head = (
        "| class | name | test images | errors | accuracy |"
        if names
        else ("| class | test images | errors | accuracy |")
    )
    rows = "\n".join(
        f"| {r['class']} |{_name(r)} {r['images']} | {r['errors']} | {r['accuracy']:.4f} |"
        for r in s["per_class"]
    )
    pairs = "\n".join(
        f"| {p['true']} | {p['predicted']} | {p['count']} |" for p in s["confused_pairs"]
    )
    pairs = pairs or "| - | - | 0 |"
    return f"""## Quantitative analyses
{head}
| --- |{" --- |" if names else ""} --- | --- | --- |
{rows}

Most confused pairs (true class taken for another):

| true | predicted | test images |
| --- | --- | --- |
{pairs}"""


def against_defaults(result: dict | None) -> str:
    """The release beside the space's defaults released with the same recipe and seeds
    (bench.release.reference), or how to get that comparison; empty when it was not asked."""
    if result is None:
        return ""
    head = "## Against the space's defaults at release fidelity\n"
    if not result.get("rows"):
        why = result.get("verdict") or (
            "No release of the space's defaults with this recipe and seed was found under the "
            "results folder: `bench export RUN --retrain ... --reference train` trains one "
            "(as long as this release) and keeps it for later nights."
        )
        return head + why
    rows = "\n".join(
        f"| {r['seed']} | {r['release_accuracy']:.4f} | {r['release_loss']:.4f} | "
        f"{r['defaults_accuracy']:.4f} | {r['defaults_loss']:.4f} |"
        for r in result["rows"]
    )
    means = ""
    if len(result["rows"]) > 1:
        means = (
            "\nMean test accuracy over the seeds: this release "
            f"{_interval(result['release_accuracy'])}, the defaults "
            f"{_interval(result['defaults_accuracy'])} (95% t intervals).\n"
        )
    missing = result.get("missing_seeds")
    left = (
        f"\nSeeds without a reference, left out: {', '.join(map(str, missing))}.\n"
        if missing
        else ""
    )
    return f"""{head}The same recipe, seeds and test digits; the defaults are the run's first
configuration.

| seed | test accuracy | test loss | defaults' test accuracy | defaults' test loss |
| --- | --- | --- | --- | --- |
{rows}
{means}{left}
{result["verdict"]}"""


def _interval(summary: dict) -> str:
    if summary.get("low") is None:
        return f"{summary['mean']:.4f}"
    return f"{summary['mean']:.4f} ({summary['low']:.4f} to {summary['high']:.4f})"


def _name(row: dict) -> str:
    return f" {row['name']} |" if "name" in row else ""


def _cost(s: dict) -> str:
    cost = s["inference"]
    machine = s["machine"]
    cpu = f"{machine['cpu'] or 'CPU not recorded'} ({', '.join(machine['flags']) or 'no flags'})"
    keras_row = {
        "file": records.MODEL_FILE,
        **cost,
        **{k: s[k] for k in ("test_accuracy", "test_loss")},
    }
    rows = "\n".join(_format_row(f) for f in [keras_row, *s["formats"].values()])
    return f"""## Inference cost and serving formats
{cost["flops"]:,} FLOPs per image (from the layer shapes). Latency: median of one image at a
time on {cost["threads"]} thread(s) of {machine["cores"]} core(s), {cpu}; throughput in batches
of 256.

| format | size | test accuracy | test loss | latency (ms) | images/s |
| --- | --- | --- | --- | --- | --- |
{rows}"""


def _format_row(f: dict) -> str:
    return (
        f"| {f['file']} | {_bytes(f.get('bytes'))} | {f['test_accuracy']:.4f} | "
        f"{f['test_loss']:.4f} | {f['latency_ms']:.2f} | {f['images_per_second']:,.0f} |"
    )


def _bytes(count: int | None) -> str:
    if count is None:
        return "(same files)"
    return f"{count / 1e6:.2f} MB" if count >= 1e5 else f"{count / 1e3:.1f} kB"


def _caveats(s: dict, dataset: str, custom: bool) -> str:
    doubtful = "" if custom else DOUBTFUL_LABELS.get(dataset)
    labels = (
        f" Some test labels are themselves doubtful ({doubtful}): accuracies closer than that "
        "to 100% are not measured by this test set."
        if doubtful
        else ""
    )
    return f"""## Caveats and recommendations
The test set is the benchmark's, not images from where the model will serve; measure on
your own images before relying on it.{labels} Between two trainings of one configuration
test accuracy moves by several test images (seed noise): compare models by their intervals,
or by `bench confirm` with several seeds. The TFLite int8 file quantizes weights only."""


def _reproduce(s: dict) -> str:
    reproduce = s["reproduce"]
    return f"""## How to reproduce
At commit `{reproduce["commit"]}`, with the run's folder (its search settings are in
`results/{s["run"]}/config.json`): `{reproduce["command"]}`."""
