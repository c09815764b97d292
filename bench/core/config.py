"""How a run is made: one frozen dataclass, validated, written next to the results as JSON."""

from __future__ import annotations

import argparse
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from bench.core import data
from bench.errors import ConfigError, ExportError

RUN_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
# File names may be 255 bytes long; `--fresh` adds ".old-YYYYmmdd-HHMMSS" (20) to a run's.
MAX_NAME = 200
TUNER_NAMES = ("random", "grid", "bayesian", "hyperband", "asha")
PROMOTIONS = ("retrain", "continue")  # how asha trains a promoted configuration
DEFAULT_MAX_TRIALS = 20  # random, grid and bayesian; hyperband runs its own schedule
# asha: trials at every rung, promotions included; most are short screens, and with a budget
# the budget usually ends the run first.
DEFAULT_ASHA_TRIALS = 300
DEFAULT_MAX_EPOCHS = 20
DEFAULT_BATCH_SIZE = 128
DEFAULT_PATIENCE = 3
DEFAULT_MAX_FAILURES = 5  # failed trials in a row before the run gives up
DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
SECONDS_PER = {"h": 3600, "m": 60, "s": 1}
MAX_BUDGET_S = 30 * 24 * 3600  # a month: longer is a typo, not a night
MAX_SEED = 2**32 - 1  # numpy's (so Keras') seeds are 32-bit
# Seeds a run uses above its own: the tuner's oracle (bench.search.tuning) takes seed + 1
# (KerasTuner's oracle reads 0 as "draw one"), bench confirm seed + CONFIRM_SEED_OFFSET + i.
ORACLE_SEED_OFFSET = 1
CONFIRM_SEED_OFFSET = 1000
# The highest counts a command line may ask for: far above any night, low enough that a typo
# (--seeds 99999999999) is refused rather than filling the memory with a plan of its work.
MAX_TRIALS = 100_000
MAX_EPOCHS = 1000
MAX_FAILURES = 1000
MAX_WORKERS = 128
MAX_THREADS = 1024
MAX_PARAMS = 10**10
MAX_HYPERBAND_FACTOR = 100
MAX_CONFIRM_TOP = 100
MAX_CONFIRM_SEEDS = 100
ENSEMBLE_MEMBERS = (2, 20)  # the fewest and most members of an ensemble
# (lowest, highest) of each number a search takes, by SearchConfig field: the flags' argparse
# types and SearchConfig.validate both read it.
LIMITS = {
    "max_trials": (1, MAX_TRIALS),
    "max_epochs": (1, MAX_EPOCHS),
    "batch_size": (1, data.TRAIN_COUNT),
    "patience": (1, MAX_EPOCHS),
    "seed": (0, MAX_SEED - ORACLE_SEED_OFFSET),
    "val_size": (1, data.TRAIN_COUNT - 1),
    "train_limit": (1, data.TRAIN_COUNT),
    "test_limit": (1, data.TEST_COUNT),
    "hyperband_factor": (2, MAX_HYPERBAND_FACTOR),
    "verbose": (0, 2),
    "max_params": (1, MAX_PARAMS),
    "max_failures": (1, MAX_FAILURES),
    "trials_per_process": (1, MAX_TRIALS),
    "workers": (1, MAX_WORKERS),
    "threads": (1, MAX_THREADS),
    "confirm_top": (1, MAX_CONFIRM_TOP),
    "confirm_seeds": (0, MAX_CONFIRM_SEEDS),
    "release_epochs": (1, MAX_EPOCHS),
    "release_clean_epochs": (0, MAX_EPOCHS),
}
# The same for bench confirm's --top and --seeds, and for a release recipe (bench export
# --retrain), by Recipe field.
CONFIRM_LIMITS = {"top": (1, MAX_CONFIRM_TOP), "seeds": (1, MAX_CONFIRM_SEEDS)}
RECIPE_LIMITS = {"epochs": (1, MAX_EPOCHS), "seed": (0, MAX_SEED), "clean_epochs": (0, MAX_EPOCHS)}
# A release's refinements beyond its epochs, by Recipe field: the momentum of an exponential
# moving average of the weights (Keras' ema_momentum: 0.999 averages over about 1,000 steps)
# and the alpha, in pixels, of an elastic distortion of the digits (Simard et al. 2003 used
# 34 at sigma 4); each is off when not given.
RECIPE_FLOAT_LIMITS = {"ema": (0.9, 0.99999), "elastic": (0.0, 100.0)}
ELASTIC_SIGMA = 4.0  # pixels: the smoothing of a release's elastic distortion, Simard's
# How a stored release's recipe reads when a refinement was never given: as older files,
# which have no such key, do.
RECIPE_EXTRAS = ("ema", "elastic", "overrides")
EXTRA_FLAGS = {"ema": "--ema", "elastic": "--elastic", "overrides": "--set"}
# Fields that define what a run computes; a resumed run must agree on all of them.
IDENTITY_FIELDS = (
    "space",
    "tuner",
    "max_trials",
    "max_epochs",
    "batch_size",
    "patience",
    "seed",
    "val_size",
    "train_limit",
    "test_limit",
    "hyperband_factor",
    "max_params",
    "mixed_precision",
    "dataset",
    "custom_data",
    "warm_start",
)


