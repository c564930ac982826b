"""The compiled file reads (:mod:`thesislib.kernels.filereads`): files read and decoded without the GIL give
Pillow's pixels (BMP bottom-up, top-down, padded rows; JPEG exact and fast), and every file the loop cannot
fully check gets a nonzero status, is decoded again in Python, or is named."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from thesislib.errors import ThesisError
from thesislib.kernels import filereads, jpeg, turbojpeg
from thesislib.kernels.filereads import STATUS_UNREAD, PathTable, read_rows
from thesislib.kernels.imagefiles import FileDecoder

pytestmark = pytest.mark.skipif(not filereads.available(), reason=str(filereads.unavailable_reason()))
needs_turbojpeg = pytest.mark.skipif(not turbojpeg.available(), reason=str(turbojpeg.unavailable_reason()))


def pixels(seed: int, height: int = 7, width: int = 33) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def bmp_bytes(image: np.ndarray, top_down: bool = False) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="BMP")
    data = buffer.getvalue()
    if not top_down:
        return data
    offset = struct.unpack_from("<I", data, 10)[0]
    height, stride = image.shape[0], (3 * image.shape[1] + 3) & ~3
    rows = [data[offset + r * stride:offset + (r + 1) * stride] for r in range(height)]
    header = bytearray(data[:offset])
    struct.pack_into("<i", header, 22, -height)
    return bytes(header) + b"".join(reversed(rows))


def jpeg_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels(seed, 32, 32)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def pillow(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def write(tmp_path, datas, suffix) -> PathTable:
    paths = []
    for number, data in enumerate(datas):
        path = tmp_path / f"{number:03d}{suffix}"
        path.write_bytes(data)
        paths.append(path)
    return PathTable(paths)


def test_a_path_table_keeps_each_path_nul_terminated_at_its_offset(tmp_path):
    table = PathTable([tmp_path / "a.bmp", tmp_path / "bé.bmp"])
    for number, path in enumerate(table.paths):
        start = table.offsets[number]
        encoded = path.encode()
        assert bytes(table.arena[start:start + len(encoded) + 1]) == encoded + b"\0"
    assert len(PathTable([])) == 0


def test_bmps_bottom_up_top_down_and_with_padded_rows_are_pillows_pixels_in_the_indexed_order(tmp_path):
    images = [pixels(seed, width=width) for seed, width in enumerate((33, 33, 34, 35))]
    datas = [bmp_bytes(image, top_down=seed % 2 == 1) for seed, image in enumerate(images)]
    table = write(tmp_path, datas, ".bmp")
    for width in (33,):  # a batch is one size: the rows of another size are refused
        order = np.array([1, 0, 3, 2])
        out = np.zeros((4, 7, width, 3), np.uint8)
        status = read_rows("bmp", table, order, out, 1 << 12)
        assert status.tolist() == [0, 0, 2, 2]
        np.testing.assert_array_equal(out[:2], np.stack([pillow(datas[1]), pillow(datas[0])]))
    for number in (2, 3):
        out = np.zeros((1, 7, images[number].shape[1], 3), np.uint8)
        assert read_rows("bmp", table, np.array([number]), out, 1 << 12).tolist() == [0]
        np.testing.assert_array_equal(out[0], pillow(datas[number]))


@pytest.mark.parametrize("damage", ["missing", "palette", "truncated", "not a bmp", "too large"])
def test_a_bmp_the_loop_cannot_check_fully_is_refused_and_the_decoder_reads_it_again_or_names_it(tmp_path,
                                                                                                 damage):
    image = pixels(1, 32, 32)
    good = bmp_bytes(image)
    bad = {"palette": lambda: bmp_of_mode(image, "P"), "truncated": lambda: good[:-100],
           "not a bmp": lambda: b"GIF89a" + good[6:], "missing": lambda: good,
           "too large": lambda: good}[damage]()
    table = write(tmp_path, [good, bad, good], ".bmp")
    if damage == "missing":
        (tmp_path / "001.bmp").unlink()
    capacity = 1 << 10 if damage == "too large" else 1 << 14
    out = np.zeros((3, 32, 32, 3), np.uint8)
    status = read_rows("bmp", table, np.arange(3), out, capacity)
    if damage == "too large":
        assert (status == STATUS_UNREAD).all()  # every file fills the buffer: read again in Python
        return
    assert status[0] == 0 and status[2] == 0 and status[1] != 0
    np.testing.assert_array_equal(out[[0, 2]], np.stack([image, image]))
    decoder = FileDecoder("bmp", threads=1)
    if damage in ("palette",):  # a valid BMP of another kind: Pillow decodes it in the reader's fallback
        refused = []
        decoder(table.paths, out, lambda path, row: refused.append(path))
        assert refused == [table.paths[1]]
    else:
        with pytest.raises(ThesisError, match="001.bmp"):
            decoder(table.paths, out)


def bmp_of_mode(image: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buffer, format="BMP")
    return buffer.getvalue()


def test_a_file_larger_than_the_read_size_is_decoded_in_python_and_the_next_batch_reads_it_compiled(tmp_path):
    image = pixels(2, 64, 64)  # 12,342 bytes: larger than the first read size (4 KB)
    table = write(tmp_path, [bmp_bytes(image)] * 3, ".bmp")
    decoder = FileDecoder("bmp", threads=1)
    out = np.zeros((3, 64, 64, 3), np.uint8)
    decoder.decode_files(table, np.arange(3), out)
    np.testing.assert_array_equal(out, np.stack([image] * 3))
    assert decoder.read_size.size > 12_342
    out[:] = 0
    assert read_rows("bmp", table, np.arange(3), out, decoder.read_size.size).tolist() == [0, 0, 0]
    np.testing.assert_array_equal(out, np.stack([image] * 3))


@needs_turbojpeg
@pytest.mark.parametrize("fast", [False, True])
def test_jpegs_read_in_the_loop_equal_the_same_bytes_decoded_in_memory(tmp_path, fast):
    datas = [jpeg_bytes(seed) for seed in range(6)]
    table = write(tmp_path, datas, ".jpg")
    flags = turbojpeg.FAST_FLAGS if fast else turbojpeg.EXACT_FLAGS
    order = np.array([5, 3, 1, 0, 2, 4])
    out = np.zeros((6, 32, 32, 3), np.uint8)
    assert read_rows("jpeg", table, order, out, 1 << 14, flags).tolist() == [0] * 6
    expected = np.zeros_like(out)
    for row, number in enumerate(order):
        jpeg.decode_jpeg_into(datas[number], expected[row], fast=fast)
    np.testing.assert_array_equal(out, expected)
    if not fast:
        np.testing.assert_array_equal(out, np.stack([pillow(datas[number]) for number in order]))


@needs_turbojpeg
def test_a_damaged_jpeg_is_refused_by_the_loop_and_named_by_the_decoder(tmp_path):
    datas = [jpeg_bytes(0), b"\xff\xd8 truncated", jpeg_bytes(1)]
    table = write(tmp_path, datas, ".jpg")
    out = np.zeros((3, 32, 32, 3), np.uint8)
    status = read_rows("jpeg", table, np.arange(3), out, 1 << 14)
    assert status[0] == 0 and status[1] != 0 and status[2] == 0
    with pytest.raises(ThesisError, match="001.jpg"):
        FileDecoder("turbojpeg", threads=2)(table.paths, out)
