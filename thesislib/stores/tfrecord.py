"""``tfrecord``: TFRecord shards of ``tf.train.Example`` records, as TensorFlow's image pipelines write them.

Layout: ``<split>-%06d.tfrecord`` (consecutive samples, see :mod:`thesislib.stores.shards`) and beside each
``<split>-%06d.idx``, one line ``<offset> <length>`` per record: the index format of DALI's
``fn.readers.tfrecord`` and of the ``tfrecord`` package (``tfrecord2idx``), so a reader can seek to any
record. A record is ``[uint64 length][uint32 masked CRC-32C of length][data][uint32 masked CRC-32C of data]``
(little endian); ``data`` is a ``tf.train.Example`` with the keys of TensorFlow's image pipelines:
``image/encoded`` (the ``files-jpeg`` store's bytes) and ``image/class/label`` (int64).

Writing and the random-access reader need no TensorFlow (the two protobuf messages are encoded and parsed
here, the CRC is ``google-crc32c``). The reader maps the shards, finds where each sample's JPEG lies once
on open (:class:`RecordPlan`), and decodes a batch from the maps straight into the batch buffer on a few
threads (:class:`RecordReader`); :func:`read_back` reads a split with TensorFlow's own tools,
``tf.data.TFRecordDataset`` and ``tf.io.parse_single_example``, and is the only place here that imports it.
"""

import importlib
import io
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
from PIL import Image, UnidentifiedImageError

from thesislib.errors import ThesisError
from thesislib.stores import shards
from thesislib.stores.base import Reader, StoreSpec, damaged

KIND = "tfrecord"
STORES = [StoreSpec("tfrecord", KIND, "uint8", "jpeg", lossless=False)]
LOADER = "tfrecord"  # random access through the offset indexes; the ``tfdata`` loader streams the shards
IMAGE_KEY, LABEL_KEY = "image/encoded", "image/class/label"
RECORD_OVERHEAD = 16 + 60  # framing + the Example's keys and lengths, for the shard-size estimate


def shard_path(store_dir, split: str, shard: int) -> Path:
    return Path(store_dir) / f"{split}-{shard:06d}.tfrecord"


def index_path(store_dir, split: str, shard: int) -> Path:
    return Path(store_dir) / f"{split}-{shard:06d}.idx"


# -- the record framing ------------------------------------------------------------------------------------

def masked_crc(data) -> int:
    """TFRecord's masked CRC-32C."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One TFRecord record holding ``data``."""
    length = struct.pack("<Q", len(data))
    return b"".join([length, struct.pack("<I", masked_crc(length)), data, struct.pack("<I", masked_crc(data))])


def unframe(record) -> bytes:
    """The data of one whole record; ValueError if it is short or a checksum fails."""
    start, stop = record_span(record, 0, len(record))
    return bytes(record[start:stop])


def record_span(data, offset: int, length: int) -> tuple:
    """(start, stop) of the data of the record of ``length`` bytes at ``offset`` of ``data`` (a shard's
    bytes or memory map), both CRCs checked; ValueError if it is short or a checksum fails."""
    if length < 16:
        raise ValueError(f"{length} bytes, a record has at least 16")
    (size,), (size_crc,) = struct.unpack_from("<Q", data, offset), struct.unpack_from("<I", data, offset + 8)
    if masked_crc(data[offset:offset + 8]) != size_crc or 16 + size != length:
        raise ValueError("its length field is damaged or the record is truncated")
    start = offset + 12
    if masked_crc(data[start:start + size]) != struct.unpack_from("<I", data, start + size)[0]:
        raise ValueError("its data fails the CRC-32C check")
    return start, start + size


# -- tf.train.Example, the two fields used (protobuf wire format) ------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature_entry(key: str, feature: bytes) -> bytes:
    return _field(1, _field(1, key.encode()) + _field(2, feature))  # Features.feature map entry


