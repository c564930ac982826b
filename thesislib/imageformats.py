"""The thesis's section 2.2: one photograph saved in 18 ways, with open libraries instead of Photoshop.

:func:`format_table` encodes a photograph as the thesis's 18 rows (BMP, PNG, TIFF, JPEG, JPEG 2000, WebP;
8 and 16 bits per channel; each codec at the thesis's settings), decodes every file again and measures
size, time, PSNR/SSIM and bit-exactness; the thesis's own sizes sit beside ours as ratios to its BMP.

How each row is made (``settings_table`` shows it as a table):

- 8-bit rows and the lossy rows are written by Pillow; the 16-bit rows by libraries that keep 16 bits per
  channel (tifffile for TIFF, imagecodecs' libpng for PNG), because Pillow writes neither and, reading them,
  silently keeps only the high byte (:func:`pillow_16bit_check` shows it).
- The 16-bit version of an 8-bit photograph is ``v * 257``: 0..255 spread exactly onto 0..65535 (the low
  byte repeats the high byte, so no information is added). A 16-bit input photograph is used as it is for
  the 16-bit rows, and rounded to 8 bits (``round(v / 257)``) for the others.
- Photoshop's scales map to the ends of each library's scale: "max" is the best quality (or, for lossless
  codecs, the strongest compression) the library offers, "min" the lowest quality. JPEG 2000 has no quality
  scale in Pillow (openjpeg): "lossy max" is the irreversible 9/7 wavelet with no rate limit, "lossy min" a
  compression of 100:1, and "lossy 50%" half the size of the lossless file: the thesis's 96 MB is half its
  lossless 191 MB, so Photoshop's 50% was a file-size target.
"""

import dataclasses
import io
import time
from pathlib import Path
from typing import Callable

import imagecodecs
import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from thesislib.atomic import write_atomic
from thesislib.errors import ThesisError
from thesislib.paths import project_path

SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"

# The colour photographs in scikit-image's wheel and where they come from (its docstrings say so).
SHIPPED_PHOTOGRAPHS = {
    "retina.jpg": "fundus photograph of a normal left eye, Mikael Häggström (2014), Wikimedia Commons, CC0",
    "hubble_deep_field.jpg": "Hubble eXtreme Deep Field, NASA (2012), public domain",
    "motorcycle_left.png": "Middlebury 2014 stereo benchmark (left view, downsampled 4x)",
    "motorcycle_right.png": "Middlebury 2014 stereo benchmark (right view, downsampled 4x)",
    "rocket.jpg": "DSCOVR launch on Falcon 9, SpaceX (2015), public domain",
    "coffee.png": "coffee cup, Rachel Michetti, CC0",
    "astronaut.png": "astronaut Eileen Collins, NASA Great Images, public domain",
    "chelsea.png": "Chelsea the cat, Stefan van der Walt, CC0",
}

JP2_MIN_RATIO = 100          # "lossy min": 100:1 against the 8-bit pixels (0.24 bits per pixel)
JP2_TARGET_FRACTION = 0.5    # "lossy 50%": half the size of the lossless file
THESIS_PIXELS = 9504 * 6336  # the thesis's photograph; its "MB" are MiB (its BMP: 180,652,086 B = 172 MiB)
BMP_HEADER_BYTES = 54        # 14-byte file header + 40-byte BITMAPINFOHEADER
MIN_SIDE = 8                 # SSIM's 7x7 window needs at least this many pixels a side
NATIVE_MODES = ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L")   # Pillow modes read as they are
WIDE_MODES = {"I": "32-bit integers", "F": "32-bit floats"}           # read only when their values fit
# The thesis's table lists its JPEG 2000 files as 8-bit (as ROWS does), but they were most likely 16-bit: its
# lossless one (191 MB) is larger than its 8-bit BMP (172 MB), which lossless JPEG 2000 of an 8-bit photograph
# never is. Ours are 8-bit.
THESIS_16_BIT_FORMATS = ("JPEG 2000",)

