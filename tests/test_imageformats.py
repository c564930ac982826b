"""The image-format table (thesis section 2.2) on a small crop of the default photograph."""

import dataclasses
import io
import re

import imagecodecs
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from skimage.metrics import structural_similarity

from thesislib import cli, imageformats
from thesislib.errors import ThesisError

THESIS_NAMES = [
    "BMP 8 bit", "PNG 8 bit max", "PNG 16 bit", "TIFF 8 bit none", "TIFF 8 bit LZW", "TIFF 8 bit ZIP",
    "TIFF 16 bit none", "TIFF 16 bit LZW", "TIFF 16 bit ZIP", "JPEG max", "JPEG min", "JPEG 2000 lossless",
    "JPEG 2000 lossy max", "JPEG 2000 lossy 50%", "JPEG 2000 lossy min", "WebP lossless",
    "WebP lossy max", "WebP lossy min",
]
LOSSLESS = [row.name for row in imageformats.ROWS if row.lossless]
LOSSY = [row.name for row in imageformats.ROWS if not row.lossless]
SIXTEEN_BIT = [row.name for row in imageformats.ROWS if row.bits == 16]
ROW = dict(zip(imageformats.ROW_NAMES, imageformats.ROWS))


@pytest.fixture(scope="module")
def crop():
    """A 97x127 crop (odd width: BMP rows need padding) of the default photograph, with its vessels."""
    with Image.open(imageformats.default_image()) as img:
        return np.asarray(img.convert("RGB"))[600:697, 500:627].copy()