def label_entry(label: int) -> bytes:
    """The Features map entry of ``image/class/label``: Feature.int64_list.value, packed."""
    return _feature_entry(LABEL_KEY, _field(3, _field(1, _varint(int(label)))))


def encode_example(jpeg: bytes, label: int) -> bytes:
    """A serialized ``tf.train.Example`` with ``image/encoded`` and ``image/class/label``."""
    image = _field(1, _field(1, jpeg))                    # Feature.bytes_list.value
    return _field(1, _feature_entry(IMAGE_KEY, image) + label_entry(label))


def _read_varint(data, pos: int) -> tuple:
    value = shift = 0
    while True:
        byte = data[pos]
        value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(data, span: tuple):
    """Yield ``(field number, value)`` of the protobuf message in ``data[start:stop]`` (``span``): a varint
    field's value, or the (start, stop) span of a length-delimited field's payload (positions in ``data``,
    so a memory-mapped shard is parsed where it lies)."""
    pos, stop = span
    while pos < stop:
        key, pos = _read_varint(data, pos)
        if key & 7 == 0:
            value, pos = _read_varint(data, pos)
        elif key & 7 == 2:
            length, pos = _read_varint(data, pos)
            value, pos = (pos, pos + length), pos + length
        else:
            raise ValueError(f"unexpected protobuf wire type {key & 7}")
        if pos > stop:
            raise ValueError("a protobuf field runs past its message")
        yield key >> 3, value


def _first(data, span: tuple, number: int):
    return next(value for field, value in _fields(data, span) if field == number)


IMAGE_ENTRY_HEAD = b"\x0a\x0d" + IMAGE_KEY.encode() + b"\x12"  # an image entry's key, then its Feature


def locate_written(data, span: tuple, labels: dict):
    """(start, stop, label) of an Example laid out as :func:`encode_example` writes it (the image entry,
    then the label entry, one of ``labels``: {:func:`label_entry` bytes: label}), read with a few varints
    and one lookup; None for any other layout (which :func:`locate_example` then parses in full)."""
    start, stop = span
    if data[start] != 0x0A:
        return None
    size, pos = _read_varint(data, start + 1)
    if pos + size != stop or data[pos] != 0x0A:
        return None
    size, pos = _read_varint(data, pos + 1)
    entry_stop = pos + size
    if data[pos:pos + len(IMAGE_ENTRY_HEAD)] != IMAGE_ENTRY_HEAD:
        return None
    _, pos = _read_varint(data, pos + len(IMAGE_ENTRY_HEAD))  # the Feature's length
    if data[pos] != 0x0A:  # its bytes_list
        return None
    _, pos = _read_varint(data, pos + 1)  # the BytesList's length
    if data[pos] != 0x0A:  # its first value
        return None
    size, pos = _read_varint(data, pos + 1)
    label = labels.get(data[pos + size:stop]) if pos + size == entry_stop else None
    return None if label is None else (pos, pos + size, label)


def locate_example(data, span: tuple, labels: dict = None) -> tuple:
    """(start, stop, label) of the Example in ``data[span[0]:span[1]]``: the span of its JPEG bytes in
    ``data`` and its label (``labels``: see :func:`locate_written`, tried first); ValueError if a key is
    missing or malformed."""
    written = locate_written(data, span, labels) if labels else None
    if written is not None:
        return written
    features = {}
    for entry in (value for field, value in _fields(data, _first(data, span, 1)) if field == 1):
        entry_fields = dict(_fields(data, entry))
        key = entry_fields[1]
        features[bytes(data[key[0]:key[1]]).decode()] = entry_fields[2]
    try:
        jpeg = _first(data, _first(data, features[IMAGE_KEY], 1), 1)
        packed = _first(data, _first(data, features[LABEL_KEY], 3), 1)
        label = packed if isinstance(packed, int) else _read_varint(data, packed[0])[0]
        return jpeg[0], jpeg[1], label
    except (KeyError, StopIteration, IndexError, TypeError) as exc:
        raise ValueError(f"the Example lacks {IMAGE_KEY} or {LABEL_KEY}") from exc