@dataclass(frozen=True)
class SearchConfig:
    """Everything that decides what a search run does."""

    run: str  # run name: the folder under results/
    space: str = "cnn"  # a name in search_spaces.SPACES, a .py file's absolute path, or a module
    tuner: str = "hyperband"  # one of TUNER_NAMES
    max_trials: int | None = None  # None: DEFAULT_MAX_TRIALS, DEFAULT_ASHA_TRIALS or hyperband's
    max_epochs: int = DEFAULT_MAX_EPOCHS  # epochs per trial (hyperband, asha: the longest ones)
    batch_size: int = DEFAULT_BATCH_SIZE  # training batch size
    patience: int = DEFAULT_PATIENCE  # early stopping: epochs without val_accuracy gain
    seed: int = 0  # seeds the tuner's oracle, weight init and shuffling
    val_size: int = data.DEFAULT_VAL_SIZE  # validation = the last N of the 60k training images
    train_limit: int | None = None  # keep the first N training images (smoke runs, tests)
    test_limit: int | None = None  # keep the first N test images
    hyperband_factor: int = 3  # hyperband's and asha's reduction factor between rungs
    results: str = "results"  # folder that holds the runs
    data_dir: str | None = None  # IDX folder; None: $BENCH_DATA_DIR, data/mnist, then Keras
    verbose: int = 0  # Keras fit verbosity (0 silent, 2 one line per epoch)
    max_params: int | None = None  # a bigger model is a failed trial ("Oversized model")
    budget: float | None = None  # seconds this invocation may run; None: no limit
    max_failures: int = DEFAULT_MAX_FAILURES  # failed trials in a row that stop the run
    # Run at most this many trials per Python process, then carry on in a fresh one: Keras
    # keeps every fitted model's traced graphs alive, so one long process grows. None: one.
    trials_per_process: int | None = None
    workers: int | None = None  # worker processes under a KerasTuner chief; None: one process
    threads: int | None = None  # TensorFlow intra- and inter-op threads per process; None: all
    mixed_precision: bool = False  # float16 compute, float32 weights: a GPU's tensor cores
    dataset: str = data.DEFAULT_DATASET  # mnist or fashion_mnist (bench.core.data.DATASETS)
    # Train on files named as `dataset` that are not it (their fingerprint differs); the
    # records and the report then call it custom data.
    custom_data: bool = False
    tensorboard: bool = False  # per-trial TensorBoard logs with HParams under <run>/tensorboard
    # After the space's defaults, try the best configurations of earlier runs of the same
    # space and data in `results` (chosen when the run is created, kept for its resumes).
    warm_start: bool = True
    # After the search, retrain its top confirm_top full-fidelity trials and the space's
    # defaults with confirm_seeds more seeds each, as `bench confirm` does, within the budget
    # (the search leaves room for it). 0: the night confirms nothing.
    confirm_top: int = 3
    confirm_seeds: int = 0
    # How asha trains a promoted configuration: "continue" from its best weights for the
    # epochs the next rung adds (a warm restart), or "retrain" afresh for all of them. Frozen
    # in the oracle's state when the run is created, as its rungs are: a resume keeps it.
    promotion: str = "continue"
    # After the confirmation, ship the winner (confirmed ranking first) as `bench export
    # --retrain` does into <run>/best/: release_epochs on all training images (None: the
    # winner's best epoch count), then release_clean_epochs without augmentation; within the
    # budget, which keeps room for it from the run's creation. False: the night ends with its
    # report.
    release: bool = False
    release_epochs: int | None = None
    release_clean_epochs: int = 0
    # The release's refinements, as `bench export`'s --ema, --elastic and --set give them
    # (None, None, none: today's recipe). The --set names are checked against the space when
    # the run starts, not after a night of search.
    release_ema: float | None = None
    release_elastic: float | None = None
    release_set: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # a list, as config.json holds it
        object.__setattr__(self, "release_set", tuple(self.release_set))

    @property
    def run_dir(self) -> Path:
        return Path(self.results) / self.run

    def validate(self) -> SearchConfig:
        """Raise ConfigError for a value no run can use; return self for chaining."""
        check_run_name(self.run)
        if self.tuner not in TUNER_NAMES:
            raise ConfigError(f"unknown tuner {self.tuner!r}; known: {', '.join(TUNER_NAMES)}")
        for name, (lowest, highest) in LIMITS.items():
            value = getattr(self, name)
            if value is not None:
                check_range(f"--{name.replace('_', '-')}", value, lowest, highest)
        if self.budget is not None:
            check_budget_range(self.budget)
        if self.dataset not in data.DATASETS:
            known = ", ".join(data.DATASETS)
            raise ConfigError(f"unknown --dataset {self.dataset!r}; known: {known}")
        if self.confirm_seeds:
            check_seeds(
                "--confirm-seeds", self.seed, confirm_seed_range(self.seed, self.confirm_seeds)
            )
        if self.promotion not in PROMOTIONS:
            known = ", ".join(PROMOTIONS)
            raise ConfigError(f"unknown --promotion {self.promotion!r}; known: {known}")
        self.check_release_recipe()
        return self

    def check_release_recipe(self) -> None:
        """ConfigError for a release refinement out of its range, a --release-set that is
        not NAME=VALUE, or any of them without --release."""
        given = {
            "--release-ema": self.release_ema is not None,
            "--release-elastic": self.release_elastic is not None,
            "--release-set": bool(self.release_set),
        }
        for flag, on in given.items():
            if on and not self.release:
                raise ConfigError(f"{flag} needs --release: it refines the night's release")
        for name, (lowest, highest) in RECIPE_FLOAT_LIMITS.items():
            value = getattr(self, f"release_{name}")
            if value is not None and (wrong := float_range_words(value, lowest, highest)):
                raise ConfigError(f"--release-{name} {wrong}")
        try:
            parse_overrides(self.release_set)
        except ExportError as exc:
            raise ConfigError(str(exc).replace("--set", "--release-set", 1)) from None

    def identity(self) -> dict:
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}

    def to_json(self) -> dict:
        return {**asdict(self), "release_set": list(self.release_set)}

    @classmethod
    def from_json(cls, saved: dict, **overrides) -> SearchConfig:
        """The config a run's config.json describes (its extra keys, such as dataset_sha256
        and created_at, left out), with overrides for this process's own settings."""
        known = {f.name for f in fields(cls)}
        return cls(**{**{k: v for k, v in saved.items() if k in known}, **overrides})


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "7h30m", "45m" or "90s"."""
    match = DURATION.fullmatch(text.strip()) if text else None
    if not match or not any(match.groups()):
        raise ConfigError(f"duration {text!r} is not like 7h30m, 45m or 90s")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = hours * SECONDS_PER["h"] + minutes * SECONDS_PER["m"] + seconds
    if total <= 0:
        raise ConfigError(f"duration {text!r} must be longer than zero")
    return check_budget_range(float(total), text)


def duration_text(seconds: float) -> str:
    """A duration as parse_duration reads it: 5400 -> "1h30m", 90 -> "1m30s"."""
    left, parts = int(seconds), []
    for unit, size in SECONDS_PER.items():
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def check_budget_range(seconds: float, text: str | None = None) -> float:
    """seconds, when a budget may be that long; ConfigError naming --budget otherwise."""
    given = text or duration_text(seconds)
    if seconds <= 0:
        raise ConfigError(f"--budget {given} must be longer than zero")
    if seconds > MAX_BUDGET_S:
        most = duration_text(MAX_BUDGET_S)
        raise ConfigError(f"--budget {given} is longer than the most a run may take, {most}")
    return seconds


def range_words(value: int, lowest: int, highest: int) -> str | None:
    """What is wrong with value as a number from lowest to highest; None when nothing is."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"must be a whole number, not {value!r}"
    if value < lowest:
        bound = "0 or more" if lowest == 0 else f"at least {lowest}"
    elif value > highest:
        bound = f"at most {highest}"
    else:
        return None
    return f"must be {bound}, not {value} ({lowest} to {highest})"


