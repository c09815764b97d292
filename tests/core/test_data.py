"""bench.core.data: IDX parsing, validation, checksums, lookup order, caching, splits."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import bench.core.data
from bench.core.data import (
    FINGERPRINTS,
    IMAGES_MAGIC,
    LABELS_MAGIC,
    DataError,
    Raw,
    find_data_dir,
    fingerprint,
    load,
    load_for_run,
    load_raw,
    make_splits,
    parse_idx,
    read_idx_dir,
)

SIDE = 28
N_TRAIN = 12  # tiny synthetic "MNIST": enough for a val tail and limits
N_TEST = 5
STEMS = {key: stem for key, (stem, _, _) in bench.core.data.FILES.items()}
README_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
README_TEST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
README_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
README_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
README_TRAIN_MEAN = 0.1307
README_TEST_MEAN = 0.1325
MEAN_TOL = 1e-3


# -- helpers -------------------------------------------------------------------------------


def images_bytes(images: np.ndarray, magic: int = IMAGES_MAGIC) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", magic, n, rows, cols) + images.astype(np.uint8).tobytes()


def labels_bytes(labels: np.ndarray, magic: int = LABELS_MAGIC) -> bytes:
    return struct.pack(">II", magic, len(labels)) + labels.astype(np.uint8).tobytes()


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8)


def random_labels(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, n, dtype=np.uint8)


def synthetic_arrays() -> dict[str, np.ndarray]:
    return {
        "train_images": random_images(N_TRAIN, seed=1),
        "train_labels": random_labels(N_TRAIN, seed=2),
        "test_images": random_images(N_TEST, seed=3),
        "test_labels": random_labels(N_TEST, seed=4),
    }


def file_bytes(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """Decompressed IDX content per FILES key."""
    return {
        key: images_bytes(arr) if key.endswith("images") else labels_bytes(arr)
        for key, arr in arrays.items()
    }


def write_idx_dir(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> Path:
    """Write the four IDX files (gzip or plain) and return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, content in file_bytes(arrays).items():
        name = STEMS[key] + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(content) if gz else content)
    return folder


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture(autouse=True)
def _fresh_module_state(monkeypatch):
    """Empty load cache, no BENCH_DATA_DIR from the caller's shell."""
    monkeypatch.setattr(bench.core.data, "_CACHE", {})
    monkeypatch.delenv(bench.core.data.ENV_DATA_DIR, raising=False)


@pytest.fixture
def small_counts(monkeypatch):
    """Make read_idx_dir expect N_TRAIN / N_TEST items instead of 60000 / 10000."""
    for key, (stem, magic, _) in list(bench.core.data.FILES.items()):
        count = N_TRAIN if key.startswith("train") else N_TEST
        monkeypatch.setitem(bench.core.data.FILES, key, (stem, magic, count))


@pytest.fixture
def arrays():
    return synthetic_arrays()


@pytest.fixture
def gz_dir(tmp_path, small_counts, arrays):
    return write_idx_dir(tmp_path / "gz", arrays, gz=True)


@pytest.fixture
def plain_dir(tmp_path, small_counts, arrays):
    return write_idx_dir(tmp_path / "plain", arrays, gz=False)


# -- parse_idx -----------------------------------------------------------------------------


def test_parse_idx_images_shape_dtype_and_values():
    images = random_images(3)
    parsed = parse_idx(images_bytes(images), IMAGES_MAGIC, 3, name="imgs")
    assert parsed.shape == (3, SIDE, SIDE)
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, images)


def test_parse_idx_labels_shape_dtype_and_values():
    labels = np.array([0, 9, 3, 7], dtype=np.uint8)
    parsed = parse_idx(labels_bytes(labels), LABELS_MAGIC, 4, name="lbls")
    assert parsed.shape == (4,)
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, labels)


def test_parse_idx_accepts_zero_items():
    assert parse_idx(labels_bytes(np.zeros(0, np.uint8)), LABELS_MAGIC, 0).shape == (0,)


