"""``tfrecord``: TFRecord shards of ``tf.train.Example`` records, as TensorFlow's image pipelines write them.

Layout: ``<split>-%06d.tfrecord`` (consecutive samples, see :mod:`thesislib.stores.shards`) and beside each
``<split>-%06d.idx``, one line ``<offset> <length>`` per record: the index format of DALI's
``fn.readers.tfrecord`` and of the ``tfrecord`` package (``tfrecord2idx``), so a reader can seek to any
record. A record is ``[uint64 length][uint32 masked CRC-32C of length][data][uint32 masked CRC-32C of data]``
(little endian); ``data`` is a ``tf.train.Example`` with the keys of TensorFlow's image pipelines:
``image/encoded`` (the ``files-jpeg`` store's bytes) and ``image/class/label`` (int64).

Writing and the random-access reader need no TensorFlow (the two protobuf messages are encoded and parsed
here, the CRC is ``google-crc32c``); :func:`read_back` reads a split with TensorFlow's own tools,
``tf.data.TFRecordDataset`` and ``tf.io.parse_single_example``, and is the only place here that imports it.
"""

import io
import os
import struct
from pathlib import Path

import google_crc32c
import numpy as np
from PIL import Image, UnidentifiedImageError

from thesislib.errors import ThesisError
from thesislib.stores import shards

IMAGE_KEY, LABEL_KEY = "image/encoded", "image/class/label"
RECORD_OVERHEAD = 16 + 60  # framing + the Example's keys and lengths, for the shard-size estimate
LAYOUT = {"format": "TFRecord shards of tf.train.Example (image/encoded: files-jpeg bytes, "
                    "image/class/label: int64), an .idx of '<offset> <length>' per shard",
          "codec": "jpeg", "lossless": False}


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


def unframe(record: bytes) -> bytes:
    """The data of one whole record; ValueError if it is short or a checksum fails."""
    if len(record) < 16:
        raise ValueError(f"{len(record)} bytes, a record has at least 16")
    (length,), (length_crc,) = struct.unpack_from("<Q", record), struct.unpack_from("<I", record, 8)
    if masked_crc(record[:8]) != length_crc or 16 + length != len(record):
        raise ValueError("its length field is damaged or the record is truncated")
    data = record[12:12 + length]
    if masked_crc(data) != struct.unpack_from("<I", record, 12 + length)[0]:
        raise ValueError("its data fails the CRC-32C check")
    return data


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


def encode_example(jpeg: bytes, label: int) -> bytes:
    """A serialized ``tf.train.Example`` with ``image/encoded`` and ``image/class/label``."""
    image = _field(1, _field(1, jpeg))                    # Feature.bytes_list.value
    label_feature = _field(3, _field(1, _varint(int(label))))  # Feature.int64_list.value (packed)
    return _field(1, _feature_entry(IMAGE_KEY, image) + _feature_entry(LABEL_KEY, label_feature))