# What each format is and the bit depths it allows: per channel as the thesis lists them, and what the format's
# specification allows beyond that. All six are raster formats (a grid of pixels), none is vector.
FORMAT_PROPERTIES = (
    ("BMP", "lossless (uncompressed; RLE for palettes)", "8", "1, 4, 8 bits per pixel with a palette; 16, 24, 32"),
    ("PNG", "lossless (Deflate)", "1, 2, 4, 8, 16", "1, 2, 4 only for grey and palette images"),
    ("TIFF", "lossless (none, LZW, ZIP) or lossy (JPEG inside)", "8, 16", "1 to 64 bits per sample, floats too"),
    ("JPEG", "lossy (DCT)", "8", "12 in the rarely supported extended mode"),
    ("JPEG 2000", "lossless (5/3 wavelet) or lossy (9/7)", "8", "1 to 38 bits per component"),
    ("WebP", "lossless (VP8L) or lossy (VP8, always 4:2:0)", "8", "8 only"),
)
WEBP_EFFORT_SIDE = 512       # side of the centre crop on which webp_lossless_effort compares methods


# ---------------------------------------------------------------------------------------------- the source
@dataclasses.dataclass(frozen=True)
class Source:
    """The photograph as 8-bit and 16-bit RGB arrays, its name, and notes on how it was made."""

    rgb8: np.ndarray
    rgb16: np.ndarray
    name: str
    notes: tuple


def default_image() -> Path:
    """The largest (by pixels) colour photograph that scikit-image ships in its wheel: no download."""
    present = [SKIMAGE_DATA / name for name in SHIPPED_PHOTOGRAPHS if (SKIMAGE_DATA / name).is_file()]
    if not present:
        raise ThesisError(f"no photograph found in {SKIMAGE_DATA}: reinstall scikit-image, or pass --image")
    return max(present, key=_pixel_count)


def _pixel_count(path: Path) -> int:
    with Image.open(path) as img:
        return img.width * img.height


def resolve_image(image=None) -> Path:
    """The photograph's path: ``image`` or :func:`default_image`.

    A relative path is looked up in the working folder, then in the project root (where notebooks run).
    """
    if image is None or str(image) == "":
        return default_image()
    path = Path(image).expanduser()
    path = path if path.is_file() else project_path(image)
    if not path.is_file():
        problem = "is a folder, not a file" if path.is_dir() else "no such file"
        raise ThesisError(f"--image {image}: {problem}; give the path of a photograph "
                          "(PNG, JPEG, TIFF, BMP, WebP, JPEG 2000) or leave --image out for the default")
    return path


def load_source(image=None) -> Source:
    """Read the photograph as 8-bit and 16-bit RGB; grey, palette, alpha, 16-bit, 32-bit integer or float
    input gets a note (:func:`_from_wide_mode` says how the last two are read)."""
    path = resolve_image(image)
    array, notes = _read_array(path)
    rgb, notes = _to_rgb(array, notes)
    if rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
        raise ThesisError(f"--image {path}: {rgb.shape[1]}x{rgb.shape[0]} pixels is too small; "
                          f"give a photograph at least {MIN_SIDE}x{MIN_SIDE}")
    if rgb.dtype == np.uint16:
        rgb8, rgb16 = np.round(rgb / 257.0).astype(np.uint8), rgb
        notes.append("16-bit input: the 16-bit rows use it as it is, the others its rounded 8-bit version")
    else:
        rgb8, rgb16 = rgb, rgb.astype(np.uint16) * 257
        notes.append("16-bit rows: the 8-bit pixels times 257 (0..255 spread exactly onto 0..65535)")
    origin = SHIPPED_PHOTOGRAPHS.get(path.name) if path.parent == SKIMAGE_DATA else None
    about = f"{path.name}, {rgb.shape[1]}x{rgb.shape[0]} pixels" + (f", {origin}" if origin else "")
    return Source(rgb8, rgb16, path.name, (f"image: {about}", *notes))


def _read_array(path: Path):
    """Pixels as an array, as stored: 16-bit files keep 16 bits (Pillow would drop the low byte)."""
    try:
        with Image.open(path) as img:
            if _pillow_truncates(img):
                return imagecodecs.imread(str(path)), []
            if img.mode in NATIVE_MODES:
                array = np.asarray(img)
                return array.astype(array.dtype.newbyteorder("="), copy=False), []   # I;16B is big-endian
            if img.mode in WIDE_MODES:
                return _from_wide_mode(path, img.mode, np.asarray(img))
            note = f"mode {img.mode} converted to RGB"
            return np.asarray(img.convert("RGBA" if "A" in img.getbands() else "RGB")), [note]
    except ThesisError:
        raise
    except Exception as exc:   # Pillow raises OSError, ValueError, SyntaxError, DecompressionBombError...
        raise ThesisError(f"--image {path}: cannot read it as an image ({exc}); give a PNG, JPEG, TIFF, "
                          "BMP, WebP or JPEG 2000 photograph") from exc


