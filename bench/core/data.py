"""MNIST (or Fashion-MNIST) from IDX files: find, validate, checksum, split and scale, once
per process."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from bench.errors import DataError

NUM_CLASSES = 10
IMAGE_SIDE = 28
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE, 1)  # what every model takes, one image
TRAIN_COUNT = 60_000
TEST_COUNT = 10_000
DEFAULT_VAL_SIZE = 10_000
IMAGES_MAGIC = 2051  # IDX: unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # IDX: unsigned byte, 1 dimension
PIXEL_MAX = 255.0
ENV_DATA_DIR = "BENCH_DATA_DIR"
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "mnist"
DEFAULT_DATASET = "mnist"
# Fashion-MNIST (Zalando, MIT licence) has MNIST's format and sizes: 28x28 grey, 60k/10k.
# Debian's dataset-fashion-mnist installs the first folder; Keras' loader fills the second.
FASHION_DIRS = (
    Path("/usr/share/datasets/fashion-mnist"),
    Path.home() / ".keras" / "datasets" / "fashion-mnist",
)
DATASETS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
# fingerprint() of each whole dataset (before --train-limit and --test-limit cut it): other
# files under these names are refused unless a run says it trains on custom data.
FINGERPRINTS = {
    "mnist": "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16",
    "fashion_mnist": "ca3ab2a37f845e1b8ae23cab1b51749a3011ba3bf1d9016176d75cbaabac376f",
}
# Class names in label order, where a label is not its own name (Fashion-MNIST's README).
CLASS_NAMES = {
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
# What a model card says each dataset holds, and whose it is under which licence.
DATASET_CREDITS = {
    "mnist": ("handwritten digits", "LeCun, Cortes and Burges; CC BY-SA 3.0"),
    "fashion_mnist": (
        "images of clothing",
        "Xiao, Rasul and Vollgraf, Zalando Research; MIT licence",
    ),
}
INSTALL_HINT = {"fashion_mnist": "apt install dataset-fashion-mnist, or give --data-dir"}
SUMS_RAW = "SHA256SUMS.raw"  # digests of the decompressed bytes
SUMS_GZ = "SHA256SUMS"  # digests of the .gz files as shipped
FILES = {
    "train_images": ("train-images-idx3-ubyte", IMAGES_MAGIC, TRAIN_COUNT),
    "train_labels": ("train-labels-idx1-ubyte", LABELS_MAGIC, TRAIN_COUNT),
    "test_images": ("t10k-images-idx3-ubyte", IMAGES_MAGIC, TEST_COUNT),
    "test_labels": ("t10k-labels-idx1-ubyte", LABELS_MAGIC, TEST_COUNT),
}


@dataclass(frozen=True)
class Raw:
    """The four MNIST arrays as uint8, where they came from, and their fingerprint."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str


@dataclass(frozen=True)
class Splits:
    """uint8 images (n, 28, 28, 1), views into the loaded arrays, and uint8 labels.

    The search trains from the uint8 images (bench.train.pipeline scales each batch), so a search
    process holds the pixels once, as bytes. x_train, x_val and x_test are the scaled
    float32 copies (4x the bytes), made on first use for code that wants arrays.
    """

    train_images: np.ndarray
    y_train: np.ndarray
    val_images: np.ndarray
    y_val: np.ndarray
    test_images: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    @cached_property
    def x_train(self) -> np.ndarray:
        return to_float(self.train_images)

    @cached_property
    def x_val(self) -> np.ndarray:
        return to_float(self.val_images)

    @cached_property
    def x_test(self) -> np.ndarray:
        return to_float(self.test_images)


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    return dataset


def find_data_dir(
    data_dir: str | os.PathLike | None = None, dataset: str = DEFAULT_DATASET
) -> Path | None:
    """Where to read IDX files from: --data-dir; for MNIST $BENCH_DATA_DIR, then the repo's
    copy; for Fashion-MNIST Debian's folder, then Keras' cache; else None.

    An explicitly named folder that does not exist is an error, not a silent fallback.
    """
    check_dataset(dataset)
    named = [("--data-dir", data_dir)]
    if dataset == DEFAULT_DATASET:
        named.append((ENV_DATA_DIR, os.environ.get(ENV_DATA_DIR)))
    for origin, candidate in named:
        if candidate:
            path = Path(candidate)
            if not path.is_dir():
                raise DataError(f"data directory {path} (from {origin}) does not exist")
            return path
    if dataset == DEFAULT_DATASET:
        return REPO_DATA_DIR if REPO_DATA_DIR.is_dir() else None
    stem = FILES["train_images"][0]
    has_files = (d for d in FASHION_DIRS if any((d / n).is_file() for n in (stem, stem + ".gz")))
    return next(has_files, None)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / (stem + '.gz')}: missing (neither {stem}.gz nor {stem} found)")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from exc


