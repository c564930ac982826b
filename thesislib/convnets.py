"""The thesis's section 1.2 (image classification): convolution and three famous blocks as short modules.

``notebooks/01_2_image_classification.ipynb`` counts their parameters, follows the shapes through them and runs
them on a CIFAR-10 batch; ``tests/test_convnets.py`` checks them. Each block keeps the image's height and width
(3×3 convolutions padded by 1), so they can be stacked; what changes is the number of channels:

- :class:`ResidualBlock` (ResNet, He et al. 2016): ``y = ReLU(x + F(x))``, same channels in and out; the
  skip connection lets the gradient bypass ``F``, which is what makes networks of 100+ layers trainable.
- :class:`DenseBlock` (DenseNet, Huang et al. 2017): every layer sees the concatenation of all earlier
  outputs and adds ``growth`` channels of its own.
- :class:`InceptionBlock` (GoogLeNet, Szegedy et al. 2015): 1×1, 3×3 and 5×5 convolutions and a max pool
  side by side, concatenated; 1×1 convolutions first shrink the channels that the larger kernels see.

The project's ``--model`` offers ``small`` (:func:`thesislib.models.small_cnn`, a plain ConvNet) and
``resnet18`` (torchvision's ResNet-18, eight residual blocks); no model of it uses the dense or Inception block.
"""

import numpy as np
import torch
from torch import nn


def cross_correlate(image, kernel):
    """What a convolution layer computes on one channel: Σ kernel · window at every position ("valid": no padding).

    Deep-learning "convolution" does not flip the kernel (mathematically it is cross-correlation);
    ``torch.nn.functional.conv2d`` of a (1, 1, H, W) input with a (1, 1, k, l) weight equals this.
    """
    image, kernel = np.asarray(image, dtype=np.float64), np.asarray(kernel, dtype=np.float64)
    if image.ndim != 2 or kernel.ndim != 2 or any(k > n for k, n in zip(kernel.shape, image.shape)):
        raise ValueError(f"image {image.shape} and kernel {kernel.shape}: expected two 2-D arrays, the kernel "
                         "no larger than the image")
    windows = np.lib.stride_tricks.sliding_window_view(image, kernel.shape)
    return np.einsum("ijkl,kl->ij", windows, kernel)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Height (or width) after a convolution or pooling: ⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    """A 3×3 convolution padded by 1 (keeps height and width), without bias (a BatchNorm follows)."""
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)


def conv_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    """A k×k convolution with bias, padded to keep height and width (odd k), then ReLU (GoogLeNet's unit)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.ReLU())


class ResidualBlock(nn.Module):
    """ResNet's basic block: y = ReLU(x + BN(conv(ReLU(BN(conv(x)))))), as torchvision's ``BasicBlock``."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.BatchNorm2d(channels), nn.ReLU(),
                                  conv3x3(channels, channels), nn.BatchNorm2d(channels))

    def forward(self, x):
        return torch.relu(x + self.body(x))


class DenseBlock(nn.Module):
    """DenseNet's block: ``layers`` times BN-ReLU-conv3×3 adding ``growth`` channels to all before them.

    Out: ``in_channels + layers · growth`` channels.
    """

    def __init__(self, in_channels: int, growth: int = 12, layers: int = 4):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), conv3x3(c, growth))
            for c in range(in_channels, in_channels + layers * growth, growth))

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class InceptionBlock(nn.Module):
    """GoogLeNet's Inception module: four branches side by side, concatenated along the channels.

    Branches: 1×1 (``c1`` channels); 1×1 to ``r3`` then 3×3 (``c3``); 1×1 to ``r5`` then 5×5 (``c5``); 3×3 max
    pool then 1×1 (``pool``). Out: ``c1 + c3 + c5 + pool`` channels. The defaults are GoogLeNet's "3a".
    """

    def __init__(self, in_channels: int = 192, c1: int = 64, r3: int = 96, c3: int = 128, r5: int = 16,
                 c5: int = 32, pool: int = 32):
        super().__init__()
        self.branches = nn.ModuleList([
            conv_relu(in_channels, c1, 1),
            nn.Sequential(conv_relu(in_channels, r3, 1), conv_relu(r3, c3, 3)),
            nn.Sequential(conv_relu(in_channels, r5, 1), conv_relu(r5, c5, 5)),
            nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv_relu(in_channels, pool, 1)),
        ])

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def count_parameters(module: nn.Module) -> int:
    """Trainable numbers in ``module`` (weights and biases; BatchNorm's running statistics are not)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def shapes_through(module: nn.Module, x: torch.Tensor) -> list:
    """(name, output shape) of each direct child of a ``nn.Sequential`` as ``x`` passes through it."""
    shapes = []
    for name, child in module.named_children():
        x = child(x)
        shapes.append((f"{name}: {type(child).__name__}", tuple(x.shape)))
    return shapes