def _from_wide_mode(path: Path, mode: str, array: np.ndarray):
    """Pillow's mode I (32-bit integers) or F (32-bit floats) as 8- or 16-bit samples, when the values fit.

    Floats from 0 to 1 are scaled to 0..65535; whole numbers up to 255 are read as 8-bit samples, up to
    65535 as 16-bit ones. Anything else (negative, larger, fractional beyond 0..1, NaN) is refused: clipped
    to 8 bits, as ``convert("RGB")`` would do, most photographs would turn white.
    """
    finite = bool(np.isfinite(array).all())
    low, high = (float(array.min()), float(array.max())) if finite else (np.nan, np.nan)
    values = f"values {low:.8g}..{high:.8g}" if finite else "NaN or infinite values"
    if mode == "F" and finite and 0 <= low and high <= 1:
        scaled = np.round(array * np.float64(65535)).astype(np.uint16)
        return scaled, [f"mode F ({values}) scaled to 0..65535 (16 bits)"]
    if finite and 0 <= low and high <= 65535 and np.array_equal(array, np.round(array)):
        bits = 8 if high <= 255 else 16
        samples = array.astype(np.uint8 if bits == 8 else np.uint16)
        return samples, [f"mode {mode} ({values}) read as {bits}-bit"]
    raise ThesisError(f"--image {path}: Pillow mode {mode} ({WIDE_MODES[mode]}) with {values} fits neither 8 "
                      "nor 16 bits; save it scaled to 0..255 or 0..65535 (floats to 0..1), or give another "
                      "photograph")


def _pillow_truncates(img) -> bool:
    """True for colour files with 16 bits per channel, which Pillow reads as 8-bit RGB."""
    rawmodes = [tile.args[0] if isinstance(tile.args, tuple) else tile.args for tile in img.tile]
    return img.mode in ("RGB", "RGBA") and any(";16" in str(mode) for mode in rawmodes)


def _to_rgb(array: np.ndarray, notes: list):
    """``array`` as (H, W, 3) uint8 or uint16, with a note for each conversion."""
    if array.dtype not in (np.uint8, np.uint16):
        raise ThesisError(f"pixels of type {array.dtype} are not supported: give an 8- or 16-bit photograph")
    if array.ndim == 3 and array.shape[2] in (2, 4):
        notes.append("alpha channel dropped")
        array = array[..., :-1]
    if array.ndim == 2 or array.shape[2] == 1:
        notes.append("grayscale converted to RGB (three equal channels)")
        array = np.repeat(array.reshape(array.shape[0], array.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(array), notes


# ---------------------------------------------------------------------------------------------- the codecs
def _pillow_encoder(fmt, **options):
    def encode(array, sizes):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, fmt, **options)
        return buffer.getvalue()
    return encode


def _pillow_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _tiff_encoder(compression):
    def encode(array, sizes):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, array, photometric="rgb", compression=compression,
                         predictor=compression is not None, metadata=None)
        return buffer.getvalue()
    return encode


def _tiff_decode(data: bytes) -> np.ndarray:
    return tifffile.imread(io.BytesIO(data))


def _png16_encode(array, sizes):
    return imagecodecs.png_encode(array, level=9)


def _jp2_fraction_of_lossless(array, sizes):
    ratio = array.nbytes / (JP2_TARGET_FRACTION * sizes["JPEG 2000 lossless"])
    return _pillow_encoder("JPEG2000", irreversible=True, quality_mode="rates",
                           quality_layers=[ratio])(array, sizes)


@dataclasses.dataclass(frozen=True)
class Row:
    """One of the thesis's 18 files: its name there, how we write it, and the thesis's size in MB."""

    name: str
    format: str
    bits: int
    setting: str
    lossless: bool
    thesis_mb: float
    library: str
    parameters: str
    encode: Callable = dataclasses.field(repr=False)
    decode: Callable = dataclasses.field(repr=False)


