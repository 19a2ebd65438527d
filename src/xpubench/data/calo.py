"""Electromagnetic showers in a sampling calorimeter of 51x51x25 cells (for a 3D GAN): cell energies -> energy."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.special import gammaincc

CELLS = (51, 51, 25)  # x, y cells of about a third of a Moliere radius; 25 layers of about one X0 each
CHUNK = 128
SAMPLING_FRACTION = 0.02  # the active layers see ~2 % of the deposited energy
STOCHASTIC = 0.10  # sampling fluctuations: sigma/E = 10 % / sqrt(E / GeV)
CRITICAL_GEV = 0.011  # critical energy of the absorber (tungsten-like)
MOLIERE_CELLS = 3.0  # Moliere radius in cells
LATERAL_CONTAINMENT = 0.97
THRESHOLD_GEV = 1e-6  # cells below this read zero (zero suppression)


def generate(events: int, seed: int = 0, energy_min: float = 10.0, energy_max: float = 500.0,
             cells: tuple[int, int, int] = CELLS) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): x (events, nx, ny, nz) float32 visible cell energies (GeV); y float32 primary energy (GeV),
    uniform in [energy_min, energy_max]. The sum of x is about SAMPLING_FRACTION x y, a little less at high
    energy where the shower leaks out of the back."""
    x = np.empty((events, *cells), np.float32)
    y = np.empty(events, np.float32)
    start = 0
    for chunk_x, chunk_y in iter_chunks(events, seed, energy_min, energy_max, cells):
        x[start : start + len(chunk_y)] = chunk_x
        y[start : start + len(chunk_y)] = chunk_y
        start += len(chunk_y)
    return x, y


def iter_chunks(events: int, seed: int = 0, energy_min: float = 10.0, energy_max: float = 500.0,
                cells: tuple[int, int, int] = CELLS) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The events of generate() in pieces of CHUNK."""
    if not 0 < energy_min <= energy_max:
        raise ValueError(f"need 0 < energy_min <= energy_max, got {energy_min}, {energy_max}")
    energy = np.random.default_rng([seed, 0xE]).uniform(energy_min, energy_max, events).astype(np.float32)
    for index, start in enumerate(range(0, events, CHUNK)):
        e = energy[start : start + CHUNK]
        yield _showers(e, np.random.default_rng([seed, index]), cells), e


def _showers(energy: np.ndarray, rng: np.random.Generator, cells: tuple[int, int, int]) -> np.ndarray:
    nx, ny, nz = cells
    n = energy.size
    # Longitudinal: a Gamma profile dE/dt ~ (bt)^(a-1) e^(-bt) whose maximum t = (a-1)/b sits at ln(E/Ec) - 0.5
    # (electrons), fluctuating from shower to shower, plus a random first interaction depth.
    b = rng.normal(0.5, 0.03, n).clip(0.35, 0.7)
    t_max = np.log(energy / CRITICAL_GEV) - 0.5 + rng.normal(0.0, 0.6, n)
    a = b * np.maximum(t_max, 1.0) + 1.0
    start = rng.exponential(0.5, n)
    depth_scale = 25.0 / nz  # radiation lengths per layer, so a smaller grid keeps the same physics
    edges = np.arange(nz + 1) * depth_scale
    bt = b[:, None] * np.maximum(edges[None, :] - start[:, None], 0.0)
    cumulative = 1.0 - gammaincc(a[:, None], bt)  # regularised lower incomplete gamma
    layer = np.diff(cumulative, axis=1)  # (n, nz) fractions; what is left beyond the last layer leaks out
    # Lateral: a core and a halo (Grindhammer-Peters), the core widening with depth.
    t = (np.arange(nz) + 0.5) * depth_scale
    tau = t[None, :] / np.maximum(t_max[:, None] + start[:, None], 1.0)
    core = MOLIERE_CELLS * (0.12 + 0.18 * tau) * rng.lognormal(0.0, 0.05, (n, 1))
    halo = MOLIERE_CELLS * (0.6 + 0.45 * tau)
    core_share = np.clip(0.85 - 0.25 * tau, 0.3, 0.9)
    centre = rng.normal(0.0, 0.5, (n, 2))  # impact point within the central cell
    gx = np.arange(nx) - (nx - 1) / 2
    gy = np.arange(ny) - (ny - 1) / 2
    r2 = ((gx[None, :] - centre[:, 0:1]) ** 2)[:, :, None] + ((gy[None, :] - centre[:, 1:2]) ** 2)[:, None, :]
    r2 = r2[:, :, :, None].astype(np.float32)  # (n, nx, ny, 1); float32 halves the memory traffic
    rc2 = (core**2)[:, None, None, :].astype(np.float32)
    rt2 = (halo**2)[:, None, None, :].astype(np.float32)
    share = core_share[:, None, None, :].astype(np.float32)
    density = share * rc2 / (r2 + rc2) ** 2 + (1 - share) * rt2 / (r2 + rt2) ** 2
    density /= density.sum(axis=(1, 2), keepdims=True)
    visible = (energy * SAMPLING_FRACTION * LATERAL_CONTAINMENT)[:, None, None, None]
    mean = density * (layer[:, None, None, :] * visible).astype(np.float32)
    # Sampling fluctuations: variance STOCHASTIC^2 * E in primary-energy units, per cell in proportion to its
    # mean: a Gamma distribution with that mean and variance (a cell far from the core is then mostly ~0).
    quantum = STOCHASTIC**2 * SAMPLING_FRACTION
    cell = np.zeros(mean.shape, np.float32)
    lit = mean > 0.01 * THRESHOLD_GEV  # the rest would almost never pass the threshold
    cell[lit] = rng.gamma(mean[lit] / quantum, quantum)
    cell[cell < THRESHOLD_GEV] = 0.0
    return cell
