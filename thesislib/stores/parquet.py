"""The Parquet store: one file per split, ``<split>.parquet``, the layout of Hugging Face ``datasets``.

Columns: ``image``, a struct ``{bytes: binary, path: string}`` as ``datasets``' ``Image`` feature writes it
(``bytes``: the PNG file of the ``files-png`` store, lossless; ``path``: ``<index:06d>.png``), and
``label`` int64 (row ``i`` is sample ``i``). The schema's ``huggingface`` metadata declares the features
(``Image``, and ``ClassLabel`` with the class names), so ``datasets.Dataset.from_parquet`` decodes the
images and names the labels. Row groups hold :data:`ROW_GROUP` rows; columns are not compressed again
(PNG already is).

Random access, as a map-style dataset over Parquet must do it: a batch reads the row groups that hold its
samples (``ParquetFile.read_row_groups``, the image column only), and its PNGs are decoded into the batch
buffer by a few threads (:mod:`thesislib.kernels.imagefiles`: OpenCV for the 8-bit RGB PNG the store writes
where it is installed, else Pillow; lossless, so Pillow's pixels). With shuffled batches nearly every
sample needs its own row group, so the first batches read most of the file for a few rows each: that cost
is the format's. The row groups read are kept, up to :data:`CACHE_BYTES` of PNG bytes per reader (the oldest
dropped first), as a database keeps the pages it read, so later batches read only the groups not yet kept;
the labels are read once on open.
"""

import io
import json
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image

from thesislib import remote
from thesislib.stores.base import Reader, StoreSpec, damaged
from thesislib.stores.imagefiles import chunk_size, encode
from thesislib.stores.pool import encoding_pool, map_ordered

KIND = "parquet"
STORES = [StoreSpec("parquet", KIND, "uint8")]
LOADER = "parquet"
READS_URLS = True  # read straight from a store at a URL (thesislib.remote)
ROW_GROUP = 1000
ENCODE_CHUNK = 250  # images per task handed to an encoding process
CACHE_BYTES = 1 << 30  # PNG bytes of the row groups a reader keeps


def file_of(store_dir, split: str):
    return remote.join(store_dir, f"{split}.parquet") if remote.is_url(store_dir) else \
        Path(store_dir) / f"{split}.parquet"


def schema(classes):
    import pyarrow as pa

    features = {"image": {"_type": "Image"}, "label": {"names": list(classes), "_type": "ClassLabel"}}
    return pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                      ("label", pa.int64())],
                     metadata={"huggingface": json.dumps({"info": {"features": features}})})


def encode_png(images) -> list:
    """Worker: the PNG bytes of each image (as the ``files-png`` store writes them)."""
    return [encode(image, "png") for image in images]


def write_split(store_dir: Path, spec, split: str, images, labels, classes, progress=None) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = np.asarray(labels, dtype=np.int64)
    with pq.ParquetWriter(file_of(store_dir, split), schema(classes), compression="none",
                          use_dictionary=False, write_statistics=False) as writer, \
            encoding_pool() as pool:
        for start in range(0, len(images), ROW_GROUP):
            stop = min(start + ROW_GROUP, len(images))
            step = min(ENCODE_CHUNK, chunk_size(images))
            chunks = [images[i:min(i + step, stop)] for i in range(start, stop, step)]
            encoded = [data for part in map_ordered(pool, encode_png, chunks) for data in part]
            image = pa.StructArray.from_arrays(
                [pa.array(encoded, pa.binary()), pa.array([f"{i:06d}.png" for i in range(start, stop)])],
                names=["bytes", "path"])
            writer.write_table(pa.table({"image": image, "label": labels[start:stop]}, schema=writer.schema),
                               row_group_size=ROW_GROUP)
            if progress is not None:
                progress.update(stop - start)
    return {}


def layout(spec, shape) -> dict:
    return {"file": "<split>.parquet", "row_group_rows": ROW_GROUP,
            "columns": {"image": "struct{bytes: PNG (as files-png), path: <index:06d>.png}", "label": "int64"},
            "features": "Hugging Face datasets: Image, ClassLabel", "compression": "none (PNG is compressed)",
            "why": "the layout Hugging Face datasets writes; random access reads whole row groups"}


def data_files(store_dir) -> list:
    return sorted(Path(store_dir).glob("*.parquet"))


def unreadable():
    """What a damaged Parquet file raises in pyarrow (a bad footer or page: ArrowInvalid is a ValueError;
    a short read: OSError)."""
    import pyarrow as pa

    return OSError, ValueError, pa.ArrowException


