"""The fast image paths give the reference decode's pixels in the sampler's order: ``tfrecord`` (memory-mapped
shards, a record plan, TurboJPEG from Numba or simplejpeg into the batch) and ``files`` (compiled or os-level
reads, the same JPEG decoders, a row copy for BMP), against Pillow decoding the same bytes; the decoders' edge cases and hostile
bytes fall back to Pillow, which names the file."""

import os
import io
import struct
import threading

import numpy as np
import pytest
from PIL import Image

from thesislib.errors import ThesisError
from thesislib import stores
from thesislib.kernels import jpeg, turbojpeg
from thesislib.kernels.imagefiles import FileDecoder, ReadSize, bmp_into
from thesislib.kernels.parts import Parts
from thesislib.loaders import make_loader
from thesislib.loaders.sampler import epoch_batches
from thesislib.prepare import prepare
from thesislib.stores import imagefiles, open_store, tfrecord

SEED, BATCH = 5, 64


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """cifar10 at scale 0.005 (250 train, 50 val) as files-jpeg, files-bmp, files-png and tfrecord; read-only."""
    folder = tmp_path_factory.mktemp("jpeg_paths")
    prepare("cifar10", scale=0.005, stores=["files-jpeg", "files-bmp", "files-png", "tfrecord"], seed=0,
            data_dir=folder, progress=False)
    return folder


def pillow_split(data_dir, store):
    """(every train image decoded by Pillow, labels) of an image-file store, in index order."""
    paths, labels = imagefiles.list_files(open_store(data_dir, "cifar10", store).path, "train")
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths]), labels


def epoch(data_dir, loader, store, num_workers) -> tuple:
    """(images, labels) of epoch 1, each batch copied (batches live in reused buffers)."""
    with make_loader(loader, open_store(data_dir, "cifar10", store), "train", batch_size=BATCH, seed=SEED,
                     num_workers=num_workers) as reader:
        reader.set_epoch(1)
        batches = [(images.numpy().copy(), labels.numpy().copy()) for images, labels in reader]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def sampler_order(count) -> np.ndarray:
    return np.concatenate(epoch_batches(count, BATCH, SEED, 1))


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("loader, store, reference", [("tfrecord", "tfrecord", "files-jpeg"),
                                                      ("files", "files-jpeg", "files-jpeg"),
                                                      ("files", "files-bmp", "files-bmp"),
                                                      ("files", "files-png", "files-png")])
def test_the_fast_path_gives_pillows_pixels_of_the_same_bytes_in_the_samplers_order(data_dir, loader, store,
                                                                                    reference, num_workers):
    expected, labels = pillow_split(data_dir, reference)
    images, got_labels = epoch(data_dir, loader, store, num_workers)
    order = sampler_order(len(labels))
    np.testing.assert_array_equal(got_labels, labels[order])
    np.testing.assert_array_equal(images, expected[order])


def test_the_files_loader_decodes_jpeg_with_the_compiled_loop_where_it_can_and_bmp_with_numpy(data_dir):
    expected = "turbojpeg" if turbojpeg.available() else "simplejpeg"
    assert open_store(data_dir, "cifar10", "files-jpeg").reader("train").decode.decoder == expected
    assert open_store(data_dir, "cifar10", "files-bmp").reader("train").decode.decoder == "bmp"


@pytest.mark.skipif(not os.environ.get("CI"), reason="outside CI a missing libturbojpeg only slows JPEG reads")
def test_ci_installs_what_the_compiled_jpeg_loop_needs():
    assert turbojpeg.unavailable_reason() is None, turbojpeg.unavailable_reason()


needs_turbojpeg = pytest.mark.skipif(not turbojpeg.available(), reason=str(turbojpeg.unavailable_reason()))


def jpeg_bytes(size=(32, 32), subsampling="4:2:0", progressive=False, mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed + sum(size))
    image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, subsampling=subsampling, progressive=progressive)
    return buffer.getvalue()


