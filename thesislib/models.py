"""The models of the contract: ``small`` (default CNN), ``resnet18`` (CIFAR-style stem), ``none`` (no compute:
the loader alone) and ``sleep:MS`` (an emulated accelerator taking MS milliseconds per batch, as DLIO does).

Models take float NCHW pixels in [0, 1]. ``none`` and ``sleep:MS`` are :class:`EmulatedAccelerator`s: the
training loop fetches and moves each batch, then waits instead of computing; they report no loss.
"""

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from thesislib.errors import ThesisError

MODEL_NAMES = ("small", "resnet18", "none", "sleep:MS")
OPTIMIZERS = ("sgd", "rmsprop")
MAX_SLEEP_MS = 3_600_000   # an hour per batch; more (or inf) is a typo, and time.sleep overflows


@dataclass(frozen=True)
class EmulatedAccelerator:
    """A stand-in for a model: each batch "takes" ``sleep_s`` seconds (0 for ``none``)."""
    sleep_s: float = 0.0

    def wait(self) -> None:
        if self.sleep_s > 0:
            time.sleep(self.sleep_s)


def parse_sleep(name: str) -> float:
    """Seconds per batch of ``sleep:MS``; a ThesisError if MS is not a number >= 0."""
    text = name.split(":", 1)[1]
    try:
        ms = float(text)
    except ValueError:
        ms = -1.0
    if not 0 <= ms <= MAX_SLEEP_MS:
        raise ThesisError(f"--model {name!r}: sleep:MS needs MS, milliseconds per batch from 0 to "
                          f"{MAX_SLEEP_MS} (e.g. sleep:20)")
    return ms / 1000


def check_model_name(name: str) -> str:
    if name in ("small", "resnet18", "none") or name.startswith("sleep:") and parse_sleep(name) >= 0:
        return name
    raise ThesisError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (odd kernel: padded to keep the size; kernel == stride: a patchifying stem), BatchNorm, ReLU."""
    padding = kernel // 2 if kernel % 2 else 0
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def stem_stride(image_size: int) -> int:
    """The stride that brings an image down to about 32x32 (1 for CIFAR, 16 for 512x512 masks)."""
    stride = 1
    while image_size // (stride * 2) >= 32:
        stride *= 2
    return stride


def small_cnn(num_classes: int, image_size: int = 32) -> nn.Module:
    """Three conv layers (16, 32, 64 channels) and global average pooling: about 3 MMAC per 32x32 image,
    fast on a CPU; at 64x64 and 512x512 its stem first patchifies the image down to about 32x32."""
    stride = stem_stride(image_size)
    stem = conv_bn(3, 16) if stride == 1 else conv_bn(3, 16, kernel=stride, stride=stride)
    return nn.Sequential(stem, conv_bn(16, 32, stride=2), conv_bn(32, 64, stride=2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes))


def resnet18(num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: a 3x3 stride-1 first conv and no max pooling."""
    import torchvision

    model = torchvision.models.resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_model(name: str, num_classes: int, image_size: int = 32, seed: int = 0):
    """A fresh model, its weights drawn from ``seed`` (so every repeat starts from the same weights)."""
    check_model_name(name)
    if name == "none":
        return EmulatedAccelerator(0.0)
    if name.startswith("sleep:"):
        return EmulatedAccelerator(parse_sleep(name))
    torch.manual_seed(seed)
    return small_cnn(num_classes, image_size) if name == "small" else resnet18(num_classes)


def check_optimizer(name: str, lr: float) -> str:
    """The optimizer's name in lower case; a ThesisError for an unknown name or a learning rate <= 0."""
    if str(name).lower() not in OPTIMIZERS:
        raise ThesisError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ThesisError(f"--lr must be a number > 0 and finite (e.g. 0.05), got {lr!r}")
    return str(name).lower()


def build_optimizer(name: str, model, lr: float):
    """SGD (momentum 0.9, weight decay 5e-4) or RMSprop; None for an emulated accelerator."""
    name = check_optimizer(name, lr)
    if isinstance(model, EmulatedAccelerator):
        return None
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    return torch.optim.RMSprop(model.parameters(), lr=lr)