def parse_idx(data: bytes, magic: int, count: int, name: str = "IDX data") -> np.ndarray:
    """Parse and validate one IDX image or label file.

    Args:
        data: the decompressed file content.
        magic: IMAGES_MAGIC or LABELS_MAGIC.
        count: the number of items expected.
        name: how error messages name the file.
    Returns:
        uint8 array (count, 28, 28) for images, (count,) for labels.
    """
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header_size = 4 * (1 + ndim)
    if len(data) < header_size:
        raise DataError(f"{name}: truncated header ({len(data)} bytes)")
    found_magic, *dims = struct.unpack(f">{1 + ndim}I", data[:header_size])
    if found_magic != magic:
        raise DataError(f"{name}: wrong magic number {found_magic}, expected {magic}")
    if dims[0] != count:
        raise DataError(f"{name}: holds {dims[0]} items, expected {count}")
    if ndim == 3 and tuple(dims[1:]) != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{name}: images are {dims[1]}x{dims[2]}, expected 28x28")
    expected = header_size + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"{name}: {len(data)} bytes, expected {expected} (truncated or padded)")
    array = np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)
    if ndim == 1 and array.max(initial=0) >= NUM_CLASSES:
        raise DataError(f"{name}: label {int(array.max())} outside 0-{NUM_CLASSES - 1}")
    return array


def _read_sums(path: Path) -> dict[str, str]:
    """{file name: digest} from a sha256sum-style file; {} when there is none."""
    if not path.is_file():
        return {}
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if not parts:
            continue
        if len(parts) != 2:
            raise DataError(f"{path}: line {number} is not '<sha256>  <file name>'")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def _check_sum(path: Path, content: bytes, sums: dict[str, str], sums_file: Path) -> None:
    expected = sums.get(path.name)
    if expected and hashlib.sha256(content).hexdigest() != expected:
        raise DataError(f"{path}: SHA256 mismatch with {sums_file} (corrupted?)")


def read_idx_dir(folder: Path) -> Raw:
    """Read and validate the four IDX files of a folder (gzip or plain), checksums included."""
    sums = {name: _read_sums(folder / name) for name in (SUMS_GZ, SUMS_RAW)}
    arrays = {}
    for key, (stem, magic, count) in FILES.items():
        path = _idx_file(folder, stem)
        if path.suffix == ".gz":
            _check_sum(path, path.read_bytes(), sums[SUMS_GZ], folder / SUMS_GZ)
        content = _read_bytes(path)
        raw_path = path.with_suffix("") if path.suffix == ".gz" else path
        _check_sum(raw_path, content, sums[SUMS_RAW], folder / SUMS_RAW)
        arrays[key] = parse_idx(content, magic, count, name=str(path))
    return _raw(arrays, source=str(folder))


def _raw(arrays: dict[str, np.ndarray], source: str) -> Raw:
    return Raw(
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
        source=source,
        sha256=fingerprint(arrays),
    )


def fingerprint(arrays: dict[str, np.ndarray]) -> str:
    """SHA256 over the pixel and label bytes, so that gzip, plain and Keras copies agree."""
    digest = hashlib.sha256()
    for key in FILES:
        digest.update(np.ascontiguousarray(arrays[key], dtype=np.uint8).tobytes())
    return digest.hexdigest()


def _from_keras(dataset: str = DEFAULT_DATASET) -> Raw:
    import keras  # only here: a download is the last resort and needs Keras anyway

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, dataset).load_data()
    except Exception as exc:  # keras raises plain Exception on a failed download
        hint = f"; {INSTALL_HINT[dataset]}" if dataset in INSTALL_HINT else ""
        raise DataError(
            f"no {DATASETS[dataset]} files found and Keras could not download them ({exc}){hint}"
        ) from exc
    arrays = dict(
        train_images=x_train, train_labels=y_train, test_images=x_test, test_labels=y_test
    )
    return _raw(arrays, source=f"keras.datasets.{dataset}")