def pillow_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.mark.parametrize("size", [(32, 32), (33, 17)])
@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_the_exact_jpeg_decodes_equal_pillow_for_every_layout_pillow_writes(size, subsampling, progressive, mode):
    data = jpeg_bytes(size, subsampling, progressive, mode)
    expected = pillow_pixels(data)
    np.testing.assert_array_equal(jpeg.decode_jpeg_into(data, np.empty_like(expected)), expected)
    if turbojpeg.available():
        out = np.zeros((2, *expected.shape), np.uint8)
        assert turbojpeg.decode_rows([data, data], out).tolist() == [0, 0]
        np.testing.assert_array_equal(out, np.stack([expected, expected]))


@pytest.mark.parametrize("shape", [(16, 16, 3), (64, 64, 3)])
def test_the_exact_jpeg_decode_refuses_an_image_of_another_size(shape):
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buffer, format="JPEG")
    with pytest.raises(ValueError):
        jpeg.decode_jpeg_into(buffer.getvalue(), np.empty(shape, np.uint8))


@needs_turbojpeg
@pytest.mark.parametrize("threads", [1, 2])
def test_the_compiled_loop_decodes_good_rows_exactly_and_refuses_hostile_ones_without_overflowing(threads):
    good = [jpeg_bytes(seed=seed) for seed in range(6)]
    hostile = {1: good[1][:60], 2: b"", 3: b"\xff\xd8" + bytes(range(256)) * 2, 4: jpeg_bytes((64, 64))}
    datas = [hostile.get(row, data) for row, data in enumerate(good)]
    out = np.full((len(datas), 32, 32, 3), 7, np.uint8)
    status = turbojpeg.decode_batch(Parts(threads), datas, out, threads)
    assert [row for row, value in enumerate(status.tolist()) if value] == [1, 2, 3, 4]
    for row in (0, 5):
        np.testing.assert_array_equal(out[row], pillow_pixels(good[row]))
    assert (out[4] == 7).all()  # a larger image is never decoded into a row it would overflow


@needs_turbojpeg
def test_the_compiled_loop_refuses_a_buffer_it_cannot_write():
    with pytest.raises(ValueError, match="C-ordered"):
        turbojpeg.decode_rows([jpeg_bytes()], np.empty((1, 32, 32, 3), np.float32))
    assert not turbojpeg.fits(np.empty((2, 32, 32, 3), np.uint8)[:, ::2])


def test_a_batch_hands_the_rows_no_decoder_takes_to_the_callers_fallback():
    datas = [jpeg_bytes(seed=0), b"not a jpeg", jpeg_bytes((16, 16)), jpeg_bytes(seed=3)]
    out, refused = np.zeros((4, 32, 32, 3), np.uint8), []
    jpeg.decode_batch(Parts(2), datas, out, lambda row, exc: refused.append(row))
    assert sorted(refused) == [1, 2]
    np.testing.assert_array_equal(out[[0, 3]], np.stack([pillow_pixels(datas[0]), pillow_pixels(datas[3])]))


@pytest.mark.parametrize("decoder", ["turbojpeg", "simplejpeg"])
def test_a_damaged_file_among_good_ones_is_named_and_the_rest_decode(tmp_path, decoder):
    if decoder == "turbojpeg" and not turbojpeg.available():
        pytest.skip(str(turbojpeg.unavailable_reason()))
    paths = [tmp_path / f"{seed}.jpg" for seed in range(5)]
    for seed, path in enumerate(paths):
        path.write_bytes(jpeg_bytes(seed=seed) if seed != 2 else b"\xff\xd8 truncated")
    out = np.zeros((5, 32, 32, 3), np.uint8)
    with pytest.raises(ThesisError, match="2.jpg"):
        FileDecoder(decoder, threads=1)([str(path) for path in paths], out)
    refused = []
    FileDecoder(decoder, threads=1)([str(path) for path in paths], out, lambda path, row: refused.append(path))
    assert refused == [str(paths[2])]
    for row in (0, 1, 3, 4):
        np.testing.assert_array_equal(out[row], pillow_pixels(paths[row].read_bytes()))