def check_range(flag: str, value: int, lowest: int, highest: int, error=ConfigError) -> int:
    """value, when it is a whole number from lowest to highest; `error` naming flag otherwise."""
    if (wrong := range_words(value, lowest, highest)) is not None:
        raise error(f"{flag} {wrong}")
    return value


def bounded_int(lowest: int, highest: int):
    """An argparse type: a whole number from lowest to highest, else argparse's usage error
    naming the flag, the value and the range."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if (wrong := range_words(value, lowest, highest)) is not None:
            raise argparse.ArgumentTypeError(wrong)
        return value

    parse.__name__ = f"whole number from {lowest} to {highest}"
    parse.limits = (lowest, highest)
    return parse


def bounded_float(lowest: float, highest: float):
    """An argparse type: a number from lowest to highest, else argparse's usage error."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if (wrong := float_range_words(value, lowest, highest)) is not None:
            raise argparse.ArgumentTypeError(wrong)
        return value

    parse.__name__ = f"number from {lowest:g} to {highest:g}"
    parse.limits = (lowest, highest)
    return parse


def float_range_words(value: float, lowest: float, highest: float) -> str | None:
    """range_words for a number that need not be whole (NaN is outside every range)."""
    if lowest <= value <= highest:
        return None
    return f"must be from {lowest:g} to {highest:g}, not {value} ({lowest} to {highest})"


