"""How a run is made: one frozen dataclass, validated, written next to the results as JSON."""

from __future__ import annotations

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

    @property
    def run_dir(self) -> Path:
        return Path(self.results) / self.run

    def validate(self) -> SearchConfig:
        """Raise ConfigError for a value no run can use; return self for chaining."""
        check_run_name(self.run)
        if self.tuner not in TUNER_NAMES:
            raise ConfigError(f"unknown tuner {self.tuner!r}; known: {', '.join(TUNER_NAMES)}")
        positive = (
            "max_trials",
            "max_epochs",
            "batch_size",
            "train_limit",
            "test_limit",
            "confirm_top",
            "release_epochs",
        )
        per_process = ("trials_per_process", "workers", "threads")
        for name in (*positive, "max_params", "max_failures", *per_process):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
        if self.dataset not in data.DATASETS:
            known = ", ".join(data.DATASETS)
            raise ConfigError(f"unknown --dataset {self.dataset!r}; known: {known}")
        for name in ("seed", "confirm_seeds", "release_clean_epochs"):
            if getattr(self, name) < 0:
                flag = f"--{name.replace('_', '-')}"
                raise ConfigError(f"{flag} must be 0 or more, not {getattr(self, name)}")
        if self.promotion not in PROMOTIONS:
            known = ", ".join(PROMOTIONS)
            raise ConfigError(f"unknown --promotion {self.promotion!r}; known: {known}")
        if self.patience < 1 or self.hyperband_factor < 2:
            raise ConfigError("patience must be >= 1 and hyperband factor >= 2")
        return self

    def identity(self) -> dict:
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}

    def to_json(self) -> dict:
        return asdict(self)

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
    return float(total)


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

    def validate(self) -> Recipe:
        """The recipe itself; ExportError naming the flag for settings that do not fit."""
        needs = {"--epochs": self.epochs is not None, "--seed": self.seed is not None}
        needs["--clean-epochs"] = bool(self.clean_epochs)
        why = {
            "--epochs": "a trial's weights have their own epochs",
            "--seed": "a trial's weights have the run's seed",
            "--clean-epochs": "a trial's weights are as it left them",
        }
        for flag, given in needs.items():
            if given and not self.retrain:
                raise ExportError(f"{flag} needs --retrain: {why[flag]}")
        if self.epochs is not None and self.epochs < 1:
            raise ExportError(f"--epochs must be at least 1, not {self.epochs}")
        if self.seed is not None and self.seed < 0:
            raise ExportError(f"--seed must be 0 or more, not {self.seed}")
        if self.clean_epochs < 0:
            raise ExportError(f"--clean-epochs must be 0 or more, not {self.clean_epochs}")
        return self


AS_TRAINED = Recipe()  # ship the trial's own weights