def _read_varint(data: bytes, pos: int) -> tuple:
    value = shift = 0
    while True:
        byte = data[pos]
        value, pos, shift = value | (byte & 0x7F) << shift, pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _fields(data: bytes):
    """Yield ``(field number, payload)`` of a protobuf message (varint and length-delimited fields)."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        if key & 7 == 0:
            value, pos = _read_varint(data, pos)
        elif key & 7 == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        else:
            raise ValueError(f"unexpected protobuf wire type {key & 7}")
        yield key >> 3, value


def _first(data: bytes, number: int):
    return next(value for field, value in _fields(data) if field == number)


def parse_example(data: bytes) -> tuple:
    """(JPEG bytes, label) of a serialized Example; ValueError if a key is missing or malformed."""
    features = {}
    for entry in (value for field, value in _fields(_first(data, 1)) if field == 1):
        entry_fields = dict(_fields(entry))
        features[bytes(entry_fields[1]).decode()] = entry_fields[2]
    try:
        jpeg = _first(_first(features[IMAGE_KEY], 1), 1)
        labels = _first(features[LABEL_KEY], 3)
        packed = _first(labels, 1)
        label = packed if isinstance(packed, int) else _read_varint(packed, 0)[0]
    except (KeyError, StopIteration, IndexError) as exc:
        raise ValueError(f"the Example lacks {IMAGE_KEY} or {LABEL_KEY}") from exc
    return bytes(jpeg), label


# -- writing -----------------------------------------------------------------------------------------------

def write_split(store_dir, split: str, images, labels, progress=None) -> tuple:
    """Write a split as shards plus their indexes; return (checksums, layout): the checksums hold each
    file's SHA-256 and ``jpeg_sha256``, equal to ``files-jpeg``'s ``files_sha256``."""
    count = shards.shard_count(len(labels), shards.estimate_bytes(images, RECORD_OVERHEAD))
    bounds = shards.shard_bounds(len(labels), count)
    jpegs, digest, files = shards.jpeg_bytes(images), shards.JpegDigest(), {}
    for shard in range(count):
        path, index = shard_path(store_dir, split, shard), index_path(store_dir, split, shard)
        lines, offset = [], 0
        with open(path, "wb") as file:
            for sample in range(bounds[shard], bounds[shard + 1]):
                jpeg = next(jpegs)
                digest.update(jpeg)
                record = frame(encode_example(jpeg, labels[sample]))
                file.write(record)
                lines.append(f"{offset} {len(record)}\n")
                offset += len(record)
                if progress is not None:
                    progress.update(1)
        index.write_text("".join(lines))
        files.update({p.name: shards.file_sha256(p) for p in (path, index)})
    return ({"jpeg_sha256": digest.hexdigest(), "files_sha256": files},
            {**LAYOUT, "shards": {split: np.diff(bounds).tolist()}})


def data_files(store_dir, split: str, shard_sizes) -> list:
    """The split's shard files and their indexes, in shard order."""
    return [path for shard in range(len(shard_sizes))
            for path in (shard_path(store_dir, split, shard), index_path(store_dir, split, shard))]


# -- random access -----------------------------------------------------------------------------------------