@pytest.mark.parametrize(
    "content, magic, count, message",
    [
        (
            images_bytes(random_images(2), magic=2049),
            IMAGES_MAGIC,
            2,
            "wrong magic number 2049, expected 2051",
        ),
        (
            labels_bytes(np.zeros(2, np.uint8), magic=2051),
            LABELS_MAGIC,
            2,
            "wrong magic number 2051, expected 2049",
        ),
        (images_bytes(random_images(2)), IMAGES_MAGIC, 3, "holds 2 items, expected 3"),
        (labels_bytes(np.zeros(4, np.uint8)), LABELS_MAGIC, 3, "holds 4 items, expected 3"),
        (
            struct.pack(">IIII", IMAGES_MAGIC, 1, 27, 28) + bytes(27 * 28),
            IMAGES_MAGIC,
            1,
            "images are 27x28, expected 28x28",
        ),
        (
            struct.pack(">IIII", IMAGES_MAGIC, 1, 28, 32) + bytes(28 * 32),
            IMAGES_MAGIC,
            1,
            "images are 28x32, expected 28x28",
        ),
        (struct.pack(">III", IMAGES_MAGIC, 1, 28), IMAGES_MAGIC, 1, "truncated header (12 bytes)"),
        (struct.pack(">I", LABELS_MAGIC), LABELS_MAGIC, 1, "truncated header (4 bytes)"),
        (b"", LABELS_MAGIC, 1, "truncated header (0 bytes)"),
        (
            images_bytes(random_images(2))[:-1],
            IMAGES_MAGIC,
            2,
            "1583 bytes, expected 1584 (truncated or padded)",
        ),
        (
            images_bytes(random_images(2)) + b"\0",
            IMAGES_MAGIC,
            2,
            "1585 bytes, expected 1584 (truncated or padded)",
        ),
        (
            labels_bytes(np.zeros(3, np.uint8))[:-2],
            LABELS_MAGIC,
            3,
            "9 bytes, expected 11 (truncated or padded)",
        ),
        (
            labels_bytes(np.zeros(3, np.uint8)) + b"\0",
            LABELS_MAGIC,
            3,
            "12 bytes, expected 11 (truncated or padded)",
        ),
        (labels_bytes(np.array([1, 10, 2], np.uint8)), LABELS_MAGIC, 3, "label 10 outside 0-9"),
        (labels_bytes(np.array([255], np.uint8)), LABELS_MAGIC, 1, "label 255 outside 0-9"),
    ],
    ids=[
        "images-wrong-magic",
        "labels-wrong-magic",
        "images-too-few",
        "labels-too-many",
        "rows-27",
        "cols-32",
        "images-short-header",
        "labels-short-header",
        "empty",
        "images-truncated-body",
        "images-padded-body",
        "labels-truncated-body",
        "labels-padded-body",
        "label-10",
        "label-255",
    ],
)
def test_parse_idx_rejects_bad_content(content, magic, count, message):
    with pytest.raises(DataError, match=r"^some/file\.idx: " + re.escape(message)):
        parse_idx(content, magic, count, name="some/file.idx")


def test_parse_idx_accepts_label_9():
    assert parse_idx(labels_bytes(np.array([9], np.uint8)), LABELS_MAGIC, 1)[0] == 9


# -- reading a folder: formats, corruption, missing files ------------------------------------


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_read_idx_dir_loads_gzip_and_plain(tmp_path, small_counts, arrays, gz):
    folder = write_idx_dir(tmp_path / "d", arrays, gz=gz)
    raw = read_idx_dir(folder)
    np.testing.assert_array_equal(raw.x_train, arrays["train_images"])
    np.testing.assert_array_equal(raw.y_train, arrays["train_labels"])
    np.testing.assert_array_equal(raw.x_test, arrays["test_images"])
    np.testing.assert_array_equal(raw.y_test, arrays["test_labels"])
    assert raw.x_train.shape == (N_TRAIN, SIDE, SIDE) and raw.y_test.shape == (N_TEST,)
    assert raw.source == str(folder)
    assert raw.sha256 == fingerprint(arrays)


def test_read_idx_dir_prefers_gz_over_plain(gz_dir, arrays):
    other = synthetic_arrays()
    other["train_labels"] = (other["train_labels"] + 1) % 10
    plain = file_bytes(other)["train_labels"]
    (gz_dir / STEMS["train_labels"]).write_bytes(plain)
    raw = read_idx_dir(gz_dir)
    np.testing.assert_array_equal(raw.y_train, arrays["train_labels"])


