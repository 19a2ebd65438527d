"""Datasets: labelled inputs for accuracy and calibration, and the registry of physics data generators."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xpubench.errors import UsageError

if TYPE_CHECKING:  # numpy is imported by the generators themselves, not by the registry
    import numpy as np


@dataclass(frozen=True)
class Generator:
    """A simulated dataset: `module.generate(events, seed, **size) -> (x, y)`, imported lazily."""

    name: str
    summary: str  # one line for `xpubench zoo` / `xpubench data list`
    classes: tuple[str, ...] | None  # class names for classification; None for regression (y float32)
    module: str  # "xpubench.data.lartpc"


GENERATORS: dict[str, Generator] = {
    g.name: g
    for g in (
        Generator(
            "lartpc",
            "neutrino interactions in a LArTPC, 3 wire planes (N, 200, 200, 3)",
            ("NC", "numu CC", "nue CC"),
            "xpubench.data.lartpc",
        ),
        Generator(
            "calo",
            "electromagnetic showers in a 51x51x25-cell calorimeter -> energy",
            None,
            "xpubench.data.calo",
        ),
        Generator(
            "hcal",
            "HCAL channel: 8 pulse samples + position -> energy (FACILE)",
            None,
            "xpubench.data.hcal",
        ),
        Generator(
            "jets",
            "jet images (N, 32, 32, 1): three-prong top vs one-prong QCD",
            ("QCD", "top"),
            "xpubench.data.jets",
        ),
    )
}


def generator(name: str) -> Generator:
    """The registry entry, or a one-line error naming the choices."""
    try:
        return GENERATORS[name]
    except KeyError:
        raise UsageError(f"unknown generator {name!r}: choose from {', '.join(GENERATORS)}") from None


def generate(name: str, events: int, seed: int = 0, **size: object) -> tuple[np.ndarray, np.ndarray]:
    """x float32, y int64 (classes) or float32 (regression); deterministic in (events, seed, size)."""
    module = importlib.import_module(generator(name).module)
    return module.generate(events, seed, **size)
