"""`bench predict MODEL_DIR IMAGE...`: classify image files with a shipped model, after the
preprocessing its dataset's images had.

MNIST (LeCun, Cortes and Burges, the MNIST page): each digit was fitted into a 20x20 box,
keeping its aspect ratio, then centred in the 28x28 image by its centre of mass; ink is light
on a dark ground. Fashion-MNIST (Xiao, Rasul and Vollgraf 2017): grey, 28x28, the garment light
on a dark ground. A photo or scan of either is turned into that: grey (from any mode Pillow
reads; transparent pixels made ground), inverted when its border is light (dark ink on paper),
then fitted as its dataset's images were.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bench.core import data, records, swap
from bench.errors import DataError

SIDE = 28
BOX = 20  # MNIST's digits fit into this box before they are centred by their centre of mass
INK = 0.2  # a pixel at least this bright (after inversion) counts as ink for the bounding box
TOP = 3
# A 48-megapixel phone photo is read; past this the decoded image alone takes gigabytes, and a
# digit needs a few thousand pixels. Checked from the header, before anything is decoded.
MAX_PIXELS = 50_000_000
SIXTEEN_BIT = 65535.0  # PNG and TIFF scale 16-bit samples to this full range
# Modes "I" and "F" state no range: 16-bit data read as "I", a float image in [0, 1] or one
# converted from 8 bits. Their values are taken on the smallest of these that holds them,
# else on their own minimum to maximum.
FULL_SCALES = (1.0, 255.0, SIXTEEN_BIT)
# Opaque pixels covering more of an image than this are a page the ink is on; fewer, the ink.
PAGE = 0.5


def read_grey(path: Path) -> np.ndarray:
    """An image file's first frame as grey levels in [0, 1], its EXIF rotation applied;
    DataError naming the file for one that cannot be read as an image or has more than
    MAX_PIXELS pixels."""
    with _opened(path) as image:
        return grey_levels(ImageOps.exif_transpose(image))


def read_notes(path: Path) -> list[str]:
    """What a reader of the answer should know was left out of path: the other frames of an
    animation or a multi-page file."""
    with _opened(path) as image:
        try:
            frames = getattr(image, "n_frames", 1)
        except (OSError, EOFError, IndexError, ValueError):  # a later frame cut short
            return ["frame 1 read; the frames after it cannot be read"]
    return [f"frame 1 of {frames} read"] if frames > 1 else []


@contextlib.contextmanager
def _opened(path: Path):
    # Pillow's own decompression-bomb check prints a raw two-line warning past its limit and,
    # past twice that, refuses without naming the file; MAX_PIXELS, lower, stands in for it.
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as image:  # the header only: pixels are decoded on first use
            _check_size(image, path)
            yield image
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: not an image this can read ({type(exc).__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit


def _check_size(image: Image.Image, path: Path) -> None:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise DataError(
            f"{path}: {width}x{height} is {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,} pixels; scale it down first"
        )


def grey_levels(image: Image.Image) -> np.ndarray:
    """Any mode Pillow reads as grey levels in [0, 1] (float32): 16- and 32-bit values
    scaled by their range, not clipped at 8 bits; transparent pixels made ground."""
    grey, alpha = _grey_and_alpha(image)
    return grey if alpha is None else _composited(grey, alpha)


def _grey_and_alpha(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        # Pillow's convert("L") clips these at 255: a 16-bit picture turns white.
        values = np.asarray(image, dtype=np.float64)
        key = image.info.get("transparency")
        opaque = None if not isinstance(key, int | float) else (values != key)
        alpha = None if opaque is None else opaque.astype(np.float32)
        return _scaled(values, image.mode).astype(np.float32), alpha
    if image.mode == "LAB":  # convert() has no way from LAB; L* is not linear in grey
        return _levels(_lab_as_rgb(image).convert("L")), None
    if image.has_transparency_data:  # an alpha band, or a transparent palette entry or colour
        rgba = image.convert("RGBA")
        return _levels(rgba.convert("L")), _levels(rgba.getchannel("A"))
    return _levels(image.convert("L")), None


def _lab_as_rgb(image: Image.Image) -> Image.Image:
    from PIL import ImageCms

    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    return ImageCms.applyTransform(image, ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))


def _levels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32) / 255.0


def _scaled(values: np.ndarray, mode: str) -> np.ndarray:
    values = np.where(np.isfinite(values), values, 0.0)
    if mode.startswith("I;16"):
        return values / SIXTEEN_BIT
    low, high = float(values.min()), float(values.max())
    if low >= 0:
        for full in FULL_SCALES:
            if high <= full:
                return values / full
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _composited(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Transparent pixels become ground. Opaque ones covering most of the image are a page:
    the ground takes its tone. Fewer are the ink itself (a digit drawn on a transparent
    canvas): the ground takes the other tone, so that the ink stands out on it."""
    cover = float(alpha.mean())
    if cover == 0.0:
        return np.zeros_like(grey)  # nothing drawn: blank
    light = float((grey * alpha).sum() / alpha.sum()) > 0.5
    ground = float(light if cover > PAGE else not light)
    return grey * alpha + ground * (1.0 - alpha)


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
    swap.recover(model_dir)  # an export killed between its two renames set best/ aside
    dataset = shipped_dataset(model_dir)
    fit = PREPARE.get(dataset, as_fashion)
    prepared = np.stack([fit(read_grey(path), path) for path in paths])
    return dataset, data.scale(prepared)


def classify(model_dir: Path, dataset: str, paths: list[Path], images: np.ndarray) -> list[dict]:
    """Each image's class, its top-3 probabilities and what reading it left out (notes), in
    the order given."""
    import keras  # only here: preparing the images needs no TensorFlow

    notes = [read_notes(path) for path in paths]  # before the model: a file gone is said at once
    model = keras.saving.load_model(model_dir / records.MODEL_FILE, compile=False)
    probs = np.asarray(model.predict(images, verbose=0), dtype=np.float64)
    names = data.CLASS_NAMES.get(dataset) or tuple(str(n) for n in range(probs.shape[1]))
    results = []
    for path, row, said in zip(paths, probs, notes, strict=True):
        order = np.argsort(row)[::-1][:TOP]
        top = [{"class": names[i], "probability": round(float(row[i]), 4)} for i in order]
        results.append({"image": str(path), "class": top[0]["class"], "top": top, "notes": said})
    return results


def lines(results: list[dict]) -> list[str]:
    """'digit.png: 7 (7 0.9812, 1 0.0101, 9 0.0040)' per image, its notes after it
    ('; frame 1 of 12 read')."""
    return [
        f"{r['image']}: {r['class']} ("
        + ", ".join(f"{t['class']} {t['probability']:.4f}" for t in r["top"])
        + ")"
        + "".join(f"; {note}" for note in r.get("notes", ()))
        for r in results
    ]
