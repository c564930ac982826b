"""thesislib.pytorchbasics: the thesis's model, the custom Datasets, and the data-dependent function."""

import pytest
import torch
import torch.fx
from torch.utils.data import DataLoader

from thesislib import pytorchbasics


def test_thesis_model_is_13_10_5_1_with_tanh_and_leaky_relu_and_201_parameters():
    model = pytorchbasics.thesis_model()
    assert [type(m).__name__ for m in model] == ["Linear", "Tanh", "Linear", "LeakyReLU", "Linear"]
    assert sum(p.numel() for p in model.parameters()) == 10 * 14 + 5 * 11 + 1 * 6
    assert model(torch.zeros(4, 13)).shape == (4, 1)


def test_tabular_dataset_is_seeded_and_batched_by_a_dataloader():
    first, again = pytorchbasics.TabularDataset(20, seed=3), pytorchbasics.TabularDataset(20, seed=3)
    assert len(first) == 20
    torch.testing.assert_close(first[5], again[5])
    x, y = next(iter(DataLoader(first, batch_size=8)))
    assert x.shape == (8, 13) and y.shape == (8, 1)


def test_tabular_dataset_refuses_no_rows():
    with pytest.raises(ValueError, match="at least one"):
        pytorchbasics.TabularDataset(0)


def test_who_loads_dataset_names_the_worker_of_each_batch():
    dataset = pytorchbasics.WhoLoadsDataset(8)
    main = [workers.tolist() for _, workers in DataLoader(dataset, batch_size=2)]
    assert main == [[-1, -1]] * 4
    two = [workers.tolist() for _, workers in DataLoader(dataset, batch_size=2, num_workers=2)]
    assert two == [[0, 0], [1, 1], [0, 0], [1, 1]]


def test_sign_dependent_is_dynamic_and_cannot_be_traced_into_a_static_graph():
    assert pytorchbasics.sign_dependent(torch.tensor([1.0, 2.0])).tolist() == [2.0, 4.0]
    assert pytorchbasics.sign_dependent(torch.tensor([-1.0, -2.0])).tolist() == [1.0, 2.0]
    with pytest.raises(torch.fx.proxy.TraceError, match="control flow"):
        torch.fx.symbolic_trace(pytorchbasics.sign_dependent)