def parse_example(data: bytes) -> tuple:
    """(JPEG bytes, label) of a serialized Example; ValueError if a key is missing or malformed."""
    start, stop, label = locate_example(data, (0, len(data)))
    return bytes(data[start:stop]), label


# -- writing -----------------------------------------------------------------------------------------------

def write_split(store_dir, spec, split: str, images, labels, classes=None, progress=None) -> dict:
    """Write a split as shards plus their indexes; return ``shards`` (their count) and
    ``jpeg_files_sha256``, the SHA-256 of the JPEGs' digests: ``files-jpeg``'s ``files_sha256``."""
    count = shards.shard_count(len(labels), shards.estimate_bytes(images, RECORD_OVERHEAD))
    bounds = shards.shard_bounds(len(labels), count)
    jpegs, digest = shards.jpeg_bytes(images), shards.JpegDigest()
    for shard in range(count):
        offsets = []
        with open(shard_path(store_dir, split, shard), "wb") as file:
            for sample in range(bounds[shard], bounds[shard + 1]):
                jpeg = next(jpegs)
                digest.update(jpeg)
                offsets.append((file.tell(), file.write(frame(encode_example(jpeg, labels[sample])))))
                if progress is not None:
                    progress.update(1)
        index_path(store_dir, split, shard).write_text("".join(f"{o} {n}\n" for o, n in offsets))
    return {"shards": count, "jpeg_files_sha256": digest.hexdigest()}


def layout(spec, shape) -> dict:
    return {"format": "TFRecord shards <split>-%06d.tfrecord of tf.train.Example (image/encoded: the files-jpeg "
                      "bytes, image/class/label: int64), each with an index <split>-%06d.idx of "
                      "'<offset> <length>' per record", "codec": "jpeg", "lossless": False,
            "shard_bytes": shards.SHARD_BYTES, "min_shards": shards.MIN_SHARDS}


def data_files(store_dir) -> list:
    return sorted([*Path(store_dir).glob("*.tfrecord"), *Path(store_dir).glob("*.idx")])


def split_shards(store, split: str) -> list:
    """The split's shard files in shard order (their count from the manifest), checked to exist."""
    count = int(store.manifest["checksums"][split]["shards"])
    paths = [shard_path(store.path, split, shard) for shard in range(count)]
    shards.check_shards([path for shard in range(count) for path in (paths[shard], index_path(
        store.path, split, shard))], f"shard of {split}")
    return paths


# -- random access -----------------------------------------------------------------------------------------

def decode_jpeg(data: bytes, where: str) -> np.ndarray:
    """The pixels of JPEG bytes as (H, W, 3) uint8, decoded as the ``files`` loader decodes ``files-jpeg``
    (Pillow, converted to RGB); a ThesisError naming ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise damaged(where, f"holds a corrupt JPEG ({exc})") from exc


def read_index(path, expected: int) -> np.ndarray:
    """The (offset, length) rows of one ``.idx`` file, checked to list ``expected`` records."""
    try:
        rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise damaged(path, f"is not a readable record index ({exc})") from exc
    if rows.shape != (expected, 2):
        raise damaged(path, f"lists {len(rows)} records, the manifest's cut of the split says {expected}")
    return rows


def open_shard(path, index, expected: int) -> tuple:
    """(memory map, index rows) of one shard, checked: its index lists ``expected`` records and the file
    is as long as the index says."""
    rows = read_index(index, expected)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size != rows[-1].sum():
                raise damaged(path, f"is {size} bytes, its index says {rows[-1].sum()} (truncated?)")
            return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ), rows
    except OSError as exc:
        raise damaged(path, f"cannot be opened ({exc.strerror})") from exc


@dataclass(frozen=True)
class RecordPlan:
    """Where each sample's JPEG bytes lie, from one pass over the records (CRCs checked): its shard, the
    span of its bytes in that shard, and its label."""
    shard: np.ndarray   # (N,) int64
    start: np.ndarray   # (N,) int64: first byte of the JPEG in its shard
    stop: np.ndarray    # (N,) int64
    labels: np.ndarray  # (N,) int64


class RecordSlices:
    """A batch's JPEGs as slices of the memory-mapped shards: ``slices[row]`` (a memoryview, made only for a
    row that is asked for) and :meth:`located`, every row's address and size at once (no Python per row)."""

    def __init__(self, maps, shard, start, stop):
        self.maps, self.shard, self.start, self.stop = maps, shard, start, stop

    def __len__(self) -> int:
        return len(self.shard)

    def __getitem__(self, row: int) -> memoryview:
        return memoryview(self.maps[self.shard[row]])[self.start[row]:self.stop[row]]

    def located(self) -> tuple:
        """(addresses, sizes), int64 arrays, valid while the shards stay mapped."""
        bases = np.array([np.frombuffer(mapped, np.uint8, count=1).ctypes.data for mapped in self.maps],
                         dtype=np.int64)  # each array is dropped at once: a map with live exports cannot close
        return bases[self.shard] + self.start, self.stop - self.start


