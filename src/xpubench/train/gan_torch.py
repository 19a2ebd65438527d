"""The zoo's calo GAN as a torch definition, layer for layer the Keras one (models/zoo.py:
build_calo_generator, build_calo_discriminator), for torch DDP. Channels first, as torch convolves."""

from __future__ import annotations

import math

import torch
from torch import nn

FACTORS = ((2, 2, 2), (2, 2, 1), (2, 2, 2))  # the Keras generator's three upsamplings


class CaloGenerator(nn.Module):
    """z = (noise..., E / 100 GeV) -> shower (cells) in GeV: a per-GeV shape times the energy."""

    def __init__(self, cells: tuple[int, int, int], latent: int, width: int) -> None:
        super().__init__()
        self.cells, self.width = tuple(cells), width
        self.start = (math.ceil(cells[0] / 8), math.ceil(cells[1] / 8), math.ceil(cells[2] / 4))
        self.project = nn.Linear(latent + 1, math.prod(self.start) * width)
        layers: list[nn.Module] = []
        channels = width
        for index, factor in enumerate(FACTORS, start=1):
            out = max(width // index, 4)
            layers += [nn.Upsample(scale_factor=factor, mode="nearest"), nn.Conv3d(channels, out, 3, padding=1),
                       nn.LeakyReLU(0.2)]
            channels = out
        layers += [nn.Conv3d(channels, 1, 3, padding=1), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        keras_initialised(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = nn.functional.leaky_relu(self.project(z), 0.2)
        x = x.view(-1, *self.start, self.width).permute(0, 4, 1, 2, 3)  # Keras reshapes channels last
        x = self.body(x)[:, 0, : self.cells[0], : self.cells[1], : self.cells[2]]  # Cropping3D
        return x * z[:, -1].view(-1, 1, 1, 1)  # the energy pick: the last input


def keras_initialised(module: nn.Module) -> nn.Module:
    """Keras' defaults (Glorot-uniform kernels, zero biases), not torch's: torch's small random biases
    can leave the generator's final ReLU dead at the start, and then it never learns."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv3d):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    return module


class CaloDiscriminator(nn.Module):
    """(shower per 100 GeV, E / 100 GeV) -> real/fake logit."""

    def __init__(self, cells: tuple[int, int, int], width: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv3d(1, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv3d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        )
        self.dense = nn.Linear(width + 1, width)
        self.out = nn.Linear(width, 1)
        keras_initialised(self)

    def forward(self, shower: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
        x = self.convs(shower.unsqueeze(1)).mean(dim=(2, 3, 4))  # GlobalAveragePooling3D
        x = torch.relu(self.dense(torch.cat([x, energy], dim=1)))
        return self.out(x)