def open_split(path: Path, count: int) -> tuple:
    """(ParquetFile, first row of each row group, labels) of a split, checked against the manifest."""
    import pyarrow.parquet as pq

    if not remote.exists(path):
        raise damaged(path, "is missing")
    try:
        file = pq.ParquetFile(remote.open_ranged(path) if remote.is_url(path) else path)  # URL: a file object
        sizes = [file.metadata.row_group(g).num_rows for g in range(file.metadata.num_row_groups)]
        labels = file.read(columns=["label"]).column("label").to_numpy()
    except (KeyError, *unreadable()) as exc:
        raise damaged(path, f"is not a readable Parquet file of images and labels ({exc})") from exc
    if sum(sizes) != count or len(labels) != count:
        raise damaged(path, f"holds {sum(sizes)} rows, its manifest says {count}")
    return file, np.cumsum([0, *sizes])[:-1], labels.astype(np.int64, copy=False)


def decode_png(data, path, index, shape) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise damaged(path, f"row {index} holds no readable PNG ({exc})") from exc
    if pixels.shape != tuple(shape):
        raise damaged(path, f"row {index} is a {pixels.shape[1]}x{pixels.shape[0]} image, the store's are "
                            f"{shape[1]}x{shape[0]}")
    return pixels


class RowGroups:
    """The PNG bytes of the row groups read so far, up to ``limit`` bytes (the oldest group dropped first);
    one lock, so that threads reading batches at once read each group once."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.groups, self.bytes, self.limit = OrderedDict(), 0, limit
        self.lock = threading.Lock()

    def values(self, file, path, needed: list) -> dict:
        """{row group: list of its PNG bytes} of the ``needed`` groups, reading those not kept."""
        with self.lock:
            missing = [group for group in needed if group not in self.groups]
            if missing:
                self.groups.update(read_pngs(file, path, missing))
                self.bytes += sum(len(png) for group in missing for png in self.groups[group])
            found = {group: self.groups[group] for group in needed}
            while self.bytes > self.limit and len(self.groups) > len(needed):
                _, dropped = self.groups.popitem(last=False)
                self.bytes -= sum(map(len, dropped))
            return found


def read_pngs(file, path, groups: list) -> dict:
    """{row group: list of the PNG bytes of its rows} of ``groups``, read in one call."""
    try:
        table = file.read_row_groups(groups, columns=["image"], use_threads=False)
        pngs = table.column("image").combine_chunks().field("bytes").to_pylist()
    except unreadable() as exc:
        raise damaged(path, f"has row groups that cannot be read ({exc})") from exc
    sizes = [file.metadata.row_group(group).num_rows for group in groups]
    starts = np.cumsum([0, *sizes]).tolist()
    return {group: pngs[starts[i]:starts[i + 1]] for i, group in enumerate(groups)}


class ParquetReader(Reader):
    """Batches of a split: the row groups holding the batch's samples read (or found kept), their PNGs
    decoded into the batch buffer by a few threads."""

    def __init__(self, store, split):
        from thesislib.kernels.imagefiles import FileDecoder
        from thesislib.stores.imagefiles import exact_decoder

        super().__init__(store, split)
        self.file = file_of(store.path, split)
        self.decode = FileDecoder(exact_decoder("png"))

    def open(self):
        file, starts, labels = open_split(self.file, self.shape[0])
        try:
            return file, starts, self.checked_labels(self.file, labels), RowGroups()
        except BaseException:
            file.close()
            raise

    def read_from(self, handle, indices, out=None):
        from thesislib.kernels.jpeg import batch_threads

        file, starts, labels, kept = handle
        groups = np.searchsorted(starts, indices, side="right") - 1
        values = kept.values(file, self.file, np.unique(groups).tolist())
        pngs = [values[group][row] for group, row in zip(groups.tolist(), (indices - starts[groups]).tolist())]
        images = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8) if out is None else out
        self.decode.parts.run(lambda a, b: self.decode_rows(pngs, images, indices, a, b), len(indices),
                              batch_threads(self.decode.parts.threads))
        return images, labels[indices]

    def decode_rows(self, pngs, images, indices, start: int, stop: int) -> None:
        for row in range(start, stop):
            try:
                self.decode.decode_into(pngs[row], images[row])
            except (ValueError, OSError):
                images[row] = decode_png(pngs[row], self.file, int(indices[row]), self.shape[1:])

    def reads_in_threads(self) -> bool:
        return not remote.is_url(self.file)  # the decodes release the GIL; a URL's file object is not shared

    def close_handle(self, handle) -> None:
        handle[0].close()


def reader(store, split: str) -> ParquetReader:
    return ParquetReader(store, split)


def read_back(store_dir, split: str) -> tuple:
    import pyarrow.parquet as pq

    table = pq.read_table(Path(store_dir) / f"{split}.parquet")
    images = [np.asarray(Image.open(io.BytesIO(row["bytes"])).convert("RGB"))
              for row in table.column("image").to_pylist()]
    return np.stack(images), table.column("label").to_numpy().astype(np.int64)