def bmp_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="BMP")
    return buffer.getvalue()


def top_down(data: bytes) -> bytes:
    """The same 24-bit BMP stored top-down (negative height, rows in reverse order)."""
    offset = struct.unpack_from("<I", data, 10)[0]
    width, height = struct.unpack_from("<ii", data, 18)
    stride = (3 * width + 3) & ~3
    rows = [data[offset + r * stride:offset + (r + 1) * stride] for r in range(height)]
    header = bytearray(data[:offset])
    struct.pack_into("<i", header, 22, -height)
    return bytes(header) + b"".join(reversed(rows))


def test_the_numpy_bmp_decode_equals_pillow_bottom_up_and_top_down_and_with_row_padding():
    rng = np.random.default_rng(0)
    for width in (32, 33):  # 33 * 3 bytes: rows padded to 4 bytes
        pixels = rng.integers(0, 256, (7, width, 3), dtype=np.uint8)
        for data in (bmp_bytes(Image.fromarray(pixels)), top_down(bmp_bytes(Image.fromarray(pixels)))):
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), pixels)
            np.testing.assert_array_equal(bmp_into(data, np.empty_like(pixels)), pixels)


@pytest.mark.parametrize("mode", ["P", "RGBA", "L"])
def test_other_bmp_variants_are_refused_by_numpy_and_read_by_pillow_in_the_loader(data_dir, tmp_path, mode):
    import shutil

    shutil.copytree(data_dir / "cifar10" / "files-bmp", tmp_path / "cifar10" / "files-bmp")
    store = open_store(tmp_path, "cifar10", "files-bmp")
    path = imagefiles.list_files(store.path, "train")[0][7]
    Image.open(path).convert(mode).save(path, format="BMP")
    with pytest.raises(ValueError):
        bmp_into(path.read_bytes(), np.empty((32, 32, 3), np.uint8))
    images, _ = store.reader("train").read(np.array([6, 7, 8]))
    np.testing.assert_array_equal(images[1], np.asarray(Image.open(path).convert("RGB")))


def test_the_record_plans_fast_path_agrees_with_the_full_parse_and_other_layouts_are_parsed_in_full(data_dir):
    store = open_store(data_dir, "cifar10", "tfrecord")
    labels = {tfrecord.label_entry(label): label for label in range(10)}
    mapped, rows = tfrecord.open_shard(tfrecord.shard_path(store.path, "train", 0),
                                       tfrecord.index_path(store.path, "train", 0), 16)
    with mapped:
        for offset, length in rows.tolist():
            span = tfrecord.record_span(mapped, offset, length)
            assert tfrecord.locate_written(mapped, span, labels) == tfrecord.locate_example(mapped, span)
    jpeg_data = b"\xff\xd8 not a real jpeg"
    reordered = tfrecord._field(1, tfrecord.label_entry(7) + tfrecord._feature_entry(
        tfrecord.IMAGE_KEY, tfrecord._field(1, tfrecord._field(1, jpeg_data))))  # the label entry first
    assert tfrecord.locate_written(reordered, (0, len(reordered)), labels) is None
    start, stop, label = tfrecord.locate_example(reordered, (0, len(reordered)), labels)
    assert (reordered[start:stop], label) == (jpeg_data, 7)


def test_a_batch_is_split_over_the_cores_only_when_read_in_the_main_thread():
    found = []
    thread = threading.Thread(target=lambda: found.append(jpeg.batch_threads(4)))
    thread.start()
    thread.join()
    assert found == [1] and 1 <= jpeg.batch_threads(4) <= 4


def test_a_file_larger_than_the_first_read_is_read_whole_and_raises_the_read_size(tmp_path):
    path = tmp_path / "big.bin"
    data = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    size = ReadSize(4096)
    assert size.read(str(path)) == data and size.size >= len(data)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_the_opencv_png_decode_equals_pillow_for_rgb_and_refuses_other_pngs(mode):
    from thesislib.kernels.imagefiles import opencv_png_into, unavailable_reason

    if unavailable_reason("opencv-png"):
        pytest.skip(unavailable_reason("opencv-png"))
    pixels = np.random.default_rng(1).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    data = buffer.getvalue()
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if mode != "RGB":
        with pytest.raises(ValueError):
            opencv_png_into(data, np.empty_like(expected))
        return
    np.testing.assert_array_equal(opencv_png_into(data, np.empty_like(expected)), expected)


