"""A ResNet-like concept network of over 10M parameters on 8x8 digit images (built from
torch layers, nothing downloaded), for tests/explain/test_bignet.py and benchmarks/_bench_bignet.py."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import greybox as gb

RULES = """
input img: tensor[64]
neural d: int 0..9 = resnet(img)
output odd: bool
rule odd weight 3: d in {1, 3, 5, 7, 9} -> odd
rule even weight 3: d in {0, 2, 4, 6, 8} -> not odd
"""


class Block(nn.Module):
    """A residual block: two 3x3 convolutions with batch norm, added to its input."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class ResNetDigits(nn.Module):
    """8x8 images (64 values) -> 10 logits: a stem at 8x8, a widening convolution at 4x4,
    ``blocks`` residual blocks of ``width`` channels at 2x2, average pooling, a linear
    head. ``width=512, blocks=2``: 10.1M parameters."""

    def __init__(self, width: int = 512, blocks: int = 2, classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(),
            nn.MaxPool2d(2))                                               # 128 x 4 x 4
        self.down = nn.Sequential(nn.Conv2d(128, width, 3, padding=1), nn.BatchNorm2d(width),
                                  nn.ReLU(), nn.MaxPool2d(2))              # width x 2 x 2
        self.blocks = nn.Sequential(*[Block(width) for _ in range(blocks)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))

    def forward(self, x):
        return self.head(self.blocks(self.down(self.stem(x))))


def model(width: int = 512, blocks: int = 2, seed: int = 0) -> gb.GreyBox:
    """The concept model: a digit read by the network, ``odd`` decided by two rules."""
    torch.manual_seed(seed)
    return gb.GreyBox(RULES, {"resnet": ResNetDigits(width, blocks)}).eval()


def digits(n: int, offset: int = 0) -> tuple[dict, np.ndarray]:
    """``n`` of scikit-learn's bundled 8x8 digit images (scaled to [0, 1]) and whether
    each digit is odd."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data[offset:offset + n].astype(np.float32) / 16.0
    return {"img": torch.as_tensor(x)}, d.target[offset:offset + n] % 2 == 1


def n_parameters(m) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)