def parse_overrides(texts) -> tuple[tuple[str, str], ...]:
    """`--set`'s NAME=VALUE texts as (name, value) pairs, the value's type checked once the
    trial is known; ExportError for one that is not NAME=VALUE."""
    pairs = []
    for text in texts or ():
        name, sep, value = text.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ExportError(f"--set {text!r} is not NAME=VALUE (say rotation_degrees=15)")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def recipe_signature(training: dict) -> dict:
    """What a stored release (a shipped config's training, a member's file) was trained
    with, as Recipe.signature gives it: two releases of one configuration are the same
    recipe when their signatures are equal."""
    extras = {name: training.get(name) for name in RECIPE_EXTRAS if training.get(name)}
    return {
        "epochs": training.get("epochs"),
        "clean_epochs": training.get("clean_epochs") or 0,
        **extras,
    }


def confirm_seed_range(seed: int, count: int) -> range:
    """The seeds that `count` confirmation retrainings of a run of `seed` train from."""
    return range(seed + CONFIRM_SEED_OFFSET + 1, seed + CONFIRM_SEED_OFFSET + count + 1)


def check_seeds(flag: str, base: int, seeds: range, error=ConfigError) -> None:
    """`error` naming flag where its seeds (from base, the run's or the recipe's seed) go past
    the highest seed there is."""
    if seeds and seeds[-1] > MAX_SEED:
        room = MAX_SEED - (seeds[-1] - base)
        raise error(
            f"{flag} asks for seeds up to {seeds[-1]} from seed {base}, past the highest, "
            f"{MAX_SEED}: take fewer, or a seed of at most {room}"
        )


def check_run_name(name: str) -> str:
    return check_name(name, "run name")


def check_name(name: str, what: str) -> str:
    """A run name or worker id: a folder or file name that a command line can repeat, so
    that the resume command a run prints parses, and that `--fresh` can rename."""
    if not RUN_NAME.fullmatch(name or "") or name in (".", ".."):
        raise ConfigError(f"{what} {name!r} may hold only letters, digits, '-', '_' and '.'")
    if name.startswith("-"):
        raise ConfigError(f"{what} {name!r} may not start with '-' (it would read as a flag)")
    if len(name) > MAX_NAME:
        raise ConfigError(f"{what} is {len(name)} characters long; at most {MAX_NAME} are allowed")
    return name