_CACHE: dict[str, Raw] = {}


def load_raw(data_dir: str | os.PathLike | None = None, dataset: str = DEFAULT_DATASET) -> Raw:
    """The validated arrays of a dataset, read once per process and folder."""
    folder = find_data_dir(data_dir, dataset)
    key = str(folder.resolve()) if folder else f"keras:{dataset}"
    if key not in _CACHE:
        _CACHE[key] = read_idx_dir(folder) if folder else _from_keras(dataset)
    return _CACHE[key]


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) or (n, 28, 28, 1) -> float32 (n, 28, 28, 1) in [0, 1]."""
    return to_float(images.reshape(len(images), *IMAGE_SHAPE))


def check_same_data(raw: Raw, sha256: str | None, error: type[Exception]) -> None:
    """Raise `error` (the command's bad-input type) unless `raw` is the data a run was
    trained on, by its fingerprint."""
    if raw.sha256 != sha256:
        raise error("the data differs from the data the run was trained on (SHA256)")


def with_channel(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) -> (n, 28, 28, 1), a view: no pixel is copied."""
    return images[..., np.newaxis]


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1], same shape."""
    return images.astype(np.float32) / PIXEL_MAX


def make_splits(
    raw: Raw,
    val_size: int = DEFAULT_VAL_SIZE,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Splits:
    """Validation = the last val_size training images; the limits keep the first N."""
    total = len(raw.y_train)
    if not 0 < val_size < total:
        raise DataError(f"--val-size must be between 1 and {total - 1}, not {val_size}")
    for flag, limit in (("--train-limit", train_limit), ("--test-limit", test_limit)):
        if limit is not None and limit < 1:
            raise DataError(f"{flag} must be at least 1, not {limit}")
    cut = total - val_size
    train_end = cut if train_limit is None else min(train_limit, cut)
    test_end = len(raw.y_test) if test_limit is None else min(test_limit, len(raw.y_test))
    return Splits(
        train_images=with_channel(raw.x_train[:train_end]),
        y_train=raw.y_train[:train_end],
        val_images=with_channel(raw.x_train[cut:]),
        y_val=raw.y_train[cut:],
        test_images=with_channel(raw.x_test[:test_end]),
        y_test=raw.y_test[:test_end],
        source=raw.source,
        sha256=raw.sha256,
    )


def load(
    data_dir: str | os.PathLike | None = None,
    val_size: int = DEFAULT_VAL_SIZE,
    train_limit: int | None = None,
    test_limit: int | None = None,
    dataset: str = DEFAULT_DATASET,
    custom: bool = False,
) -> Splits:
    """Find, validate, identify and split a dataset (see find_data_dir for where it looks;
    check_identity for custom)."""
    raw = check_identity(load_raw(data_dir, dataset), dataset, custom)
    return make_splits(raw, val_size, train_limit, test_limit)


def load_for_run(config: dict, data_dir: str | os.PathLike | None = None) -> Raw:
    """The dataset a run's config.json names, from data_dir, else the run's own data_dir."""
    dataset = config.get("dataset", DEFAULT_DATASET)
    raw = load_raw(data_dir or config.get("data_dir"), dataset)
    return check_identity(raw, dataset, bool(config.get("custom_data")))


def check_identity(raw: Raw, dataset: str, custom: bool) -> Raw:
    """The data, when it is the dataset it is named as (its fingerprint is the dataset's) or
    custom data is asked for; DataError naming both fingerprints otherwise."""
    known = FINGERPRINTS[dataset]
    if custom or raw.sha256 == known:
        return raw
    raise DataError(
        f"the data in {raw.source} is not {DATASETS[dataset]}: its fingerprint is "
        f"{raw.sha256}, {DATASETS[dataset]}'s is {known}; --custom-data trains on it as "
        "custom data"
    )


def splits_for_run(raw: Raw, config: dict) -> Splits:
    """The splits a run's config.json describes."""
    return make_splits(raw, config["val_size"], config["train_limit"], config["test_limit"])


def full_training_set(raw: Raw) -> tuple[np.ndarray, np.ndarray]:
    """All 60,000 training images (uint8, n x 28 x 28 x 1) and labels, to retrain a winner."""
    return with_channel(raw.x_train), raw.y_train