class RecordReader(Reader):
    """Random access to a split's records by sample index: the shards memory-mapped, each sample's JPEG
    sliced out of its record where it lies, and decoded straight into the batch buffer by a few threads
    (:mod:`thesislib.kernels.jpeg`: libjpeg-turbo with Pillow's settings, so the pixels are those of
    ``files`` on ``files-jpeg``; a JPEG it refuses is decoded by Pillow, which names what is wrong).

    Where each JPEG lies comes from one pass over every record when the reader is first opened (both CRCs
    of each record checked, its Example parsed; :class:`RecordPlan`), the way FFCV reads its table of
    sample offsets on open: a batch then costs no parsing, only the decodes. The plan is kept across
    :meth:`close` (a finished store does not change)."""

    def __init__(self, store, split, decode: str = "exact"):
        from thesislib.kernels import turbojpeg
        from thesislib.kernels.jpeg import is_fast
        from thesislib.kernels.parts import Parts

        super().__init__(store, split)
        self.fast = is_fast(decode)  # "fast": FFCV's fast DCT, approximate pixels (asked for by name)
        self.paths = split_shards(store, split)
        self.starts = shards.shard_bounds(self.shape[0], len(self.paths))
        self.plan = None
        self.parts = Parts(None, "tfrecord")  # the decode threads (made lazily, in the reading process)
        if turbojpeg.available():
            turbojpeg.compiled_loop()  # compiled now (about a second), not inside the first timed epoch

    def open(self):
        sizes = np.diff(self.starts)
        maps = []
        try:
            for shard, path in enumerate(self.paths):
                maps.append(open_shard(path, index_path(self.path, self.split, shard), sizes[shard]))
            if self.plan is None:
                self.plan = self.record_plan(maps)
        except BaseException:
            self.close_handle([mapped for mapped, _ in maps])
            raise
        return [mapped for mapped, _ in maps]

    def record_plan(self, maps) -> RecordPlan:
        """The :class:`RecordPlan` of the split from its (memory map, index rows) per shard: every record's
        CRCs checked and its Example parsed."""
        columns, labels = [[], [], [], []], {label_entry(label): label for label in range(self.num_classes)}
        for shard, (mapped, rows) in enumerate(maps):
            for offset, length in rows.tolist():
                try:
                    start, stop, label = locate_example(mapped, record_span(mapped, offset, length), labels)
                except (ValueError, IndexError, UnicodeDecodeError, struct.error) as exc:
                    raise damaged(self.paths[shard], f"holds a corrupt record at byte {offset} (sample "
                                  f"{len(columns[0])}: {exc})") from exc
                for column, value in zip(columns, (shard, start, stop, label)):
                    column.append(value)
        shard, start, stop, labels = (np.array(column, dtype=np.int64) for column in columns)
        return RecordPlan(shard, start, stop, self.checked_labels(self.path, labels))

    def close_handle(self, handle) -> None:
        for mapped in handle:
            mapped.close()

    def read_from(self, handle, indices, out=None) -> tuple:
        from thesislib.kernels.jpeg import decode_batch

        images = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8) if out is None else out
        plan = self.plan
        shard, start, stop = plan.shard[indices], plan.start[indices], plan.stop[indices]
        datas = RecordSlices(handle, shard, start, stop)

        def decode_slowly(row, exc) -> None:
            index = int(indices[row])
            where = f"sample {index} of {self.path}"
            images[row] = self.checked(decode_jpeg(bytes(datas[row]), where), index)

        decode_batch(self.parts, datas, images, decode_slowly, located=datas.located(), fast=self.fast)
        return images, plan.labels[indices]

    def reads_in_threads(self) -> bool:
        return True  # the decodes release the GIL: num_workers threads share the memory maps

    def checked(self, image, index) -> np.ndarray:
        if image.shape != self.shape[1:]:
            raise damaged(f"sample {index} of {self.path}", f"is {image.shape[1]}x{image.shape[0]}, the store's "
                          f"images are {self.shape[2]}x{self.shape[1]}")
        return image


