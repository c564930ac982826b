"""``tfdata``: TensorFlow's own input pipeline over the ``tfrecord`` store, handing batches to PyTorch.

The pipeline TensorFlow's image models use (the supervisor's "PyTorch Datasets vs TFRecord" question):
this rank's shard files (in the epoch's seeded order, see :func:`~thesislib.loaders.streaming.
assigned_shards`), ``interleave`` of one ``TFRecordDataset`` per file (4 at once, in parallel; one at a
time, in index order, when ``shuffle`` is False), a ``shuffle`` buffer of serialized records (before
decoding, as TensorFlow's performance guide advises: small entries), ``batch``, then ``map`` over whole
batches (one more call in flight than the pool has threads) of ``parse_example`` (vectorised, as the guide's
"vectorizing mapping" advises) and ``map_fn`` of ``decode_jpeg`` over the batch's images
(``dct_method="INTEGER_ACCURATE"``, the IDCT Pillow uses, so the pixels equal the ``files`` loader's on
``files-jpeg``), and ``prefetch(2)``. Measured on cifar10 (2 cores): about 2-3x the per-sample order
(``parse_single_example`` + ``decode_jpeg`` per record, then ``batch``), whose per-element overhead
dominates small images. Each batch reaches PyTorch through DLPack (no copy): NHWC uint8 images, int64
labels, on the CPU.

The parallelism is fixed and tf.data's autotuning is off: its optimising thread sleeps in doubling periods,
and the end of an iterator waits for its next wake-up, so an epoch sometimes ended 1.3-2.2 s late (measured
here: 2.56 s or 5.12 s after its start, whatever the work; a third of the epochs at 19.5 k img/s instead of
30-45 k); with the parallelism above the epochs end at once and the throughput is that of autotuning's
good epochs.

Not in the sampler's order (the contract exempts streaming loaders), but every sample exactly once per
epoch, with its label. TensorFlow is imported only when the loader is made (it takes seconds), with its C++
logging quietened. Parameters: see :class:`~thesislib.loaders.streaming.StreamingLoader`; ``num_workers``
is the size of the pipeline's private thread pool (0: one thread per usable core), since
tf.data parallelises with threads, not processes; ``pin_memory`` is unused.
"""

import importlib.util

import numpy as np
import torch

from thesislib.errors import ThesisError
from thesislib.kernels.parts import usable_cores
from thesislib.loaders.streaming import StreamingLoader, buffer_seed
from thesislib.stores import shards
from thesislib.stores import tfrecord as store_format

CYCLE_LENGTH = 4  # shard files read at once by interleave
PARALLEL_DECODES = 16  # map_fn's images decoded at once within a batch
PREFETCH = 2  # batches prepared ahead


def to_torch(tf, tensor) -> torch.Tensor:
    """A TensorFlow CPU tensor as a PyTorch tensor sharing its memory (DLPack)."""
    return torch.from_dlpack(tf.experimental.dlpack.to_dlpack(tensor))


class TfDataLoader(StreamingLoader):
    name = "tfdata"
    store_kinds = ("tfrecord",)
    default_store = "tfrecord"

    def __init__(self, store, split, **kwargs):
        super().__init__(store, split, **kwargs)
        self.paths = store_format.split_shards(store, self.split)
        self.starts = shards.shard_bounds(store.count(self.split), len(self.paths))
        self.shard_sizes = np.diff(self.starts)
        self.rank_shards()  # too few shards for the ranks: said now
        self.tf = store_format.import_tensorflow()

    @property
    def readers(self) -> int:
        return 1  # one tf.data pipeline per rank, batching the rank's whole stream

    @classmethod
    def unavailable_reason(cls):
        if importlib.util.find_spec("tensorflow") is None:
            return "needs TensorFlow: pip install tensorflow-cpu (a dependency of the project)"
        return None

    def pipeline(self):
        """This epoch's ``tf.data.Dataset`` on this rank: batches of (images, labels, sample indices)."""
        tf, chosen = self.tf, self.rank_shards()
        files = tf.data.Dataset.from_tensor_slices(([str(self.paths[s]) for s in chosen],
                                                    self.starts[chosen].astype(np.int64)))
        cycle = min(CYCLE_LENGTH, len(chosen)) if self.shuffle else 1  # unshuffled: in index order
        records = files.interleave(numbered_records(tf), cycle_length=cycle, num_parallel_calls=cycle)
        if self.shuffle:
            records = records.shuffle(self.shuffle_buffer, seed=buffer_seed(self.seed, self.epoch, self.rank))
        batches = records.batch(self.batch_size).map(decode_records(tf, self.store.shape(self.split)[1:]),
                                                     num_parallel_calls=self.threads + 1)
        options = tf.data.Options()
        options.autotune.enabled = False  # see the module docstring: its thread delays every epoch's end
        options.threading.private_threadpool_size = self.threads
        return batches.prefetch(PREFETCH).with_options(options)

    @property
    def threads(self) -> int:
        """The pipeline's thread pool: ``num_workers``, or one thread per usable core."""
        return self.num_workers or usable_cores()

    def shard_batches(self):
        try:
            for images, labels, indices in self.pipeline():
                yield to_torch(self.tf, images), to_torch(self.tf, labels), to_torch(self.tf, indices)
        except self.tf.errors.OpError as exc:
            raise self.damaged_shard(exc) from exc

    def damaged_shard(self, exc) -> ThesisError:
        """The error naming the shard TensorFlow failed on, found by reading this rank's shards with the
        ``tfrecord`` reader (which checks each record's CRCs and names the file)."""
        reader = self.store.reader(self.split)
        try:
            for shard in self.rank_shards():
                reader.read(np.arange(self.starts[shard], self.starts[shard + 1]))
        except ThesisError as found:
            return found
        finally:
            reader.close()
        message = exc.message.strip().splitlines()[0] if exc.message else type(exc).__name__
        return ThesisError(f"TensorFlow cannot read the tfrecord store {self.store.path} ({message}): delete it "
                           "and run `python -m thesislib prepare` again")


def numbered_records(tf):
    """interleave's function: (file, index of its first sample) -> (sample index, serialized record)."""
    def records(path, start):
        return tf.data.TFRecordDataset(path).enumerate(start)  # no per-record map: numbered from start
    return records


def decode_records(tf, sample_shape):
    """map's function over a batch: (sample indices, records) -> (images uint8 (B, H, W, 3), labels int64,
    sample indices): the records parsed at once, each image decoded by ``decode_jpeg``."""
    features = {store_format.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
                store_format.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
    image_spec = tf.TensorSpec(tuple(sample_shape), tf.uint8)

    def decode_one(data):
        return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")

    def decode(indices, records):
        examples = tf.io.parse_example(records, features)
        images = tf.map_fn(decode_one, examples[store_format.IMAGE_KEY], fn_output_signature=image_spec,
                           parallel_iterations=PARALLEL_DECODES)
        return images, examples[store_format.LABEL_KEY], indices
    return decode
