"""Synthetic stand-ins cut from real photographs, for machines without the real archives.

The photos are those scikit-image ships in its wheel (no download). Class ``c`` is one photo with one
colour cast: photo ``c mod P`` and cast ``c div P`` (P photos; with fewer classes than photos, each class
its own photo and cast). Each sample is a random square crop (12-50 % of the photo's shorter side), resized
to the dataset's size, flipped at random, with random brightness and per-channel jitter. So the images
have the statistics of photographs (their JPEG files are as large as real photos of that size give, not as
noise gives), and the class signal (content plus colour cast) is learned by a small CNN in one epoch.
Everything is drawn from ``numpy.random.default_rng([seed, split])``: the same seed gives the same bytes.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from thesislib.datasets import SPLITS, DatasetSpec
from thesislib.sources import SourceData

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png",
          "motorcycle_left.png", "retina.jpg", "camera.png", "moon.png", "coins.png", "brick.png",
          "grass.png", "gravel.png"]
CAST_STRENGTH = 0.35


@lru_cache(maxsize=1)
def photos() -> tuple:
    """The source photographs as RGB PIL images (grayscale ones converted)."""
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    return tuple(Image.open(folder / name).convert("RGB") for name in PHOTOS)


def class_plan(num_classes: int) -> list:
    """(photo index, cast index, number of casts) for each class."""
    count = len(PHOTOS)
    if num_classes <= count:
        return [(c, c, num_classes) for c in range(num_classes)]
    casts = -(-num_classes // count)
    return [(c % count, c // count, casts) for c in range(num_classes)]


def class_names(num_classes: int) -> list:
    return [f"{Path(PHOTOS[photo]).stem}-cast{cast:02d}" for photo, cast, _ in class_plan(num_classes)]


def cast_gains(cast: int, casts: int) -> np.ndarray:
    """Per-channel gains of a colour cast: a hue angle spread evenly over the casts."""
    angle = 2 * np.pi * cast / casts
    return 1 + CAST_STRENGTH * np.cos(angle - np.array([0, 2 * np.pi / 3, 4 * np.pi / 3]))


def _sample(photo: Image.Image, size: int, rng: np.random.Generator, gains: np.ndarray) -> np.ndarray:
    side = min(photo.size)
    crop = int(side * rng.uniform(0.12, 0.5))
    left, top = rng.integers(0, photo.width - crop + 1), rng.integers(0, photo.height - crop + 1)
    image = photo.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + crop, top + crop),
                         reducing_gap=2.0)
    pixels = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    jitter = gains * rng.uniform(0.9, 1.1) * rng.uniform(0.98, 1.02, size=3)
    return np.clip(pixels * jitter.astype(np.float32), 0, 255).astype(np.uint8)


def generate_split(spec: DatasetSpec, count: int, seed: int, split: str, progress: bool = False) -> tuple:
    """``count`` images of ``spec`` with balanced, shuffled labels, deterministic from (seed, split)."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    labels = rng.permutation(np.arange(count) % spec.num_classes).astype(np.int64)
    plan, pool = class_plan(spec.num_classes), photos()
    images = np.empty((count, *spec.shape), dtype=np.uint8)
    for i in tqdm(range(count), desc=f"synthetic {spec.name} {split}", disable=not progress, unit="img"):
        photo, cast, casts = plan[labels[i]]
        images[i] = _sample(pool[photo], spec.size, rng, cast_gains(cast, casts))
    return images, labels


def generate(spec: DatasetSpec, scale: float, seed: int, progress: bool = False) -> SourceData:
    sizes = spec.split_sizes(scale)
    splits = {split: generate_split(spec, sizes[split], seed, split, progress) for split in SPLITS}
    return SourceData(spec.name, class_names(spec.num_classes), splits, "synthetic")
