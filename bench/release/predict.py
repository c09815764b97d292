"""`bench predict MODEL_DIR IMAGE...`: classify image files with a shipped model, after the
preprocessing its dataset's images had.

MNIST (LeCun, Cortes and Burges, the MNIST page): each digit was fitted into a 20x20 box,
keeping its aspect ratio, then centred in the 28x28 image by its centre of mass; ink is light
on a dark ground. Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): grey, 28x28, the garment light
on a dark ground. A photo or scan of either is turned into that: grey, inverted when its
border is light (dark ink on paper), then fitted as its dataset's images were.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bench.core import data, records
from bench.errors import DataError

SIDE = 28
BOX = 20  # MNIST's digits fit into this box before they are centred by their centre of mass
INK = 0.2  # a pixel at least this bright (after inversion) counts as ink for the bounding box
TOP = 3


def read_grey(path: Path) -> np.ndarray:
    """An image file as grey levels in [0, 1], its EXIF rotation applied; DataError naming the
    file for one that cannot be read as an image."""
    try:
        with Image.open(path) as image:
            grey = ImageOps.exif_transpose(image).convert("L")
            return np.asarray(grey, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: not an image this can read ({type(exc).__name__})") from None


def light_on_dark(grey: np.ndarray) -> np.ndarray:
    """The image with its ground dark: inverted when its border is mostly light."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return 1.0 - grey if float(np.median(border)) > 0.5 else grey


def as_mnist(grey: np.ndarray, path: Path) -> np.ndarray:
    """28x28 uint8: the ink's bounding box fitted into 20x20 (aspect kept), placed so that its
    centre of mass is the image's centre."""
    ink = light_on_dark(grey)
    rows, cols = np.nonzero(ink >= INK)
    if not len(rows):
        raise DataError(f"{path}: no digit found (the image is blank)")
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    patch = np.asarray(_image(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    patch = np.clip(patch, 0, 255)
    weights = patch / max(float(patch.sum()), 1e-6)
    centre_y = float((weights.sum(axis=1) * np.arange(patch.shape[0])).sum())
    centre_x = float((weights.sum(axis=0) * np.arange(patch.shape[1])).sum())
    top = _clamp(round((SIDE - 1) / 2 - centre_y), SIDE - patch.shape[0])
    left = _clamp(round((SIDE - 1) / 2 - centre_x), SIDE - patch.shape[1])
    canvas = np.zeros((SIDE, SIDE), dtype=np.float32)
    canvas[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    return canvas.round().astype(np.uint8)


def as_fashion(grey: np.ndarray, path: Path) -> np.ndarray:
    """28x28 uint8: the whole image, its ground dark, resized."""
    resized = _image(light_on_dark(grey)).resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


PREPARE = {"mnist": as_mnist, "fashion_mnist": as_fashion}


def _image(values: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(values, 0.0, 1.0) * 255).round().astype(np.uint8))


def _clamp(offset: int, room: int) -> int:
    return min(max(offset, 0), room)


def shipped_dataset(model_dir: Path) -> str:
    """The dataset a `bench export` folder's model was trained on; DataError for a folder
    that is not one."""
    config_path = model_dir / "config.json"
    if not (model_dir / records.MODEL_FILE).is_file() or not config_path.is_file():
        raise DataError(
            f"{model_dir}: not an exported model (needs {records.MODEL_FILE} and config.json)"
        )
    try:
        shipped = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{config_path} cannot be read ({type(exc).__name__})") from None
    return (shipped.get("dataset") or {}).get("name", data.DEFAULT_DATASET)


def prepare(model_dir: Path, paths: list[Path]) -> tuple[str, np.ndarray]:
    """The model's dataset, and the images as its data was: (N, 28, 28, 1) in [0, 1]. Done
    before the model loads, so that a bad file is answered at once."""
    dataset = shipped_dataset(model_dir)
    fit = PREPARE.get(dataset, as_fashion)
    prepared = np.stack([fit(read_grey(path), path) for path in paths])
    return dataset, data.scale(prepared)


def classify(model_dir: Path, dataset: str, paths: list[Path], images: np.ndarray) -> list[dict]:
    """Each image's class and its top-3 probabilities, in the order given."""
    import keras  # only here: preparing the images needs no TensorFlow

    model = keras.saving.load_model(model_dir / records.MODEL_FILE, compile=False)
    probs = np.asarray(model.predict(images, verbose=0), dtype=np.float64)
    names = data.CLASS_NAMES.get(dataset) or tuple(str(n) for n in range(probs.shape[1]))
    results = []
    for path, row in zip(paths, probs, strict=True):
        order = np.argsort(row)[::-1][:TOP]
        top = [{"class": names[i], "probability": round(float(row[i]), 4)} for i in order]
        results.append({"image": str(path), "class": top[0]["class"], "top": top})
    return results


def lines(results: list[dict]) -> list[str]:
    """'digit.png: 7 (7 0.9812, 1 0.0101, 9 0.0040)' per image."""
    return [
        f"{r['image']}: {r['class']} ("
        + ", ".join(f"{t['class']} {t['probability']:.4f}" for t in r["top"])
        + ")"
        for r in results
    ]