def test_count_mismatch_in_a_folder_names_the_file(gz_dir, monkeypatch):
    stem, magic, _ = bench.core.data.FILES["test_labels"]
    monkeypatch.setitem(bench.core.data.FILES, "test_labels", (stem, magic, N_TEST + 1))
    path = gz_dir / (stem + ".gz")
    with pytest.raises(DataError, match=re.escape(f"{path}: holds {N_TEST} items")):
        read_idx_dir(gz_dir)


def test_truncated_gz_is_a_data_error_naming_the_file(gz_dir):
    path = gz_dir / (STEMS["train_images"] + ".gz")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=re.escape(f"{path}: unreadable")):
        read_idx_dir(gz_dir)


def test_gz_that_is_not_gzip_is_a_data_error_naming_the_file(gz_dir):
    path = gz_dir / (STEMS["test_labels"] + ".gz")
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataError, match=re.escape(f"{path}: unreadable")):
        read_idx_dir(gz_dir)


def test_gz_with_corrupted_body_is_a_data_error_naming_the_file(gz_dir):
    path = gz_dir / (STEMS["train_images"] + ".gz")
    content = bytearray(path.read_bytes())
    middle = len(content) // 2
    content[middle : middle + 64] = bytes(b ^ 0xFF for b in content[middle : middle + 64])
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_idx_dir(gz_dir)


def test_gz_holding_a_truncated_idx_names_the_gz_file(gz_dir):
    path = gz_dir / (STEMS["train_labels"] + ".gz")
    content = file_bytes(synthetic_arrays())["train_labels"]
    path.write_bytes(gzip.compress(content[:-1]))
    with pytest.raises(DataError, match=re.escape(f"{path}: ") + r".*truncated or padded"):
        read_idx_dir(gz_dir)


def test_missing_file_is_named(gz_dir):
    (gz_dir / (STEMS["test_images"] + ".gz")).unlink()
    with pytest.raises(DataError, match=re.escape(STEMS["test_images"]) + r".*missing"):
        read_idx_dir(gz_dir)


def test_empty_folder_is_a_data_error(tmp_path, small_counts):
    with pytest.raises(DataError, match="missing"):
        read_idx_dir(tmp_path)


# -- checksums -----------------------------------------------------------------------------


def write_sums(folder: Path, name: str, digests: dict[str, str]) -> None:
    (folder / name).write_text("".join(f"{d}  {n}\n" for n, d in digests.items()))


def gz_digests(folder: Path) -> dict[str, str]:
    return {p.name: sha256(p.read_bytes()) for p in folder.glob("*.gz")}