@pytest.fixture(scope="module")
def crop_path(crop, tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "crop.png"
    Image.fromarray(crop).save(path)
    return path


@pytest.fixture(scope="module")
def table(crop_path):
    return imageformats.format_table(crop_path)


@pytest.fixture(scope="module")
def deep_path(crop, tmp_path_factory):
    """A 16-bit PNG of the crop whose low bytes are noise, as in a real 16-bit capture (not ``v * 257``)."""
    rgb16 = crop.astype(np.uint16) * 256 + np.random.default_rng(0).integers(0, 256, crop.shape, np.uint16)
    path = tmp_path_factory.mktemp("deep") / "deep.png"
    path.write_bytes(imagecodecs.png_encode(rgb16))
    return path


def _save(tmp_path, name, array):
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return path


# ---------------------------------------------------------------------------------------------- the table
def test_table_has_the_thesis_18_rows_in_its_order(table):
    assert list(table.index) == THESIS_NAMES
    assert list(imageformats.ROW_NAMES) == THESIS_NAMES


def test_table_has_the_promised_columns(table):
    for column in ["format", "bits", "setting", "bytes", "ratio_to_bmp", "bits_per_pixel", "encode_s",
                   "decode_s", "psnr_db", "ssim", "exact", "thesis_mb", "thesis_ratio_to_bmp"]:
        assert column in table.columns, column
    assert table.loc["BMP 8 bit", "ratio_to_bmp"] == 1.0
    assert table.loc["BMP 8 bit", "thesis_ratio_to_bmp"] == 1.0
    assert (table["encode_s"] > 0).all() and (table["decode_s"] > 0).all()


def test_every_lossless_row_decodes_bit_exact(table):
    assert table.loc[LOSSLESS, "exact"].all(), table.loc[LOSSLESS, "exact"]
    assert table.loc[LOSSLESS, "psnr_db"].isna().all()


def test_lossy_rows_report_psnr_and_ssim_that_fall_from_max_to_min(table):
    quality = table.loc[LOSSY]
    assert quality["psnr_db"].between(15, 80).all() and quality["ssim"].between(0, 1).all()
    for high, low in [("JPEG max", "JPEG min"), ("JPEG 2000 lossy max", "JPEG 2000 lossy min"),
                      ("WebP lossy max", "WebP lossy min")]:
        assert table.loc[high, "psnr_db"] > table.loc[low, "psnr_db"]
        assert table.loc[high, "bytes"] > table.loc[low, "bytes"]


def test_bmp_size_is_the_header_plus_rows_padded_to_4_bytes(table, crop):
    height, width = crop.shape[:2]
    assert (3 * width) % 4 != 0                       # the crop exercises the padding
    assert table.loc["BMP 8 bit", "bytes"] == 54 + (3 * width + 3) // 4 * 4 * height
    assert imageformats.bmp_size(9504, 6336) == 180_652_086   # the thesis's 172 MB (MiB)


def test_uncompressed_16_bit_tiff_is_twice_the_8_bit_pixels(table, crop):
    pixels_bytes = crop.size
    assert table.loc["TIFF 8 bit none", "bytes"] - pixels_bytes < 2000
    assert table.loc["TIFF 16 bit none", "bytes"] - 2 * pixels_bytes < 2000


def test_jpeg_2000_lossy_50_percent_is_about_half_the_lossless_file(table):
    half = table.loc["JPEG 2000 lossless", "bytes"] / 2
    assert 0.8 * half <= table.loc["JPEG 2000 lossy 50%", "bytes"] <= 1.05 * half


def test_16_bit_rows_are_written_and_read_with_16_bits(crop):
    rgb16 = imageformats.distinct_low_byte(crop)
    assert ((rgb16 >> 8) != (rgb16 & 0xFF)).all()
    source = imageformats.Source(crop, rgb16, "probe", ())
    for name in SIXTEEN_BIT:
        assert imageformats.measure(ROW[name], source, {})["exact"], name
    np.testing.assert_array_equal(imagecodecs.png_decode(ROW["PNG 16 bit"].encode(rgb16, {})), rgb16)
    for name in ["TIFF 16 bit none", "TIFF 16 bit LZW", "TIFF 16 bit ZIP"]:
        decoded = tifffile.imread(io.BytesIO(ROW[name].encode(rgb16, {})))
        assert decoded.dtype == np.uint16
        np.testing.assert_array_equal(decoded, rgb16)


def test_16_bit_rows_of_a_16_bit_photograph_decode_bit_exact(deep_path):
    table = imageformats.format_table(deep_path)
    assert table.loc[SIXTEEN_BIT, "exact"].all(), table.loc[SIXTEEN_BIT, "exact"]
    assert table.loc[LOSSLESS, "exact"].all()


def test_exact_is_false_when_the_reader_drops_the_low_byte(crop):
    source = imageformats.Source(crop, imageformats.distinct_low_byte(crop), "probe", ())
    pillow_reader = dataclasses.replace(ROW["PNG 16 bit"], decode=imageformats._pillow_decode)
    assert not imageformats.measure(pillow_reader, source, {})["exact"]


def test_pillow_keeps_only_the_high_byte_of_16_bit_files(crop):
    rgb16 = imageformats.distinct_low_byte(crop)
    for name in ["PNG 16 bit", "TIFF 16 bit none"]:
        with Image.open(io.BytesIO(ROW[name].encode(rgb16, {}))) as img:
            pixels = np.asarray(img)
        assert pixels.dtype == np.uint8 and np.array_equal(pixels, rgb16 >> 8), name


def test_pillow_16bit_check_shows_the_high_byte_kept_and_the_low_byte_lost(crop_path):
    check = imageformats.pillow_16bit_check(imageformats.load_source(crop_path))
    assert list(check.index) == ["PNG 16 bit", "TIFF 16 bit none"]
    assert check["= high byte"].all()
    assert not check["= low byte"].any() and not check["keeps 16 bits"].any()


def test_table_notes_name_the_image_and_the_16_bit_conversion(table):
    notes = table.attrs["notes"]
    assert notes[0].startswith("image: crop.png, 127x97 pixels")
    assert any("times 257" in note for note in notes)


# ---------------------------------------------------------------------------------------------- inputs
def test_default_image_is_the_largest_shipped_photograph():
    default = imageformats.default_image()
    assert default.name in imageformats.SHIPPED_PHOTOGRAPHS
    counts = {name: imageformats._pixel_count(imageformats.SKIMAGE_DATA / name)
              for name in imageformats.SHIPPED_PHOTOGRAPHS if (imageformats.SKIMAGE_DATA / name).is_file()}
    assert counts[default.name] == max(counts.values())


def test_default_source_notes_its_name_size_and_origin():
    note = imageformats.load_source(None).notes[0]
    name = imageformats.default_image().name
    assert note.startswith(f"image: {name}, ") and imageformats.SHIPPED_PHOTOGRAPHS[name] in note


def test_grayscale_input_is_converted_to_rgb_with_a_note(tmp_path, crop):
    gray = _save(tmp_path, "gray.png", crop[..., 1])
    source = imageformats.load_source(gray)
    assert source.rgb8.shape == crop.shape
    np.testing.assert_array_equal(source.rgb8[..., 0], crop[..., 1])
    assert any("grayscale converted to RGB" in note for note in source.notes)


def test_rgba_input_drops_alpha_with_a_note(tmp_path, crop):
    alpha = np.full(crop.shape[:2] + (1,), 128, np.uint8)
    rgba = _save(tmp_path, "rgba.png", np.concatenate([crop, alpha], axis=2))
    table = imageformats.format_table(rgba)
    assert len(table) == 18 and table.loc[LOSSLESS, "exact"].all()
    assert any("alpha channel dropped" in note for note in table.attrs["notes"])
    np.testing.assert_array_equal(imageformats.load_source(rgba).rgb8, crop)


def test_palette_input_is_converted_with_a_note(tmp_path, crop):
    path = tmp_path / "palette.png"
    Image.fromarray(crop).quantize(16).save(path)
    source = imageformats.load_source(path)
    assert source.rgb8.shape == crop.shape
    assert any("mode P converted to RGB" in note for note in source.notes)


def test_16_bit_input_keeps_its_16_bits_for_the_16_bit_rows(deep_path):
    rgb16 = imagecodecs.imread(str(deep_path))
    source = imageformats.load_source(deep_path)
    np.testing.assert_array_equal(source.rgb16, rgb16)
    np.testing.assert_array_equal(source.rgb8, np.round(rgb16 / 257).astype(np.uint8))
    assert any("16-bit input" in note for note in source.notes)


def test_big_endian_16_bit_grey_tiff_is_read_as_16_bits(tmp_path, crop):
    grey = crop[..., 1].astype(np.uint16) * 256 + 7
    path = tmp_path / "grey16be.tif"
    tifffile.imwrite(path, grey.astype(">u2"), byteorder=">")
    with Image.open(path) as img:
        assert img.mode == "I;16B"
    source = imageformats.load_source(path)
    assert source.rgb16.dtype == np.uint16
    np.testing.assert_array_equal(source.rgb16[..., 2], grey)


@pytest.mark.parametrize("dtype, scale, bits", [(np.int32, 257, 16), (np.uint32, 1, 8), (np.int16, 1, 8)])
def test_32_bit_integer_input_whose_values_fit_is_read_as_8_or_16_bits(tmp_path, crop, dtype, scale, bits):
    grey = crop[..., 1].astype(np.int64) * scale
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, grey.astype(dtype))
    with Image.open(path) as img:
        assert img.mode == "I"
    source = imageformats.load_source(path)
    np.testing.assert_array_equal(source.rgb8[..., 0], crop[..., 1])        # not clipped to 255
    if bits == 16:
        np.testing.assert_array_equal(source.rgb16[..., 0], grey)
    assert any(f"mode I (values {grey.min()}..{grey.max()}) read as {bits}-bit" in n for n in source.notes)