@needs_turbojpeg
def test_a_threads_decompressor_is_destroyed_when_the_thread_ends():
    import weakref

    seen = []
    thread = threading.Thread(target=lambda: (turbojpeg.HANDLES.get(),
                                              seen.append(weakref.ref(turbojpeg.HANDLES.decompressor))))
    thread.start()
    thread.join()
    assert seen and seen[0]() is None


# ---- decode="fast": FFCV's fast DCT, approximate, only when asked for by name ----------------------------

def epoch_with(data_dir, loader, store, **options) -> tuple:
    """(images, labels) of epoch 1 of ``loader`` with ``options``, each batch copied."""
    with make_loader(loader, open_store(data_dir, "cifar10", store), "train", batch_size=BATCH, seed=SEED,
                     **options) as reader:
        reader.set_epoch(1)
        batches = [(images.numpy().copy(), labels.numpy().copy()) for images, labels in reader]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("loader, store", [("tfrecord", "tfrecord"), ("files", "files-jpeg")])
def test_decode_fast_keeps_the_order_and_labels_and_moves_pixels_by_a_few_levels(data_dir, loader, store,
                                                                                  num_workers):
    expected, labels = pillow_split(data_dir, "files-jpeg")
    order = sampler_order(len(labels))
    images, got_labels = epoch_with(data_dir, loader, store, num_workers=num_workers, decode="fast")
    np.testing.assert_array_equal(got_labels, labels[order])
    diff = np.abs(images.astype(np.int16) - expected[order])
    assert diff.any()  # the fast DCT is not Pillow's decode: never counted as exact
    assert diff.mean() < 2 and diff.max() <= 40  # a few levels, as FFCV's pixels differ


def test_decode_fast_is_the_same_dct_in_the_compiled_loop_and_in_the_fallback():
    datas = [jpeg_bytes(seed=seed) for seed in range(4)]
    fallback = np.stack([jpeg.decode_jpeg_into(data, np.empty((32, 32, 3), np.uint8), fast=True) for data in datas])
    exact = np.stack([pillow_pixels(data) for data in datas])
    assert (fallback != exact).any()
    if turbojpeg.available():
        out = np.zeros_like(exact)
        assert turbojpeg.decode_rows(datas, out, turbojpeg.FAST_FLAGS).tolist() == [0] * 4
        np.testing.assert_array_equal(out, fallback)


@pytest.mark.parametrize("store", ["files-png", "files-bmp"])
def test_decode_fast_is_refused_for_a_lossless_store_with_nothing_to_approximate(data_dir, store):
    with pytest.raises(ThesisError, match=f"decode='fast' applies to .* not to {store}"):
        make_loader("files", open_store(data_dir, "cifar10", store), "train", batch_size=BATCH, decode="fast")
    assert stores.decodes_of(stores.get_store_spec(store)) == ("exact",)
    assert stores.decodes_of(stores.get_store_spec("files-jpeg")) == ("exact", "fast")


def test_decode_fast_is_refused_where_nothing_is_decoded_and_an_unknown_mode_names_the_choices(data_dir):
    prepare("cifar10", scale=0.005, stores=["npy-uint8"], seed=0, data_dir=data_dir, progress=False)
    with pytest.raises(ThesisError, match="decode='fast' applies to .* not to npy-uint8"):
        make_loader("numpy", open_store(data_dir, "cifar10", "npy-uint8"), "train", batch_size=BATCH, decode="fast")
    with pytest.raises(ThesisError, match="unknown decode 'slow': choose one of exact, fast"):
        make_loader("tfrecord", open_store(data_dir, "cifar10", "tfrecord"), "train", batch_size=BATCH,
                    decode="slow")