def raw_digests(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    return {STEMS[key]: sha256(content) for key, content in file_bytes(arrays).items()}


def test_matching_sums_pass(gz_dir, arrays):
    write_sums(gz_dir, bench.core.data.SUMS_GZ, gz_digests(gz_dir))
    write_sums(gz_dir, bench.core.data.SUMS_RAW, raw_digests(arrays))
    assert read_idx_dir(gz_dir).sha256 == fingerprint(arrays)


def test_sums_accept_binary_marker_and_uppercase(gz_dir, arrays):
    digests = {"*" + name: d.upper() for name, d in raw_digests(arrays).items()}
    write_sums(gz_dir, bench.core.data.SUMS_RAW, digests)
    assert read_idx_dir(gz_dir).sha256 == fingerprint(arrays)


def test_gz_sums_mismatch_is_detected(gz_dir):
    digests = gz_digests(gz_dir)
    bad = STEMS["train_labels"] + ".gz"
    digests[bad] = "0" * 64
    write_sums(gz_dir, bench.core.data.SUMS_GZ, digests)
    with pytest.raises(DataError, match=re.escape(f"{gz_dir / bad}: SHA256 mismatch")):
        read_idx_dir(gz_dir)


def test_raw_sums_mismatch_is_detected_for_gz_files(gz_dir, arrays):
    digests = raw_digests(arrays)
    digests[STEMS["test_images"]] = "f" * 64
    write_sums(gz_dir, bench.core.data.SUMS_RAW, digests)
    with pytest.raises(DataError, match=re.escape(STEMS["test_images"]) + ".*SHA256 mismatch"):
        read_idx_dir(gz_dir)


def test_raw_sums_mismatch_is_detected_for_plain_files(plain_dir, arrays):
    digests = raw_digests(arrays)
    bad = STEMS["train_images"]
    digests[bad] = "a" * 64
    write_sums(plain_dir, bench.core.data.SUMS_RAW, digests)
    with pytest.raises(DataError, match=re.escape(f"{plain_dir / bad}: SHA256 mismatch")):
        read_idx_dir(plain_dir)


def test_raw_sums_catch_content_changed_after_recompression(gz_dir, arrays):
    # The .gz digest is not listed; only the decompressed content can tell.
    write_sums(gz_dir, bench.core.data.SUMS_RAW, raw_digests(arrays))
    changed = dict(arrays, train_images=arrays["train_images"].copy())
    changed["train_images"][0, 0, 0] ^= 1
    path = gz_dir / (STEMS["train_images"] + ".gz")
    path.write_bytes(gzip.compress(file_bytes(changed)["train_images"]))
    with pytest.raises(DataError, match="SHA256 mismatch"):
        read_idx_dir(gz_dir)


def test_raw_sums_mismatch_names_the_raw_sums_file(plain_dir, arrays):
    digests = raw_digests(arrays)
    digests[STEMS["train_images"]] = "a" * 64
    write_sums(plain_dir, bench.core.data.SUMS_RAW, digests)
    with pytest.raises(DataError, match=re.escape(bench.core.data.SUMS_RAW)):
        read_idx_dir(plain_dir)


def test_malformed_sums_file_is_a_data_error(gz_dir):
    (gz_dir / bench.core.data.SUMS_GZ).write_text("not-a-valid-line\n")
    with pytest.raises(DataError, match=re.escape(bench.core.data.SUMS_GZ)):
        read_idx_dir(gz_dir)


# -- where the data comes from -------------------------------------------------------------


def test_lookup_explicit_dir_beats_env(tmp_path, monkeypatch):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir()
    env.mkdir()
    monkeypatch.setenv(bench.core.data.ENV_DATA_DIR, str(env))
    assert find_data_dir(explicit) == explicit
    assert find_data_dir(str(explicit)) == explicit


def test_lookup_explicit_dir_wins_even_if_env_is_bad(tmp_path, monkeypatch):
    monkeypatch.setenv(bench.core.data.ENV_DATA_DIR, str(tmp_path / "nowhere"))
    assert find_data_dir(tmp_path) == tmp_path


def test_lookup_env_beats_repo_copy(tmp_path, monkeypatch):
    monkeypatch.setenv(bench.core.data.ENV_DATA_DIR, str(tmp_path))
    assert find_data_dir() == tmp_path


def test_lookup_falls_back_to_repo_copy():
    assert bench.core.data.REPO_DATA_DIR.is_dir()
    assert find_data_dir() == bench.core.data.REPO_DATA_DIR


def test_lookup_returns_none_without_any_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.core.data, "REPO_DATA_DIR", tmp_path / "no-repo-copy")
    assert find_data_dir() is None


def test_without_any_copy_keras_loader_is_the_last_resort(tmp_path, monkeypatch, arrays):
    import keras

    monkeypatch.setattr(bench.core.data, "REPO_DATA_DIR", tmp_path / "no-repo-copy")
    pairs = (
        (arrays["train_images"], arrays["train_labels"]),
        (arrays["test_images"], arrays["test_labels"]),
    )
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: pairs)
    raw = bench.core.data.load_raw()
    assert raw.source == "keras.datasets.mnist"
    assert raw.sha256 == bench.core.data.fingerprint(arrays)  # same fingerprint as the IDX files


def test_keras_download_failure_is_a_data_error(tmp_path, monkeypatch):
    import keras

    def offline():
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(bench.core.data, "REPO_DATA_DIR", tmp_path / "no-repo-copy")
    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(DataError, match="no MNIST files found and Keras could not download"):
        bench.core.data.load_raw()