def test_float_input_from_0_to_1_is_scaled_to_16_bits(tmp_path, crop):
    grey = crop[..., 1] / 255.0
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, grey.astype(np.float32))
    source = imageformats.load_source(path)
    np.testing.assert_array_equal(source.rgb8[..., 0], crop[..., 1])
    np.testing.assert_array_equal(source.rgb16[..., 0], crop[..., 1].astype(np.uint16) * 257)
    assert any("mode F" in note and "scaled to 0..65535" in note for note in source.notes)


@pytest.mark.parametrize("dtype, values, shown", [
    (np.int32, [0, 70000], "mode I (32-bit integers) with values 0..70000"),
    (np.int32, [-5, 100], "mode I (32-bit integers) with values -5..100"),
    (np.float32, [0, 2.5], "mode F (32-bit floats) with values 0..2.5"),
    (np.float32, [0, np.nan], "mode F (32-bit floats) with NaN or infinite values"),
])
def test_wide_input_that_fits_neither_8_nor_16_bits_is_refused(tmp_path, dtype, values, shown):
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, np.resize(np.array(values, dtype), (16, 16)))
    with pytest.raises(ThesisError, match=r"wide\.tif: Pillow " + re.escape(shown) + ".*0..65535"):
        imageformats.load_source(path)


def test_a_row_its_library_cannot_write_is_empty_with_a_note(tmp_path):
    wide = np.random.default_rng(0).integers(0, 256, (8, 16400, 3), dtype=np.uint8)   # WebP: <= 16383 px
    table = imageformats.format_table(_save(tmp_path, "wide.png", wide))
    webp = ["WebP lossless", "WebP lossy max", "WebP lossy min"]
    assert table.loc[webp, "bytes"].isna().all() and table.drop(index=webp)["bytes"].notna().all()
    assert sum("WebP" in note and "could not write" in note for note in table.attrs["notes"]) == 3


def test_missing_image_raises_an_error_naming_it(tmp_path):
    with pytest.raises(ThesisError, match="missing.png: no such file"):
        imageformats.load_source(tmp_path / "missing.png")


def test_tiny_image_is_refused(tmp_path):
    with pytest.raises(ThesisError, match="too small"):
        imageformats.load_source(_save(tmp_path, "tiny.png", np.zeros((4, 4, 3), np.uint8)))


# ---------------------------------------------------------------------------------------------- measures
def test_strip_ssim_equals_skimage_on_the_whole_image(crop):
    noisy = np.clip(crop + np.random.default_rng(1).normal(0, 8, crop.shape), 0, 255).astype(np.uint8)
    whole = structural_similarity(crop, noisy, channel_axis=-1, data_range=255)
    for strip_rows in (1, 5, 40, 1000):
        assert imageformats.ssim(crop, noisy, strip_rows=strip_rows) == pytest.approx(whole, abs=1e-12)


