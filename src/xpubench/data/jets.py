"""Jet images for top tagging: three-prong top-quark jets vs one-prong QCD jets, pT-weighted (eta, phi) maps."""

from __future__ import annotations

import numpy as np

CLASSES = ("QCD", "top")
RADIUS = 0.8  # the image spans -R..R in eta and phi around the jet axis
PT_RANGE_GEV = (550.0, 650.0)
TOP_MASS = 173.0
W_MASS = 80.4
PARTICLES_PER_PRONG = 24
UNDERLYING = 12  # soft particles from the underlying event and pileup


def generate(events: int, seed: int = 0, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): x (events, side, side, 1) float32, each cell's share of the jet pT (an image sums to 1), centred
    on the pT centroid and rotated so the principal axis lies along eta; y int64 0 = QCD, 1 = top, balanced."""
    if side < 4:
        raise ValueError(f"side must be at least 4, got {side}")
    rng = np.random.default_rng([seed, 0x7E7])
    n = events
    y = np.arange(n, dtype=np.int64) % 2
    rng.shuffle(y)
    top = y == 1
    pt = rng.uniform(*PT_RANGE_GEV, n)
    # Prongs (position in eta/phi and pT fraction): top jets have three; QCD jets have one hard prong and two
    # emissions whose energy fraction z ~ 1/z and angle ~ 1/theta (soft and collinear), so they are mostly
    # one-pronged with a tail of massive, two-pronged jets.
    # Top: t -> b W, W -> q q'. The opening angle follows from the mass: m^2 ~ z(1-z) pT^2 dR^2 (scaled
    # down since the prongs' own width adds mass; smeared for the top's own motion and mismeasurement).
    z_b = rng.uniform(0.2, 0.55, n)
    dr_bw = 0.8 * TOP_MASS / (pt * np.sqrt(z_b * (1 - z_b))) * rng.lognormal(0.0, 0.18, n)
    z_q = rng.uniform(0.2, 0.8, n)
    dr_qq = W_MASS / (pt * (1 - z_b) * np.sqrt(z_q * (1 - z_q)))
    u = _unit(rng, n)
    v = _unit(rng, n)
    b_pos = -(1 - z_b)[:, None] * dr_bw[:, None] * u
    w_pos = z_b[:, None] * dr_bw[:, None] * u
    q1 = w_pos - (1 - z_q)[:, None] * dr_qq[:, None] * v
    q2 = w_pos + z_q[:, None] * dr_qq[:, None] * v
    top_centres = np.stack([b_pos, q1, q2], axis=1)
    top_shares = np.stack([z_b, (1 - z_b) * z_q, (1 - z_b) * (1 - z_q)], axis=1)
    # QCD: z from 1/z between 0.02 and 0.5, theta log-uniform between 0.02 and R.
    z = 0.02 * (0.5 / 0.02) ** rng.random((n, 2))
    theta = 0.02 * (RADIUS / 0.02) ** rng.random((n, 2))
    lead = 1 - z.sum(axis=1)
    qcd_centres = np.stack([np.zeros((n, 2)), theta[:, 0:1] * _unit(rng, n), theta[:, 1:2] * _unit(rng, n)], axis=1)
    qcd_shares = np.stack([lead, z[:, 0], z[:, 1]], axis=1)
    centres = np.where(top[:, None, None], top_centres, qcd_centres)
    shares = np.where(top[:, None], top_shares, qcd_shares)
    # Final-state radiation in both classes: a fourth, soft prong that blurs the prong counting.
    z_fsr = 0.02 * (0.3 / 0.02) ** rng.random(n)
    theta_fsr = 0.05 * (RADIUS / 0.05) ** rng.random(n)
    centres = np.concatenate([centres, (theta_fsr[:, None] * _unit(rng, n))[:, None, :]], axis=1)
    shares = np.concatenate([shares * (1 - z_fsr)[:, None], z_fsr[:, None]], axis=1)
    # Each prong fragments into particles with Dirichlet pT shares and a collinear spread (softer = wider).
    k = PARTICLES_PER_PRONG
    prongs = centres.shape[1]
    frag = rng.dirichlet(np.full(k, 0.35), (n, prongs))  # (n, prongs, k)
    spread = 0.012 + 0.06 * (1 - frag / frag.max(axis=2, keepdims=True)) * rng.exponential(1.0, (n, prongs, k))
    position = centres[:, :, None, :] + spread[..., None] * _unit(rng, n * prongs * k).reshape(n, prongs, k, 2)
    particle_pt = shares[:, :, None] * frag * 0.97
    soft_pt = rng.dirichlet(np.ones(UNDERLYING), n) * 0.03
    soft_pos = rng.uniform(-RADIUS, RADIUS, (n, UNDERLYING, 2))
    pos = np.concatenate([position.reshape(n, -1, 2), soft_pos], axis=1)
    w = np.concatenate([particle_pt.reshape(n, -1), soft_pt], axis=1)
    pos = _standardise(pos, w)
    # Pixelate.
    cell = np.floor((pos + RADIUS) / (2 * RADIUS) * side).astype(np.int64)
    inside = (cell >= 0).all(axis=2) & (cell < side).all(axis=2)
    event = np.broadcast_to(np.arange(n)[:, None], w.shape)
    x = np.zeros(n * side * side, np.float32)
    index = (event[inside] * side + cell[..., 0][inside]) * side + cell[..., 1][inside]
    np.add.at(x, index, w[inside].astype(np.float32))
    x = x.reshape(n, side, side, 1)
    x /= np.maximum(x.sum(axis=(1, 2, 3), keepdims=True), 1e-9)
    return x, y


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    angle = rng.uniform(0.0, 2 * np.pi, n)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _standardise(pos: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Centre on the pT centroid and rotate the principal axis onto eta, as top-tagging images are prepared."""
    centroid = (pos * w[..., None]).sum(axis=1, keepdims=True) / w.sum(axis=1)[:, None, None]
    pos = pos - centroid
    cov = np.einsum("np,npi,npj->nij", w, pos, pos)
    angle = 0.5 * np.arctan2(2 * cov[:, 0, 1], cov[:, 0, 0] - cov[:, 1, 1])
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([c * pos[..., 0] + s * pos[..., 1], -s * pos[..., 0] + c * pos[..., 1]], axis=2)


def jet_mass(x: np.ndarray) -> np.ndarray:
    """Mass / pT of each image, from its cells as massless particles in the small-angle approximation."""
    n, side = x.shape[0], x.shape[1]
    centre = (np.arange(side) + 0.5) / side * 2 * RADIUS - RADIUS
    w = x[..., 0].reshape(n, -1)
    eta = np.repeat(centre, side)[None, :]
    phi = np.tile(centre, side)[None, :]
    m2 = (w * (eta**2 + phi**2)).sum(axis=1) * w.sum(axis=1) - (w * eta).sum(axis=1) ** 2 - (w * phi).sum(axis=1) ** 2
    return np.sqrt(np.maximum(m2, 0.0))
