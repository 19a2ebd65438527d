"""Is what the generator learned physics? Its showers against the shower generator's for the same particle
energies: total deposited energy, longitudinal (per layer) and transverse (per ring around the axis)
profiles, each as a relative L1 distance; 0 is identical, 1 is as far as an empty shower. Numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np


def relative_l1(profile: np.ndarray, reference: np.ndarray) -> float:
    """sum |profile - reference| / sum |reference|: the mean relative difference of two profiles, weighted
    by the reference (bins the data barely fills do not dominate it)."""
    scale = float(np.abs(reference).sum())
    return float(np.abs(profile - reference).sum() / scale) if scale > 0 else float("inf")


def profiles(showers: np.ndarray) -> dict[str, np.ndarray]:
    """Per-event totals, and the mean longitudinal and transverse profiles, of (events, nx, ny, nz) showers."""
    x = np.asarray(showers, dtype=np.float64)
    n, nx, ny, _ = x.shape
    gx = np.arange(nx) - (nx - 1) / 2
    gy = np.arange(ny) - (ny - 1) / 2
    rings = np.rint(np.hypot(gx[:, None], gy[None, :])).astype(int)  # the ring of each (x, y) column
    columns = x.sum(axis=3).reshape(n, -1)  # (events, nx * ny)
    transverse = np.zeros((n, rings.max() + 1))
    np.add.at(transverse.T, rings.ravel(), columns.T)
    return {
        "total": x.reshape(n, -1).sum(axis=1),
        "longitudinal": x.sum(axis=(1, 2)).mean(axis=0),
        "transverse": transverse.mean(axis=0),
    }


def shower_distance(generated: np.ndarray, real: np.ndarray) -> dict[str, Any]:
    """The validity figures of generated showers against real ones for the same energies (event by event)."""
    g, r = profiles(generated), profiles(real)
    energy = float(np.mean(np.abs(g["total"] - r["total"]) / np.maximum(r["total"], 1e-12)))
    longitudinal = relative_l1(g["longitudinal"], r["longitudinal"])
    transverse = relative_l1(g["transverse"], r["transverse"])
    return {
        "metric": "relative L1 distance of the shower figures (0: identical)",
        "energy": energy,
        "longitudinal": longitudinal,
        "transverse": transverse,
        "distance": (energy + longitudinal + transverse) / 3,
        "events": int(len(r["total"])),
    }