def test_psnr_of_identical_images_is_infinite(crop):
    assert imageformats.psnr(crop, crop) == float("inf")


def test_quality_curve_grows_in_size_with_quality(crop_path):
    curve = imageformats.quality_curve(crop_path)
    assert set(curve["codec"]) == set(imageformats.CURVE_SETTINGS)
    for codec, points in curve.groupby("codec"):
        best_first = points.sort_values("setting", ascending=codec == "JPEG 2000")  # JPEG 2000: ratios
        assert best_first["bytes"].is_monotonic_decreasing, codec
        assert best_first["psnr_db"].iloc[0] > best_first["psnr_db"].iloc[-1], codec


# ---------------------------------------------------------------------------------------------- output
def test_terminal_text_shows_every_row_dashes_and_notes(table):
    text = imageformats.format_for_terminal(table)
    assert all(name in text for name in THESIS_NAMES)
    assert "note: image: crop.png" in text
    assert " - " in text                          # PSNR of lossless rows


def test_size_figure_hatches_the_thesis_jpeg_2000_bars_and_says_why(table):
    ax = imageformats.plot_sizes(table).axes[0]
    thesis_bars = ax.containers[1]
    hatched = [name for name, bar in zip(table.index, thesis_bars) if bar.get_hatch()]
    assert hatched == [name for name in THESIS_NAMES if name.startswith("JPEG 2000")]
    assert not any(bar.get_hatch() for bar in ax.containers[0])           # ours are 8-bit: not hatched
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any("JPEG 2000: listed as 8-bit, probably 16-bit" in label for label in labels)


def test_compared_view_lists_jpeg_2000_as_8_bit_beside_the_thesis_sizes_in_mb(table):
    view = imageformats.compared_view(table)
    assert (view.loc[[n for n in THESIS_NAMES if n.startswith("JPEG 2000")], "bits"] == 8).all()
    assert view.loc["BMP 8 bit", "thesis_mb"] == 172 and view.loc["JPEG 2000 lossless", "thesis_mb"] == 191
    assert view["thesis_mb"].notna().all()


def test_format_properties_list_the_thesis_bit_depths_of_the_six_formats():
    depths = imageformats.format_properties()["thesis: bits per channel"]
    assert depths.to_dict() == {"BMP": "8", "PNG": "1, 2, 4, 8, 16", "TIFF": "8, 16", "JPEG": "8",
                                "JPEG 2000": "8", "WebP": "8"}
    assert set(depths.index) == {row.format for row in imageformats.ROWS}


def test_webp_effort_compares_methods_on_a_centre_crop(crop):
    source = imageformats.Source(crop, crop.astype(np.uint16) * 257, "crop", ())
    effort = imageformats.webp_lossless_effort(source, methods=(4, 6), side=32)
    assert list(effort.index) == [4, 6] and (effort["encode_s"] > 0).all()
    centre = io.BytesIO()
    Image.fromarray(crop[32:64, 47:79]).save(centre, "WEBP", lossless=True, quality=100, method=6)
    assert effort.loc[6, "bytes"] == len(centre.getvalue())


def test_figures_are_written_as_png_files(table, crop_path, tmp_path):
    curve = imageformats.quality_curve(crop_path)
    sizes = imageformats.plot_sizes(table, tmp_path / "sizes.png")
    quality = imageformats.plot_quality(curve, table, tmp_path / "quality.png")
    for name, fig in [("sizes.png", sizes), ("quality.png", quality)]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and fig.axes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.png", "sizes.png"]


def test_write_table_refuses_a_path_that_is_not_csv(table, tmp_path):
    with pytest.raises(ThesisError, match=r"\.csv"):
        imageformats.write_table(table, tmp_path / "table.parquet")


# ---------------------------------------------------------------------------------------------- command line
def test_cli_missing_image_exits_2_with_one_line(tmp_path, capsys):
    assert cli.main(["formats", "--image", str(tmp_path / "missing.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.png" in err and err.startswith("error: ")


def test_cli_unreadable_image_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    assert cli.main(["formats", "--image", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.png: cannot read it as an image" in err


def test_cli_out_writes_the_table_as_csv(crop_path, tmp_path, capsys):
    out = tmp_path / "sub" / "formats.csv"
    assert cli.main(["formats", "--image", str(crop_path), "--out", str(out)]) == 0
    written = pd.read_csv(out, index_col="name")
    assert list(written.index) == THESIS_NAMES and written.loc[LOSSLESS, "exact"].all()
    assert [p.name for p in out.parent.iterdir()] == ["formats.csv"]     # no temporary file left
    assert "WebP lossy min" in capsys.readouterr().out


@pytest.mark.slow
def test_default_image_gives_18_rows_all_lossless_exact():
    table = imageformats.format_table(None)
    assert list(table.index) == THESIS_NAMES and table.loc[LOSSLESS, "exact"].all()