def test_missing_explicit_dir_names_it_and_its_origin(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(DataError, match=re.escape(f"{missing} (from --data-dir) does not exist")):
        find_data_dir(missing)


def test_missing_env_dir_names_it_and_its_origin(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-env-dir"
    monkeypatch.setenv(bench.core.data.ENV_DATA_DIR, str(missing))
    with pytest.raises(DataError, match=re.escape(f"{missing} (from BENCH_DATA_DIR)")):
        find_data_dir()
    with pytest.raises(DataError, match="BENCH_DATA_DIR"):
        load_raw()


def test_load_raw_reads_the_folder_lookup_chose(tmp_path, small_counts, monkeypatch):
    explicit_arrays = synthetic_arrays()
    env_arrays = synthetic_arrays()
    env_arrays["test_labels"] = (env_arrays["test_labels"] + 3) % 10
    explicit = write_idx_dir(tmp_path / "explicit", explicit_arrays)
    env = write_idx_dir(tmp_path / "env", env_arrays)
    monkeypatch.setenv(bench.core.data.ENV_DATA_DIR, str(env))
    from_env = load_raw()
    assert from_env.source == str(env)
    np.testing.assert_array_equal(from_env.y_test, env_arrays["test_labels"])
    from_explicit = load_raw(explicit)
    assert from_explicit.source == str(explicit)
    np.testing.assert_array_equal(from_explicit.y_test, explicit_arrays["test_labels"])


# -- caching -------------------------------------------------------------------------------


def test_load_raw_caches_per_folder(gz_dir):
    first = load_raw(gz_dir)
    for path in gz_dir.iterdir():
        path.unlink()
    assert load_raw(gz_dir) is first  # not re-read: the files are gone
    bench.core.data._CACHE.clear()
    with pytest.raises(DataError, match="missing"):
        load_raw(gz_dir)


def test_load_raw_cache_key_is_the_resolved_folder(gz_dir, monkeypatch):
    first = load_raw(gz_dir)
    monkeypatch.chdir(gz_dir.parent)
    assert load_raw(gz_dir.name) is first


def test_load_raw_keeps_folders_apart(gz_dir, plain_dir):
    assert load_raw(gz_dir) is not load_raw(plain_dir)
    assert load_raw(gz_dir).source == str(gz_dir)
    assert load_raw(plain_dir).source == str(plain_dir)


# -- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_same_for_gzip_and_plain_copies(gz_dir, plain_dir, arrays):
    assert read_idx_dir(gz_dir).sha256 == read_idx_dir(plain_dir).sha256 == fingerprint(arrays)


def test_fingerprint_changes_with_one_pixel(tmp_path, small_counts, arrays):
    changed = dict(arrays, test_images=arrays["test_images"].copy())
    changed["test_images"][-1, SIDE - 1, SIDE - 1] ^= 0x80
    original = read_idx_dir(write_idx_dir(tmp_path / "a", arrays)).sha256
    modified = read_idx_dir(write_idx_dir(tmp_path / "b", changed)).sha256
    assert original != modified
    assert re.fullmatch(r"[0-9a-f]{64}", original)


def test_fingerprint_changes_with_one_label(arrays):
    changed = dict(arrays, train_labels=(arrays["train_labels"] + 1) % 10)
    assert fingerprint(arrays) != fingerprint(changed)


def test_fingerprint_ignores_dtype_of_equal_values(arrays):
    widened = {key: arr.astype(np.int64) for key, arr in arrays.items()}
    assert fingerprint(widened) == fingerprint(arrays)


# -- make_splits ---------------------------------------------------------------------------


def make_raw(n_train: int = N_TRAIN, n_test: int = N_TEST) -> Raw:
    x_train = np.arange(n_train, dtype=np.uint8)[:, None, None] * np.ones((1, SIDE, SIDE), np.uint8)
    x_test = (200 + np.arange(n_test, dtype=np.uint8))[:, None, None] * np.ones(
        (1, SIDE, SIDE), np.uint8
    )
    return Raw(
        x_train=x_train,
        y_train=np.arange(n_train, dtype=np.uint8) % 10,
        x_test=x_test,
        y_test=np.arange(n_test, dtype=np.uint8) % 10,
        source="synthetic",
        sha256="f" * 64,
    )


def test_make_splits_val_is_the_tail_and_train_the_rest():
    raw = make_raw()
    splits = make_splits(raw, val_size=4)
    assert splits.sizes() == {"train": N_TRAIN - 4, "val": 4, "test": N_TEST}
    np.testing.assert_array_equal(splits.y_train, raw.y_train[: N_TRAIN - 4])
    np.testing.assert_array_equal(splits.y_val, raw.y_train[N_TRAIN - 4 :])
    np.testing.assert_array_equal(splits.y_test, raw.y_test)
    # Image i of the synthetic set is filled with the value i: check which images went where.
    np.testing.assert_allclose(splits.x_val[:, 0, 0, 0] * 255.0, np.arange(N_TRAIN - 4, N_TRAIN))
    np.testing.assert_allclose(splits.x_train[:, 5, 5, 0] * 255.0, np.arange(N_TRAIN - 4))
    assert splits.source == "synthetic" and splits.sha256 == "f" * 64


def test_make_splits_limits_keep_the_first_n():
    raw = make_raw()
    splits = make_splits(raw, val_size=4, train_limit=3, test_limit=2)
    assert splits.sizes() == {"train": 3, "val": 4, "test": 2}
    np.testing.assert_array_equal(splits.y_train, raw.y_train[:3])
    np.testing.assert_array_equal(splits.y_test, raw.y_test[:2])
    np.testing.assert_allclose(splits.x_test[:, 0, 0, 0] * 255.0, [200, 201])
    # The validation tail does not move with train_limit.
    np.testing.assert_array_equal(splits.y_val, raw.y_train[N_TRAIN - 4 :])


def test_make_splits_limits_larger_than_the_data_are_capped():
    splits = make_splits(make_raw(), val_size=4, train_limit=10_000, test_limit=10_000)
    assert splits.sizes() == {"train": N_TRAIN - 4, "val": 4, "test": N_TEST}


def test_make_splits_scales_to_unit_float32_with_channel_axis():
    raw = make_raw()
    x_train = raw.x_train.copy()
    x_train[0] = 0
    x_train[1] = 255
    raw = Raw(x_train, raw.y_train, raw.x_test, raw.y_test, raw.source, raw.sha256)
    splits = make_splits(raw, val_size=2)
    for x, n in ((splits.x_train, N_TRAIN - 2), (splits.x_val, 2), (splits.x_test, N_TEST)):
        assert x.dtype == np.float32
        assert x.shape == (n, SIDE, SIDE, 1)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert splits.x_train[0].max() == 0.0
    assert splits.x_train[1].min() == 1.0
    assert splits.x_test[0, 0, 0, 0] == pytest.approx(200 / 255.0)
    assert splits.y_train.dtype == np.uint8


@pytest.mark.parametrize("val_size", [0, -1, N_TRAIN, N_TRAIN + 5])
def test_make_splits_rejects_bad_val_size(val_size):
    with pytest.raises(DataError, match=rf"--val-size .* not {val_size}$"):
        make_splits(make_raw(), val_size=val_size)


@pytest.mark.parametrize("val_size", [1, N_TRAIN - 1])
def test_make_splits_accepts_extreme_val_sizes(val_size):
    assert make_splits(make_raw(), val_size=val_size).sizes()["val"] == val_size


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"train_limit": 0}, "--train-limit"),
        ({"train_limit": -2}, "--train-limit"),
        ({"test_limit": 0}, "--test-limit"),
        ({"test_limit": -7}, "--test-limit"),
    ],
)
def test_make_splits_rejects_bad_limits(kwargs, flag):
    (value,) = kwargs.values()
    with pytest.raises(DataError, match=rf"^{flag} must be at least 1, not {value}$"):
        make_splits(make_raw(), val_size=4, **kwargs)


