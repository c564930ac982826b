"""The thesis's section 1.3 (PyTorch): its own model, a custom ``Dataset``, and a graph that depends on the data.

``notebooks/01_3_pytorch.ipynb`` runs them: the model's shapes and parameters, ``DataLoader``'s ``shuffle``,
``num_workers`` and ``pin_memory``, and static against dynamic graphs. ``tests/test_pytorchbasics.py`` checks them.
"""

import torch
from torch import nn
from torch.utils.data import Dataset, get_worker_info

THESIS_FEATURES = 13  # the thesis's model takes 13 numbers per sample


def thesis_model() -> nn.Sequential:
    """The thesis's network: Linear 13→10, Tanh, Linear 10→5, LeakyReLU, Linear 5→1 (201 parameters)."""
    return nn.Sequential(nn.Linear(THESIS_FEATURES, 10), nn.Tanh(), nn.Linear(10, 5), nn.LeakyReLU(),
                         nn.Linear(5, 1))


class TabularDataset(Dataset):
    """``rows`` samples of ``features`` numbers and one target each, drawn from ``seed``.

    A map-style ``Dataset`` needs two methods: ``__len__`` (how many samples) and ``__getitem__(i)`` (sample
    ``i``); the ``DataLoader`` chooses the indices, batches and workers. The target is a fixed random linear
    function of the features plus noise, so that the thesis's model has something to learn.
    """

    def __init__(self, rows: int = 64, features: int = THESIS_FEATURES, seed: int = 0):
        if rows < 1 or features < 1:
            raise ValueError(f"rows={rows} and features={features}: expected at least one of each")
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(rows, features, generator=generator)
        weights = torch.randn(features, generator=generator)
        self.y = (self.x @ weights + 0.1 * torch.randn(rows, generator=generator)).unsqueeze(1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        return self.x[index], self.y[index]


class WhoLoadsDataset(Dataset):
    """Sample ``i`` is ``(i, id of the worker process that loaded it)``; -1 when the main process did."""

    def __init__(self, rows: int = 12):
        self.rows = rows

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: int):
        info = get_worker_info()
        return index, -1 if info is None else info.id


def sign_dependent(x: torch.Tensor) -> torch.Tensor:
    """2·x if the elements of ``x`` sum to more than 0, else −x: which operations run depends on the data."""
    if x.sum() > 0:
        return 2 * x
    return -x