def decode_jpeg(data: bytes, where: str) -> np.ndarray:
    """The pixels of JPEG bytes as (H, W, 3) uint8, decoded as the ``files`` loader decodes ``files-jpeg``
    (Pillow, converted to RGB); a ThesisError naming ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise ThesisError(f"corrupt JPEG in {where} ({exc}): delete the store folder and run "
                          "`python -m thesislib prepare` again") from exc


def read_index(path, expected: int) -> np.ndarray:
    """The (offset, length) rows of one ``.idx`` file, checked to list ``expected`` records."""
    try:
        rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ThesisError(f"cannot read the record index {path} ({exc}): delete the store folder and run "
                          "`python -m thesislib prepare` again") from exc
    if rows.shape != (expected, 2) and not (expected == 0 and rows.size == 0):
        raise ThesisError(f"{path} lists {len(rows)} records, the manifest says {expected}: delete the store "
                          "folder and run `python -m thesislib prepare` again")
    return rows


class RecordReader:
    """Random access to a split's records by sample index, through the offset indexes: picklable, opens
    its files lazily in the process that reads. ``read(sorted indices) -> (images, labels)``."""

    def __init__(self, store_dir, split: str, shard_sizes, shape):
        self.store_dir, self.split, self.shape = Path(store_dir), split, tuple(shape)
        self.sizes = [int(size) for size in shard_sizes]
        self.starts = np.cumsum([0, *self.sizes])
        self.files = None  # per shard: (file descriptor, index rows), opened by :meth:`open`

    def open(self) -> None:
        if self.files is None:
            self.files = [self._open_shard(shard) for shard in range(len(self.sizes))]

    def _open_shard(self, shard: int) -> tuple:
        rows = read_index(index_path(self.store_dir, self.split, shard), self.sizes[shard])
        path = shard_path(self.store_dir, self.split, shard)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ThesisError(f"cannot open {path} ({exc.strerror}): delete the store folder and run "
                              "`python -m thesislib prepare` again") from exc
        if len(rows) and os.fstat(fd).st_size < rows[-1].sum():
            os.close(fd)
            raise ThesisError(f"{path} is truncated (its index ends at byte {rows[-1].sum()}): delete the store "
                              "folder and run `python -m thesislib prepare` again")
        return fd, rows

    def record(self, index: int) -> tuple:
        """(JPEG bytes, label) of sample ``index``."""
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        fd, rows = self.files[shard]
        offset, length = rows[index - self.starts[shard]]
        try:
            return parse_example(unframe(os.pread(fd, int(length), int(offset))))
        except (ValueError, IndexError) as exc:
            path = shard_path(self.store_dir, self.split, shard)
            raise ThesisError(f"record of sample {index} at byte {offset} of {path} is corrupt ({exc}): "
                              "delete the store folder and run `python -m thesislib prepare` again") from exc

    def read(self, indices) -> tuple:
        self.open()
        images = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        labels = np.empty(len(indices), dtype=np.int64)
        for row, index in enumerate(indices):
            jpeg, labels[row] = self.record(int(index))
            images[row] = self._checked(decode_jpeg(jpeg, f"sample {index} of {self.store_dir}"), index)
        return images, labels

    def _checked(self, image, index) -> np.ndarray:
        if image.shape != self.shape[1:]:
            height, width = self.shape[1:3]
            raise ThesisError(f"sample {index} of {self.store_dir} is {image.shape[1]}x{image.shape[0]}, the "
                              f"store's images are {width}x{height}: delete the store folder and prepare again")
        return image

    def close(self) -> None:
        files, self.files = self.files, None
        for fd, _ in files or ():
            os.close(fd)

    def __getstate__(self):
        return {**self.__dict__, "files": None}


# -- reading back with TensorFlow --------------------------------------------------------------------------

def import_tensorflow():
    """TensorFlow, imported with its C++ logging quietened (only when a TensorFlow path is used: it takes
    seconds to import). The oneDNN notice is printed before TF_CPP_MIN_LOG_LEVEL applies, so the oneDNN
    graph rewrites (float math only; none in a data pipeline) are switched off unless the user chose."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise ThesisError(f"TensorFlow is not installed ({exc}): `pip install tensorflow-cpu` "
                          "(the project's dependencies include it)") from exc
    return tf


def read_back_records(store_dir, split: str) -> tuple:
    """(JPEG bytes per sample, labels int64) of a split, read with ``tf.data.TFRecordDataset`` and
    ``tf.io.parse_single_example`` (TensorFlow's own tools, no thesislib code)."""
    tf = import_tensorflow()
    files = sorted(str(path) for path in Path(store_dir).glob(f"{split}-*.tfrecord"))
    features = {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string), LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    jpegs, labels = [], []
    for record in tf.data.TFRecordDataset(files):
        example = tf.io.parse_single_example(record, features)
        jpegs.append(example[IMAGE_KEY].numpy())
        labels.append(int(example[LABEL_KEY]))
    return jpegs, np.array(labels, dtype=np.int64)


def read_back(store_dir, split: str) -> tuple:
    """(images (N, H, W, 3) uint8, labels int64) of a split, read and decoded by TensorFlow alone
    (``tf.io.decode_jpeg`` with ``dct_method="INTEGER_ACCURATE"``, libjpeg's default, as Pillow uses)."""
    tf = import_tensorflow()
    jpegs, labels = read_back_records(store_dir, split)
    images = [tf.io.decode_jpeg(jpeg, channels=3, dct_method="INTEGER_ACCURATE").numpy() for jpeg in jpegs]
    return np.stack(images), labels
