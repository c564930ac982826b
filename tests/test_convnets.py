"""thesislib.convnets: convolution by hand against torch, and the blocks' shapes and parameter counts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock

from thesislib import convnets


@pytest.mark.parametrize("seed", range(3))
def test_cross_correlation_by_hand_equals_torch_conv2d(seed):
    rng = np.random.default_rng(seed)
    image, kernel = rng.normal(size=(9, 7)), rng.normal(size=(3, 2))
    torch_out = F.conv2d(torch.tensor(image)[None, None], torch.tensor(kernel)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(convnets.cross_correlate(image, kernel), torch_out, rtol=0, atol=1e-12)


def test_cross_correlate_refuses_a_kernel_larger_than_the_image():
    with pytest.raises(ValueError, match="no larger than the image"):
        convnets.cross_correlate(np.ones((2, 2)), np.ones((3, 3)))


@pytest.mark.parametrize("size, kernel, stride, padding", [(32, 3, 1, 1), (32, 3, 2, 1), (32, 5, 1, 0), (7, 2, 2, 0)])
def test_conv_output_size_equals_what_conv2d_returns(size, kernel, stride, padding):
    out = torch.nn.Conv2d(1, 1, kernel, stride, padding)(torch.zeros(1, 1, size, size))
    assert out.shape[-1] == convnets.conv_output_size(size, kernel, stride, padding)


def test_residual_block_equals_torchvision_basic_block_with_the_same_weights():
    torch.manual_seed(0)
    ours, theirs = convnets.ResidualBlock(16).eval(), BasicBlock(16, 16).eval()
    names = {"conv1": "body.0", "bn1": "body.1", "conv2": "body.3", "bn2": "body.4"}
    state = {names[key.split(".")[0]] + key[key.index("."):]: value for key, value in theirs.state_dict().items()}
    ours.load_state_dict(state)
    x = torch.randn(2, 16, 8, 8)
    assert convnets.count_parameters(ours) == convnets.count_parameters(theirs) == 2 * (16 * 16 * 9 + 2 * 16)
    torch.testing.assert_close(ours(x), theirs(x))


def test_dense_block_keeps_its_input_and_adds_growth_channels_per_layer():
    torch.manual_seed(0)
    block, x = convnets.DenseBlock(16, growth=12, layers=4), torch.randn(2, 16, 8, 8)
    out = block(x)
    assert out.shape == (2, 16 + 4 * 12, 8, 8)
    torch.testing.assert_close(out[:, :16], x)


def test_inception_block_concatenates_its_four_branches_with_googlenets_3a_sizes():
    torch.manual_seed(0)
    block = convnets.InceptionBlock()
    assert block(torch.randn(1, 192, 8, 8)).shape == (1, 64 + 128 + 32 + 32, 8, 8)
    expected = (192 * 64 + 64) + (192 * 96 + 96 + 96 * 128 * 9 + 128) + (192 * 16 + 16 + 16 * 32 * 25 + 32) \
        + (192 * 32 + 32)
    assert convnets.count_parameters(block) == expected


def test_shapes_through_follows_each_layer_of_a_sequential():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.Flatten())
    assert convnets.shapes_through(model, torch.zeros(1, 3, 32, 32)) == [("0: Conv2d", (1, 8, 16, 16)),
                                                                          ("1: Flatten", (1, 2048))]