def _tiff_rows(bits, thesis_mb):
    made = [("none", None, "no compression"), ("LZW", "lzw", "LZW, horizontal predictor"),
            ("ZIP", "zlib", "Deflate (zlib level 6), horizontal predictor")]
    return [Row(f"TIFF {bits} bit {setting}", "TIFF", bits, setting, True, mb, "tifffile",
                parameters, _tiff_encoder(compression), _tiff_decode)
            for (setting, compression, parameters), mb in zip(made, thesis_mb)]


ROWS = (
    Row("BMP 8 bit", "BMP", 8, "none", True, 172, "Pillow", "24-bit BI_RGB, rows padded to 4 bytes",
        _pillow_encoder("BMP"), _pillow_decode),
    Row("PNG 8 bit max", "PNG", 8, "max", True, 53.1, "Pillow", "compress_level=9",
        _pillow_encoder("PNG", compress_level=9), _pillow_decode),
    Row("PNG 16 bit", "PNG", 16, "max", True, 241, "imagecodecs (libpng)", "level=9",
        _png16_encode, imagecodecs.png_decode),
    *_tiff_rows(8, (172, 55, 52)),
    *_tiff_rows(16, (344, 353, 282)),
    Row("JPEG max", "JPEG", 8, "max", False, 19.5, "Pillow", "quality=100, 4:4:4",
        _pillow_encoder("JPEG", quality=100, subsampling=0), _pillow_decode),
    Row("JPEG min", "JPEG", 8, "min", False, 1.01, "Pillow", "quality=1, 4:2:0",
        _pillow_encoder("JPEG", quality=1, subsampling=2), _pillow_decode),
    Row("JPEG 2000 lossless", "JPEG 2000", 8, "lossless", True, 191, "Pillow (openjpeg)",
        "reversible 5/3 wavelet", _pillow_encoder("JPEG2000"), _pillow_decode),
    Row("JPEG 2000 lossy max", "JPEG 2000", 8, "lossy max", False, 41.2, "Pillow (openjpeg)",
        "irreversible 9/7 wavelet, no rate limit",
        _pillow_encoder("JPEG2000", irreversible=True), _pillow_decode),
    Row("JPEG 2000 lossy 50%", "JPEG 2000", 8, "lossy 50%", False, 96, "Pillow (openjpeg)",
        "irreversible 9/7, rate for half the lossless file's size", _jp2_fraction_of_lossless,
        _pillow_decode),
    Row("JPEG 2000 lossy min", "JPEG 2000", 8, "lossy min", False, 1.98, "Pillow (openjpeg)",
        f"irreversible 9/7, rate {JP2_MIN_RATIO}:1",
        _pillow_encoder("JPEG2000", irreversible=True, quality_mode="rates",
                        quality_layers=[JP2_MIN_RATIO]), _pillow_decode),
    Row("WebP lossless", "WebP", 8, "lossless", True, 37.9, "Pillow (libwebp)",
        "lossless, quality=100, method=5",
        _pillow_encoder("WEBP", lossless=True, quality=100, method=5), _pillow_decode),
    Row("WebP lossy max", "WebP", 8, "lossy max", False, 2.03, "Pillow (libwebp)", "quality=100, method=6",
        _pillow_encoder("WEBP", quality=100, method=6), _pillow_decode),
    Row("WebP lossy min", "WebP", 8, "lossy min", False, 0.236, "Pillow (libwebp)", "quality=0, method=6",
        _pillow_encoder("WEBP", quality=0, method=6), _pillow_decode),
)
ROW_NAMES = tuple(row.name for row in ROWS)


def format_properties() -> pd.DataFrame:
    """The six formats: compression, the bit depths per channel the thesis lists, what the format also allows."""
    return pd.DataFrame(FORMAT_PROPERTIES, columns=["format", "compression", "thesis: bits per channel",
                                                    "the format also allows"]).set_index("format")


def settings_table() -> pd.DataFrame:
    """What each row's setting means here: the library and its parameters."""
    return pd.DataFrame([{"name": r.name, "bits": r.bits, "lossless": r.lossless, "library": r.library,
                          "parameters": r.parameters} for r in ROWS]).set_index("name")


# ---------------------------------------------------------------------------------------------- measuring
def bmp_size(width: int, height: int) -> int:
    """Bytes of a 24-bit BMP: the 54-byte header plus ``height`` rows of 3 bytes a pixel, padded to 4."""
    return BMP_HEADER_BYTES + (3 * width + 3) // 4 * 4 * height


