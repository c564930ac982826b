"""``webdataset``: the ``webdataset`` library as its users run it, over the ``webdataset`` store's tar shards.

Per epoch: this rank's shards in the epoch's seeded order (:func:`~thesislib.loaders.streaming.
assigned_shards`), ``WebDataset(urls, workersplitter=split_by_worker)`` (each DataLoader worker streams its
own shards), a shuffle buffer, ``.decode("rgb8")`` (Pillow, as ``files`` decodes ``files-jpeg``: the same
pixels), ``.to_tuple("jpg", "cls", "__key__")`` and ``.batched(batch_size)``; PyTorch's ``DataLoader``
(``batch_size=None``) runs the workers. Not in the sampler's order (the contract exempts streaming loaders),
but every sample exactly once per epoch, with its label. Parameters: see
:class:`~thesislib.loaders.streaming.StreamingLoader`.
"""

import importlib.util

import numpy as np
import torch

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


def sample_error(exc):
    """webdataset's error handler for a sample that does not decode: names its shard and member (the
    library's ``DecodingError`` carries them) and the fix."""
    url = getattr(exc, "url", None) or "a shard of the webdataset store"
    member = f"{getattr(exc, 'key', '?')}.{getattr(exc, 'k', '?')}"
    raise damaged(url, f"holds {member}, which does not decode ({exc.__cause__ or exc})") from exc


def collate(samples) -> tuple:
    """(images (B, H, W, 3) uint8, labels int64, sample indices int64) tensors of decoded samples."""
    images, labels, keys = zip(*samples)
    return (torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64),
            torch.tensor([int(key) for key in keys], dtype=torch.int64))


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
        dataset = dataset.decode("rgb8", handler=sample_error).to_tuple("jpg", "cls", "__key__")
        return dataset.batched(self.batch_size, collation_fn=collate, partial=True)

    def samples(self):
        dataset = self.pipeline()
        pin = self.pin_memory and torch.cuda.is_available()
        if self.num_workers == 0 and not pin:
            yield from dataset
            return
        yield from iterate(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                                                       pin_memory=pin, persistent_workers=False))