def with_space_defaults(
    config: SearchConfig, space_defaults: dict, given: set[str]
) -> SearchConfig:
    """Apply a space's own fit defaults (the seed baseline trains 10 epochs at batch 200)
    to every field the user did not set explicitly."""
    known = {f.name for f in fields(SearchConfig)}
    updates = {k: v for k, v in space_defaults.items() if k in known and k not in given}
    return replace(config, **updates)


@dataclass(frozen=True)
class Recipe:
    """How `bench export` makes the model it ships from the winning trial, for one model and
    for each member of an ensemble alike."""

    retrain: bool = False  # train afresh on all training images, not ship the trial's weights
    epochs: int | None = None  # a retrain's epochs; None: the trial's best epoch count
    seed: int | None = None  # a retrain's seed (an ensemble's first); None: the run's seed
    clean_epochs: int = 0  # a retrain's last epochs, on the digits without augmentation
    ema: float | None = None  # momentum of a moving average of the weights, which ships
    elastic: float | None = None  # alpha (pixels) of an elastic distortion while training
    # (name, value) pairs: hyperparameters a retrain trains with instead of the trial's
    # (the augmentation's strength, say), their values as given on the command line.
    overrides: tuple[tuple[str, str], ...] = ()

    def extras(self) -> dict:
        """The refinements given, JSON-ready; none given: {} (an older recipe's)."""
        given = {"ema": self.ema, "elastic": self.elastic, "overrides": dict(self.overrides)}
        return {name: value for name, value in given.items() if value}

    def signature(self, epochs: int) -> dict:
        """What the release is trained with, its epochs resolved (see recipe_signature)."""
        return {"epochs": epochs, "clean_epochs": self.clean_epochs, **self.extras()}

    def flags(self, with_seed: bool = True) -> list[str]:
        """`bench export`'s flags that make this recipe (its seed left out if asked)."""
        given = {
            "--epochs": self.epochs,
            "--seed": self.seed if with_seed else None,
            "--clean-epochs": self.clean_epochs or None,
            "--ema": None if self.ema is None else f"{self.ema:g}",
            "--elastic": None if self.elastic is None else f"{self.elastic:g}",
        }
        flags = ["--retrain"] if self.retrain else []
        for flag, value in given.items():
            flags += [] if value is None else [flag, str(value)]
        for name, value in self.overrides:
            flags += ["--set", f"{name}={value}"]
        return flags

    @classmethod
    def of_signature(cls, signature: dict, seed: int | None = None) -> Recipe:
        """The retrain recipe of a signature, from seed."""
        overrides = tuple((signature.get("overrides") or {}).items())
        return cls(
            True,
            signature["epochs"],
            seed,
            signature.get("clean_epochs") or 0,
            signature.get("ema"),
            signature.get("elastic"),
            overrides,
        )

    def validate(self) -> Recipe:
        """The recipe itself; ExportError naming the flag for settings that do not fit."""
        needs = {"--epochs": self.epochs is not None, "--seed": self.seed is not None}
        needs["--clean-epochs"] = bool(self.clean_epochs)
        needs.update({EXTRA_FLAGS[name]: bool(value) for name, value in self.extras().items()})
        why = {
            "--epochs": "a trial's weights have their own epochs",
            "--seed": "a trial's weights have the run's seed",
            "--clean-epochs": "a trial's weights are as it left them",
            "--ema": "a trial's weights were not averaged",
            "--elastic": "a trial's weights trained without it",
            "--set": "a trial's weights have its own hyperparameters",
        }
        for flag, given in needs.items():
            if given and not self.retrain:
                raise ExportError(f"{flag} needs --retrain: {why[flag]}")
        for name, (lowest, highest) in RECIPE_LIMITS.items():
            if (value := getattr(self, name)) is not None:
                flag = f"--{name.replace('_', '-')}"
                check_range(flag, value, lowest, highest, ExportError)
        for name, (lowest, highest) in RECIPE_FLOAT_LIMITS.items():
            value = getattr(self, name)
            if value is not None and (wrong := float_range_words(value, lowest, highest)):
                raise ExportError(f"--{name} {wrong}")
        return self


AS_TRAINED = Recipe()  # ship the trial's own weights