def psnr(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for 8-bit images (inf when they are equal)."""
    from skimage.metrics import peak_signal_noise_ratio

    mse = np.mean((reference.astype(np.float64) - decoded) ** 2)
    return float("inf") if mse == 0 else float(peak_signal_noise_ratio(reference, decoded, data_range=255))


def ssim(reference: np.ndarray, decoded: np.ndarray, strip_rows: int = 256) -> float:
    """skimage's mean SSIM (7x7 window, per channel, borders cropped), computed in strips of rows.

    Each strip carries 3 rows of context on each side, so the result equals ``structural_similarity`` on
    the whole image, while memory stays bounded for a 60-megapixel photograph.
    """
    from skimage.metrics import structural_similarity

    pad, height = 3, reference.shape[0]
    total, count = 0.0, 0
    for start in range(pad, height - pad, strip_rows):
        stop = min(start + strip_rows, height - pad)
        window = slice(start - pad, stop + pad)
        _, full = structural_similarity(reference[window], decoded[window], data_range=255,
                                        channel_axis=-1, full=True)
        inner = full[pad:pad + stop - start, pad:-pad]
        total, count = total + inner.sum(dtype=np.float64), count + inner.size
    return total / count


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def measure(row: Row, source: Source, sizes: dict) -> dict:
    """Encode ``source`` as ``row``, decode it again, and return the row's figures."""
    original = source.rgb16 if row.bits == 16 else source.rgb8
    try:
        data, encode_s = _timed(row.encode, original, sizes)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:   # e.g. WebP is limited to 16383 px a side
        return {"bytes": np.nan, "encode_s": np.nan, "decode_s": np.nan, "psnr_db": np.nan, "ssim": np.nan,
                "exact": False, "error": f"{row.name}: {row.library} could not write it ({exc})"}
    decoded, decode_s = _timed(row.decode, data)
    exact = decoded.dtype == original.dtype and np.array_equal(decoded, original)
    lossy = not row.lossless
    return {"bytes": len(data), "encode_s": encode_s, "decode_s": decode_s,
            "psnr_db": psnr(original, decoded) if lossy else np.nan,
            "ssim": ssim(original, decoded) if lossy else np.nan, "exact": exact}


def format_table(image=None) -> pd.DataFrame:
    """The 18-row table for ``image`` (a path, or None for :func:`default_image`), indexed by row name.

    Columns: format, bits, setting, bytes, ratio_to_bmp, bits_per_pixel, encode_s, decode_s, psnr_db and
    ssim (lossy rows, against the source), exact (the decoded file equals the source), thesis_mb,
    thesis_ratio_to_bmp, thesis_bits_per_pixel, image. ``table.attrs["notes"]`` says which image, how it
    was converted, and which rows a library could not write (their figures are NaN).
    """
    source = image if isinstance(image, Source) else load_source(image)
    sizes, records, errors = {}, [], []
    for row in ROWS:
        figures = measure(row, source, sizes)
        errors += [figures.pop("error")] if "error" in figures else []
        sizes[row.name] = figures["bytes"]
        records.append({"name": row.name, "format": row.format, "bits": row.bits, "setting": row.setting,
                        **figures, "thesis_mb": row.thesis_mb})
    return _finish(pd.DataFrame(records).set_index("name"), source, errors)


def _finish(table: pd.DataFrame, source: Source, errors: list) -> pd.DataFrame:
    pixels = source.rgb8.shape[0] * source.rgb8.shape[1]
    table.insert(4, "ratio_to_bmp", table["bytes"] / table.loc["BMP 8 bit", "bytes"])
    table.insert(5, "bits_per_pixel", table["bytes"] * 8 / pixels)
    table["thesis_ratio_to_bmp"] = table["thesis_mb"] / table.loc["BMP 8 bit", "thesis_mb"]
    table["thesis_bits_per_pixel"] = table["thesis_mb"] * 2**20 * 8 / THESIS_PIXELS
    table["image"] = source.name
    table.attrs["notes"] = [*source.notes, *errors]
    return table


# ---------------------------------------------------------------------------------------------- beyond
# Quality settings for the size-against-quality curves (JPEG 2000: compression ratios against 8-bit pixels).
CURVE_SETTINGS = {
    "JPEG 4:2:0": [1, 5, 10, 20, 30, 50, 70, 85, 95, 100],
    "JPEG 4:4:4": [1, 5, 10, 20, 30, 50, 70, 85, 95, 100],
    "WebP": [0, 5, 10, 20, 30, 50, 70, 85, 95, 100],
    "JPEG 2000": [400, 200, 100, 50, 25, 12, 8],
}


def _curve_encoder(codec: str, value):
    if codec in ("JPEG 4:2:0", "JPEG 4:4:4"):
        return _pillow_encoder("JPEG", quality=value, subsampling=2 if codec == "JPEG 4:2:0" else 0)
    if codec == "WebP":
        return _pillow_encoder("WEBP", quality=value, method=6)
    return _pillow_encoder("JPEG2000", irreversible=True, quality_mode="rates", quality_layers=[value])


def quality_curve(image=None) -> pd.DataFrame:
    """Size against PSNR for the lossy codecs over their quality scales: one row per (codec, setting)."""
    source = image if isinstance(image, Source) else load_source(image)
    pixels, records = source.rgb8.shape[0] * source.rgb8.shape[1], []
    for codec, values in CURVE_SETTINGS.items():
        for value in values:
            data = _curve_encoder(codec, value)(source.rgb8, {})
            records.append({"codec": codec, "setting": value, "bytes": len(data),
                            "bits_per_pixel": len(data) * 8 / pixels,
                            "psnr_db": psnr(source.rgb8, _pillow_decode(data))})
    return pd.DataFrame(records)


def distinct_low_byte(rgb8: np.ndarray) -> np.ndarray:
    """16-bit pixels: ``rgb8`` as the high byte, ``255 - rgb8`` as the low byte (they differ everywhere)."""
    return rgb8.astype(np.uint16) * 256 + (255 - rgb8)


def pillow_16bit_check(source: Source) -> pd.DataFrame:
    """Write a 16-bit PNG and TIFF, read them back with Pillow: which of the 16 bits does Pillow keep?

    The files hold :func:`distinct_low_byte` of the source, not ``rgb16``: in ``v * 257`` the low byte
    repeats the high one, so keeping either would look the same.
    """
    probe, records = distinct_low_byte(source.rgb8), []
    for row in (r for r in ROWS if r.name in ("PNG 16 bit", "TIFF 16 bit none")):
        with Image.open(io.BytesIO(row.encode(probe, {}))) as img:
            pixels = np.asarray(img)
        records.append({"file": row.name, "written by": row.library, "Pillow mode": img.mode,
                        "Pillow dtype": str(pixels.dtype),
                        "keeps 16 bits": pixels.dtype == np.uint16 and np.array_equal(pixels, probe),
                        "= high byte": np.array_equal(pixels, probe >> 8),
                        "= low byte": np.array_equal(pixels, probe & 0xFF)})
    return pd.DataFrame(records).set_index("file")


def webp_lossless_effort(source: Source, methods=(5, 6), side: int = WEBP_EFFORT_SIDE) -> pd.DataFrame:
    """Lossless WebP of the source's centre crop (``side`` pixels a side) at each effort ``method``.

    Columns bytes and encode_s, one row per method; the crop keeps the slow ``method=6`` cheap.
    """
    height, width = source.rgb8.shape[:2]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    crop = np.ascontiguousarray(source.rgb8[top:top + side, left:left + side])
    records = []
    for method in methods:
        data, encode_s = _timed(_pillow_encoder("WEBP", lossless=True, quality=100, method=method), crop, {})
        records.append({"method": method, "bytes": len(data), "encode_s": encode_s})
    return pd.DataFrame(records).set_index("method")


# ---------------------------------------------------------------------------------------------- figures
def plot_sizes(table: pd.DataFrame, path=None):
    """Bar chart (log scale) of each row's size as a ratio to the 8-bit BMP, beside the thesis's ratio."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6), dpi=72, layout="constrained")
    ax, y = fig.add_subplot(), np.arange(len(table))
    here = f"here: {table['image'].iloc[0]}, open libraries"
    ax.barh(y - 0.2, table["ratio_to_bmp"], height=0.4, label=here)
    thesis = ax.barh(y + 0.2, table["thesis_ratio_to_bmp"], height=0.4,
                     label="thesis: 9504x6336 photo, Photoshop")
    handles = ax.get_legend_handles_labels()[0] + _hatch_thesis_16_bit(thesis, table["format"])
    ax.set_yticks(y, table.index)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color="grey", linewidth=0.8)
    ax.set_xlabel("file size / size of the 8-bit BMP (log scale)")
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    return _save_figure(fig, path)


def _hatch_thesis_16_bit(bars, formats) -> list:
    """Hatch the thesis's bars of :data:`THESIS_16_BIT_FORMATS`; return the legend entry saying why."""
    from matplotlib.patches import Patch

    hatched = [bar for bar, fmt in zip(bars, formats) if fmt in THESIS_16_BIT_FORMATS]
    for bar in hatched:
        bar.set(hatch="///", edgecolor="white")
    label = (f"thesis, {' and '.join(THESIS_16_BIT_FORMATS)}: listed as 8-bit, probably 16-bit by its sizes "
             "(ours: 8-bit)")
    return [Patch(facecolor=bar.get_facecolor(), edgecolor="white", hatch="///", label=label)
            for bar in hatched[:1]]


def plot_quality(curve: pd.DataFrame, table: pd.DataFrame, path=None):
    """Size (bits per pixel, log scale) against PSNR for the lossy codecs; the table's lossy rows circled."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=72, layout="constrained")
    ax = fig.add_subplot()
    for codec, points in curve.groupby("codec", sort=False):
        ax.plot(points["bits_per_pixel"], points["psnr_db"], marker="o", markersize=3, label=codec)
    lossy = table[table["psnr_db"].notna()]
    ax.scatter(lossy["bits_per_pixel"], lossy["psnr_db"], s=70, facecolors="none", edgecolors="black",
               zorder=3, label="rows of the table")
    for name, row in lossy.iterrows():
        ax.annotate(name, (row["bits_per_pixel"], row["psnr_db"]), xytext=(5, -10),
                    textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (log scale)")
    ax.set_ylabel("PSNR against the source (dB)")
    ax.legend(fontsize=8)
    return _save_figure(fig, path)


def _save_figure(fig, path):
    if path is not None:
        write_atomic(Path(path), lambda temporary: fig.savefig(temporary, dpi=150, format="png"))
    return fig


# ---------------------------------------------------------------------------------------------- output
TERMINAL_COLUMNS = {"bytes": "{:,.0f}", "ratio_to_bmp": "{:.3f}", "bits_per_pixel": "{:.2f}",
                    "encode_s": "{:.3f}", "decode_s": "{:.3f}", "psnr_db": "{:.2f}", "ssim": "{:.4f}",
                    "exact": "{}", "thesis_mb": "{:g}", "thesis_ratio_to_bmp": "{:.3f}"}


def compared_view(table: pd.DataFrame) -> pd.DataFrame:
    """The table without timings, rounded: what stays the same between runs for given library versions.

    ``bits`` is each row's bit depth as the thesis's table lists it (JPEG 2000 too: 8); ``thesis_mb`` is the
    thesis's own file size (its 9504x6336 photograph, Photoshop 23.4.1), comparable with ours only as a ratio.
    """
    view = table[["bits", "setting", "bytes", "ratio_to_bmp", "bits_per_pixel", "psnr_db", "ssim",
                  "exact", "thesis_mb", "thesis_ratio_to_bmp"]].copy()
    return view.round({"ratio_to_bmp": 4, "bits_per_pixel": 3, "psnr_db": 2, "ssim": 4,
                       "thesis_ratio_to_bmp": 4})


def format_for_terminal(table: pd.DataFrame) -> str:
    """The table as text, NaN as '-', followed by its notes."""
    shown = pd.DataFrame({column: [_cell(spec, value) for value in table[column]]
                          for column, spec in TERMINAL_COLUMNS.items()}, index=table.index)
    notes = [f"note: {note}" for note in table.attrs.get("notes", [])]
    return "\n".join([shown.to_string(), *notes])


def _cell(spec: str, value) -> str:
    return "-" if isinstance(value, float) and np.isnan(value) else spec.format(value)


def check_table_path(out_path) -> Path:
    """``out_path`` (from the project root when relative) if it names a CSV file, else a ThesisError."""
    path = project_path(out_path)
    if path.suffix.lower() != ".csv":
        raise ThesisError(f"--out {out_path}: the table is written as CSV; give a path ending in .csv")
    return path


def write_table(table: pd.DataFrame, out_path) -> Path:
    """Write the table as CSV to ``out_path``, atomically (a temporary file, then a rename)."""
    return write_atomic(check_table_path(out_path), lambda temporary: table.to_csv(temporary))