DECODES = ("exact", "fast")  # how its JPEGs may be decoded (thesislib.kernels.jpeg.DECODES)


def reader(store, split: str, decode: str = "exact") -> RecordReader:
    return RecordReader(store, split, decode)


def unavailable_reason():
    return None


# -- reading back with TensorFlow --------------------------------------------------------------------------

def import_tensorflow():
    """TensorFlow, imported with its C++ logging quietened (only when a TensorFlow path is used: it takes
    seconds to import). The oneDNN notice is printed before TF_CPP_MIN_LOG_LEVEL applies, so the oneDNN
    graph rewrites (float math only; none in a data pipeline) are switched off unless the user chose."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    # PyTorch's compiler stack (torch._dynamo: imported by torchvision.ops and torch.compile) crashes the
    # process with a segmentation fault when it is first imported after TensorFlow (their native libraries
    # clash); imported before, both work. So it is imported first.
    importlib.import_module("torch._dynamo")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ThesisError(f"TensorFlow is not installed ({exc}): `pip install tensorflow-cpu` "
                          "(the project's dependencies include it)") from exc
    return tf


def read_back_records(store_dir, split: str) -> tuple:
    """(JPEG bytes per sample, labels int64) of a split in stored order, read with TensorFlow alone:
    ``tf.data.TFRecordDataset`` and ``tf.io.parse_single_example``."""
    tf = import_tensorflow()
    files = sorted(str(path) for path in Path(store_dir).glob(f"{split}-*.tfrecord"))
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
    examples = [tf.io.parse_single_example(record, features) for record in tf.data.TFRecordDataset(files)]
    return ([example["image/encoded"].numpy() for example in examples],
            np.array([int(example["image/class/label"]) for example in examples], dtype=np.int64))


def read_back(store_dir, split: str) -> tuple:
    """(images (N, H, W, 3) uint8, labels int64) of a split, read and decoded by TensorFlow alone
    (``tf.io.decode_jpeg`` with ``dct_method="INTEGER_ACCURATE"``: libjpeg's default, which Pillow uses)."""
    tf = import_tensorflow()  # ``import tensorflow``, after PyTorch's compiler (see import_tensorflow)
    files = sorted(str(path) for path in Path(store_dir).glob(f"{split}-*.tfrecord"))
    features = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64)}
    images, labels = [], []
    for record in tf.data.TFRecordDataset(files):
        example = tf.io.parse_single_example(record, features)
        images.append(tf.io.decode_jpeg(example["image/encoded"], channels=3, dct_method="INTEGER_ACCURATE"))
        labels.append(example["image/class/label"])
    return np.stack(images), np.array(labels, dtype=np.int64)
