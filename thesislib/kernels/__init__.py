"""Fast reading kernels: the pieces a loader's reader calls to fill a batch buffer quickly.

Each module does one job and knows nothing of manifests or loaders (nor of stores, but for the batch
ring :mod:`~thesislib.kernels.prefetch` takes from :mod:`thesislib.stores.gather`):

* :mod:`~thesislib.kernels.gather`: ``array[sorted indices]`` into a given buffer, on as many threads as
  measurement shows pay off for that batch size (the one gather: ``numpy``, ``hdf5``, ``zarr``, ``memory``);
* :mod:`~thesislib.kernels.prefetch`: a loader's :class:`~thesislib.kernels.prefetch.Prefetcher`: its batches
  read into one :class:`~thesislib.stores.gather.BatchRing` (stated lifetime) in the consumer's thread or by
  background threads ahead of it, the thread count measured (the path of readers that release the GIL);
* :mod:`~thesislib.kernels.parts`: a function run over contiguous parts of a batch on a few threads;
* :mod:`~thesislib.kernels.imagefiles`: decode a batch of image files in parallel into one buffer;
* :mod:`~thesislib.kernels.jpeg`: decode a batch of JPEGs already in memory (slices of a mapped shard, file
  contents) into the rows of one buffer, with Pillow's pixels, and how many threads split one batch;
* :mod:`~thesislib.kernels.hdf5map`: a contiguous, unfiltered HDF5 dataset as a read-only memory map;
* :mod:`~thesislib.kernels.zarrchunks`: a sharded Zarr v3 array as memory-mapped shards, and the earlier
  one-sample-per-chunk layout fetched and decoded by threads.

A reader in the sense of these kernels is any object with ``read(indices, out=None) -> (images, labels)``
that writes the images into ``out`` (an (len(indices), H, W, C) array) when given one.
"""
