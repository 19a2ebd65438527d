"""HCAL channels as FACILE sees them: 8 pulse samples with pileup and noise, plus position -> true energy."""

from __future__ import annotations

import numpy as np

SAMPLES = 8  # 25 ns time slices; the triggered bunch crossing is sample 3
IN_TIME = 3
PULSE = np.array([0.0, 0.0, 0.0, 0.69, 0.24, 0.05, 0.015, 0.005])  # charge fractions after the arrival slice
IETA_MAX = 29  # barrel and endcap towers
IPHI_COUNT = 72
DEPTHS = 7
FEATURES = ("ts0", "ts1", "ts2", "ts3", "ts4", "ts5", "ts6", "ts7", "ieta", "iphi", "depth", "gain")
PILEUP_MEAN = 1.5  # mean out-of-time and in-time pileup deposits per bunch crossing in one channel
NOISE_GEV = 0.25  # electronic noise per sample


def generate(events: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): x (events, 12) float32 = 8 pulse samples (GeV-equivalent charge, uncalibrated) + ieta/29,
    iphi/72, depth/7 and the channel's gain correction as the conditions database knows it; y float32 true
    in-time energy (GeV)."""
    rng = np.random.default_rng([seed, 0xCA1])
    n = events
    energy = np.exp(rng.uniform(np.log(0.5), np.log(300.0), n))  # log-uniform, as a jet's channels are
    ieta = rng.integers(1, IETA_MAX + 1, n) * rng.choice([-1, 1], n)
    iphi = rng.integers(1, IPHI_COUNT + 1, n)
    depth = rng.integers(1, DEPTHS + 1, n)
    # Response: scintillator ageing darkens the forward towers and the deeper layers; a per-channel gain
    # known only approximately from the conditions database.
    eta = np.abs(ieta) / IETA_MAX
    response = (1.0 - 0.35 * eta**2) * (1.0 - 0.04 * (depth - 1)) * rng.normal(1.0, 0.03, n)
    gain_estimate = response * rng.normal(1.0, 0.02, n)
    # Photostatistics of the in-time signal.
    signal = energy * response
    signal = np.maximum(signal + np.sqrt(signal) * 0.12 * rng.standard_normal(n), 0.0)
    # Timing phase jitter moves charge between the arrival slice and the next.
    phase = rng.uniform(0.0, 0.25, n)
    shape = (1 - phase)[:, None] * PULSE[None, :] + phase[:, None] * np.roll(PULSE, 1)[None, :]
    samples = signal[:, None] * shape
    # Pileup: deposits in every bunch crossing from 5 before to 4 after, each spread with the same pulse shape;
    # forward towers and shallow depths see more of it.
    occupancy = PILEUP_MEAN * (0.5 + 1.5 * eta**2) * (1.3 - 0.1 * depth)
    for crossing in range(-5, 5):
        count = rng.poisson(np.clip(occupancy, 0.05, None))
        deposit = count * rng.exponential(1.2, n) * response
        offset = crossing + IN_TIME
        for k in range(SAMPLES):
            source = k - offset  # pulse index of this crossing's deposit in sample k
            if 0 <= source < SAMPLES - IN_TIME:
                samples[:, k] += deposit * PULSE[IN_TIME + source]
    samples += NOISE_GEV * rng.standard_normal(samples.shape)
    x = np.column_stack([samples, ieta / IETA_MAX, iphi / IPHI_COUNT, depth / DEPTHS, gain_estimate])
    return x.astype(np.float32), energy.astype(np.float32)
