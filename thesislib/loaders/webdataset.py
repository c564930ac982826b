"""``webdataset``: the ``webdataset`` library as its users run it, over the ``webdataset`` store's tar shards.

Per epoch: this rank's shards in the epoch's seeded order (:func:`~thesislib.loaders.streaming.
assigned_shards`), ``WebDataset(urls, workersplitter=split_by_worker)`` (each DataLoader worker streams its
own shards), a shuffle buffer of undecoded samples, their ``jpg``, ``cls``, key and URL
(:func:`sample_members`) and ``.batched(batch_size, collation_fn=BatchDecoder(...))``: each batch's JPEGs are decoded at once into one
array (:func:`thesislib.kernels.jpeg.decode_batch`: the compiled TurboJPEG loop where it runs, Pillow's
settings, so the pixels equal the ``files`` loader's on ``files-jpeg``) instead of one Pillow call per sample
in ``.decode("rgb8")`` (the per-sample Python calls cost more than a 32x32 decode); PyTorch's
``DataLoader`` (``batch_size=None``) runs the workers. The tar reading and the pipeline stay the library's:
``benchmarks/peers.py`` shows what that costs per sample. Not in the sampler's order (the contract exempts
streaming loaders), but every sample exactly once per epoch, with its label (a shard that ends early is
named: :meth:`~thesislib.loaders.streaming.StreamingLoader.samples`). Parameters: see
:class:`~thesislib.loaders.streaming.StreamingLoader`.
"""

import importlib.util

import numpy as np
import torch
from PIL import UnidentifiedImageError

from thesislib.kernels.imagefiles import pillow_into
from thesislib.kernels.jpeg import decode_batch
from thesislib.kernels.parts import Parts
from thesislib.loaders.base import iterate
from thesislib.loaders.streaming import StreamingLoader, buffer_seed
from thesislib.stores import webdataset as store_format
from thesislib.stores.base import damaged


def shard_error(exc):
    """webdataset's error handler: one ThesisError naming the shard (the library adds its URL to the
    exception's arguments) and the fix."""
    url = next((arg for arg in exc.args if isinstance(arg, str) and arg.endswith(".tar")), None)
    url = url or getattr(exc, "__url__", None) or "a shard of the webdataset store"
    raise damaged(url, f"cannot be read ({type(exc).__name__}: {exc.args[0] if exc.args else exc})") from exc


class BatchDecoder:
    """``batched``'s collation function: samples (jpg bytes, cls bytes, key, url) -> (images (B, H, W, 3)
    uint8, labels int64, sample indices int64) tensors, the batch's JPEGs decoded at once; a member that does
    not decode, or a class that is not a number, is named with its shard. Picklable (threads made lazily)."""

    def __init__(self, sample_shape):
        self.sample_shape = tuple(sample_shape)
        self.parts = Parts(None, "decode")

    def __call__(self, samples) -> tuple:
        datas, classes, keys, urls = zip(*samples)
        images = np.empty((len(datas), *self.sample_shape), dtype=np.uint8)

        def decode_slowly(row, exc) -> None:  # what the fast decoders refuse: Pillow, or the member named
            try:
                pillow_into(datas[row], images[row])
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
                raise damaged(urls[row], f"holds {keys[row]}.jpg, which does not decode ({error})") from error

        decode_batch(self.parts, datas, images, decode_slowly)
        labels = [class_number(data, key, url) for data, key, url in zip(classes, keys, urls)]
        indices = [sample_index(key, url) for key, url in zip(keys, urls)]
        return (torch.from_numpy(images), torch.tensor(labels, dtype=torch.int64),
                torch.tensor(indices, dtype=torch.int64))


def sample_members(sample: dict) -> tuple:
    """``to_tuple("jpg", "cls", "__key__", "__url__")``, but a sample without one of its members (a shard cut
    inside a sample, or a foreign member) is named with its shard."""
    try:
        return sample["jpg"], sample["cls"], sample["__key__"], sample["__url__"]
    except KeyError as exc:
        url, key = sample.get("__url__", "a shard of the webdataset store"), sample.get("__key__", "?")
        raise damaged(url, f"holds the sample {str(key)[:40]!r} without its .{exc.args[0]} member") from exc


def class_number(data: bytes, key: str, url: str) -> int:
    """The label in a ``.cls`` member (its decimal text, as webdataset decodes it)."""
    try:
        return int(data)
    except (TypeError, ValueError) as exc:
        raise damaged(url, f"holds {key}.cls, which is not a class number ({data[:20]!r})") from exc


def sample_index(key: str, url: str) -> int:
    """The sample index a member's key names (``<index:06d>``)."""
    try:
        return int(key)
    except (TypeError, ValueError) as exc:
        raise damaged(url, f"holds the member key {key[:40]!r}, which is not a sample index") from exc


class WebDatasetLoader(StreamingLoader):
    name = "webdataset"
    store_kinds = ("webdataset",)
    default_store = "webdataset"

    def __init__(self, store, split, **kwargs):
        super().__init__(store, split, **kwargs)
        self.paths, self.shard_sizes = store_format.split_shards(store, self.split)
        self.rank_shards()  # too few shards for the ranks: said now

    @classmethod
    def unavailable_reason(cls):
        if importlib.util.find_spec("webdataset") is None:
            return "needs the webdataset library: pip install webdataset (a dependency of the project)"
        return None

    def pipeline(self):
        """This epoch's ``webdataset`` pipeline on this rank (iterable; split among DataLoader workers)."""
        import webdataset as wds

        urls = [str(self.paths[shard]) for shard in self.rank_shards()]
        dataset = wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=wds.split_by_worker,
                                 handler=shard_error, empty_check=False)
        if self.shuffle:
            dataset = dataset.shuffle(self.shuffle_buffer, seed=buffer_seed(self.seed, self.epoch, self.rank))
        dataset = dataset.map(sample_members)
        return dataset.batched(self.batch_size, collation_fn=BatchDecoder(self.store.shape(self.split)[1:]),
                               partial=True)

    def shard_batches(self):
        dataset = self.pipeline()
        pin = self.pin_memory and torch.cuda.is_available()
        if self.num_workers == 0 and not pin:
            yield from dataset
            return
        yield from iterate(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                                                       pin_memory=pin, persistent_workers=False))