def test_load_splits_a_folder(gz_dir, arrays):
    splits = load(gz_dir, val_size=5, train_limit=4, test_limit=3, custom=True)
    assert splits.sizes() == {"train": 4, "val": 5, "test": 3}
    np.testing.assert_array_equal(splits.y_val, arrays["train_labels"][-5:])
    assert splits.sha256 == fingerprint(arrays)
    assert splits.source == str(gz_dir)


def test_files_that_are_not_the_named_dataset_are_refused_unless_custom(gz_dir, arrays):
    mine, known = fingerprint(arrays), FINGERPRINTS["mnist"]
    said = f"is not MNIST: its fingerprint is {mine}, MNIST's is {known}; --custom-data"
    with pytest.raises(DataError, match=re.escape(f"the data in {gz_dir} {said}")):
        load(gz_dir, val_size=5)
    with pytest.raises(DataError, match="is not MNIST"):  # a run's own check, when resumed
        load_for_run({"data_dir": str(gz_dir)})
    assert load_for_run({"data_dir": str(gz_dir), "custom_data": True}).sha256 == mine


def test_plain_copy_of_gz_dir_loads_identically(gz_dir, tmp_path):
    plain = tmp_path / "decompressed"
    plain.mkdir()
    for path in gz_dir.glob("*.gz"):
        with gzip.open(path, "rb") as src, open(plain / path.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    a, b = load_raw(gz_dir), load_raw(plain)
    assert a.sha256 == b.sha256
    np.testing.assert_array_equal(a.x_train, b.x_train)


# -- the shipped copy ----------------------------------------------------------------------


def test_shipped_mnist_matches_the_readme():
    splits = load()
    assert splits.source == str(bench.core.data.REPO_DATA_DIR)
    assert splits.sizes() == {"train": 50_000, "val": 10_000, "test": 10_000}
    y_train = np.concatenate([splits.y_train, splits.y_val])
    x_train = np.concatenate([splits.x_train, splits.x_val])
    assert len(y_train) == 60_000 and len(splits.y_test) == 10_000
    assert splits.y_train[:10].tolist() == README_TRAIN_LABELS
    assert splits.y_test[:10].tolist() == README_TEST_LABELS
    assert np.bincount(y_train, minlength=10).tolist() == README_TRAIN_CLASS_COUNTS
    assert np.bincount(splits.y_test, minlength=10).tolist() == README_TEST_CLASS_COUNTS
    assert float(x_train.mean(dtype=np.float64)) == pytest.approx(README_TRAIN_MEAN, abs=MEAN_TOL)
    test_mean = float(splits.x_test.mean(dtype=np.float64))
    assert test_mean == pytest.approx(README_TEST_MEAN, abs=MEAN_TOL)
    assert splits.sha256 == load_raw().sha256


# ---------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_is_found_in_the_first_folder_that_holds_it(tmp_path, monkeypatch):
    empty, cached = tmp_path / "debian", tmp_path / "keras-cache"
    empty.mkdir()
    write_idx_dir(cached, synthetic_arrays())
    monkeypatch.setattr(bench.core.data, "FASHION_DIRS", (empty, cached))
    monkeypatch.setenv(
        bench.core.data.ENV_DATA_DIR, str(tmp_path / "mnist-only")
    )  # not for fashion
    assert find_data_dir(dataset="fashion_mnist") == cached
    monkeypatch.setattr(bench.core.data, "FASHION_DIRS", (empty,))
    assert find_data_dir(dataset="fashion_mnist") is None
    assert find_data_dir(cached, dataset="fashion_mnist") == cached  # --data-dir still wins


def test_fashion_mnist_falls_back_to_keras_and_says_how_to_install_it(tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(bench.core.data, "FASHION_DIRS", (tmp_path / "none",))

    def offline():
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(DataError, match="no Fashion-MNIST files found.*dataset-fashion-mnist"):
        load_raw(dataset="fashion_mnist")
    with pytest.raises(DataError, match="unknown dataset 'emnist'"):
        load_raw(dataset="emnist")


def test_the_installed_fashion_mnist_is_read_whole_and_is_not_mnist():
    # .ci/run and `make` install Debian's dataset-fashion-mnist where apt is available.
    fashion = load_raw(dataset="fashion_mnist")
    assert fashion.source == str(bench.core.data.FASHION_DIRS[0])
    assert (len(fashion.y_train), len(fashion.y_test)) == (60_000, 10_000)
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10  # 1,000 test images a class
    assert fashion.sha256 != load_raw().sha256
    # The fingerprints the suite knows the two by are those of the files as published.
    assert (load_raw().sha256, fashion.sha256) == (
        FINGERPRINTS["mnist"],
        FINGERPRINTS["fashion_mnist"],
    )
