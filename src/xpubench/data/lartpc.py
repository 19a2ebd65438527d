"""Simulated neutrino interactions in a liquid-argon TPC, seen by three wire planes (NC, numu CC, nue CC)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CLASSES = ("NC", "numu CC", "nue CC")
PLANES = ("U", "V", "Y")
PLANE_ANGLES_DEG = (35.7, -35.7, 0.0)  # two induction planes and the collection plane (vertical wires)
WINDOW_CM = 80.0  # each plane shows 80 cm of wire coordinate x 80 cm of drift: 0.4 cm per pixel at side 200
CHUNK = 256  # events simulated together; fixed, so that any chunking gives the same events

X0_CM = 14.0  # radiation length of liquid argon
CRITICAL_MEV = 32.0  # below it an electron ranges out instead of radiating
MIP_DEDX = 2.1  # MeV/cm
BRAGG_POWER = -0.42  # dE/dx = A * R**BRAGG_POWER as a function of residual range R
BRAGG_A = {"mu": 8.0, "pi": 8.6, "p": 17.0}  # MeV cm**-BRAGG_POWER
MASS_MEV = {"mu": 105.7, "pi": 139.6, "p": 938.3}
PION_INTERACTION_CM = 70.0  # mean free path of a charged pion before a hadronic interaction
RECOMBINATION_K = 0.045  # Birks-like quenching: collected charge ~ dE/dx / (1 + k dE/dx)
MIP_PIXEL = 0.3  # a minimum-ionising track along the wire axis gives about this pixel value
GAIN = (0.8, 0.8, 1.0)  # induction planes see less signal ...
NOISE = (0.045, 0.045, 0.03)  # ... and more noise than the collection plane
DEAD_FRACTION = 0.03  # dead or disconnected wires per plane
TRACK_STEPS = 24  # straight pieces per track; multiple scattering bends the track between them


def generate(events: int, seed: int = 0, side: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): x (events, side, side, 3) float32 in [0, 1] (wire, drift tick, plane U/V/Y); y int64 in
    {0 NC, 1 numu CC, 2 nue CC}, exactly balanced when events is a multiple of 3, shuffled.

    A smaller side renders the same events at a coarser granularity.
    """
    x = np.empty((events, side, side, 3), np.float32)
    y = np.empty(events, np.int64)
    for start, chunk_y in _chunks(events, seed, side, out=x):
        y[start : start + len(chunk_y)] = chunk_y
    return x, y


def iter_chunks(events: int, seed: int = 0, side: int = 200) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The events of generate() in pieces of CHUNK, each x a view of one reused buffer (copy it to keep it)."""
    buffer = np.empty((min(CHUNK, events), side, side, 3), np.float32)
    for _, chunk_y in _chunks(events, seed, side, out=None, buffer=buffer):
        yield buffer[: len(chunk_y)], chunk_y


def labels(events: int, seed: int) -> np.ndarray:
    """Balanced labels (events // 3 of each, the remainder to the first classes), shuffled by seed."""
    y = np.arange(events, dtype=np.int64) % len(CLASSES)
    np.random.default_rng([seed, 0x1ab]).shuffle(y)
    return y


def _chunks(
    events: int, seed: int, side: int, out: np.ndarray | None, buffer: np.ndarray | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    if side < 8:
        raise ValueError(f"side must be at least 8, got {side}")
    y = labels(events, seed)
    noise = _noise_bank(np.random.default_rng([seed, 0x5e]), side)
    for index, start in enumerate(range(0, events, CHUNK)):
        chunk_y = y[start : start + CHUNK]
        target = out[start : start + len(chunk_y)] if out is not None else buffer[: len(chunk_y)]
        rng = np.random.default_rng([seed, index])
        _render(_simulate(chunk_y, rng, side), target, rng, side, noise)
        yield start, chunk_y


# --- the interaction: primaries at a common vertex -------------------------------------------------------


def _directions(rng: np.random.Generator, cos_theta: np.ndarray) -> np.ndarray:
    """Unit vectors at polar angle arccos(cos_theta) to the beam (+z), uniform in azimuth."""
    phi = rng.uniform(0.0, 2 * np.pi, cos_theta.size)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, 1.0))
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)


def _isotropic(rng: np.random.Generator, n: int) -> np.ndarray:
    return _directions(rng, rng.uniform(-1.0, 1.0, n))


def _forward(rng: np.random.Generator, n: int, spread: float) -> np.ndarray:
    """Forward-peaked directions: 1 - cos(theta) exponential with mean `spread`."""
    return _directions(rng, np.clip(1.0 - rng.exponential(spread, n), -1.0, 1.0))


class _Particles:
    """Primaries of a chunk: event index, start point (cm), direction, kinetic energy (MeV), one list per kind."""

    def __init__(self) -> None:
        self.parts: dict[str, list[tuple[np.ndarray, ...]]] = {k: [] for k in ("mu", "pi", "p", "e", "gamma")}

    def add(self, kind: str, event: np.ndarray, start: np.ndarray, direction: np.ndarray, ke: np.ndarray) -> None:
        if event.size:
            self.parts[kind].append((event, start, direction, ke))

    def get(self, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        items = self.parts[kind]
        if not items:
            return np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)
        return tuple(np.concatenate(column) for column in zip(*items, strict=True))  # type: ignore[return-value]


def _simulate(y: np.ndarray, rng: np.random.Generator, side: int) -> tuple[np.ndarray, ...]:
    """Simulate one chunk of events: energy deposits as points (event, xyz in cm, charge)."""
    n = y.size
    event = np.arange(n)
    # The crop is centred on (0, 0, 0); the vertex sits upstream of its centre since the products go forward.
    vertex = np.stack(
        [rng.uniform(-12, 12, n), rng.uniform(-12, 12, n), rng.uniform(-24, -4, n)], axis=1
    )
    e_nu = np.clip(rng.gamma(3.0, 0.3, n), 0.25, 3.0) * 1000.0  # MeV, a booster-like spectrum
    inelasticity = rng.uniform(0.05, 0.65, n)
    cc = y > 0
    e_lepton = e_nu * (1 - inelasticity)
    e_hadronic = e_nu * inelasticity  # in NC the outgoing neutrino carries the lepton's share away unseen
    particles = _Particles()

    numu = np.flatnonzero(y == 1)
    particles.add("mu", numu, vertex[numu], _forward(rng, numu.size, 0.35),
                  np.maximum(e_lepton[numu] - MASS_MEV["mu"], 80.0 + rng.exponential(100.0, numu.size)))
    nue = np.flatnonzero(y == 2)
    particles.add("e", nue, vertex[nue], _forward(rng, nue.size, 0.35), np.maximum(e_lepton[nue], 60.0))

    # Hadronic activity at the vertex, the same recipe for every class.
    gev = e_hadronic / 1000.0
    n_protons = np.minimum(rng.poisson(0.6 + 1.2 * gev), 4)
    pion = rng.random(n) < np.clip(0.05 + 0.2 * gev, 0.0, 0.3)
    pi0 = rng.random(n) < np.where(cc, 0.15, 0.5)  # NC is rich in pi0: its photons mimic electrons
    # An NC event needs something visible (the outgoing neutrino is not).
    n_protons = np.where(~cc & (n_protons == 0) & ~pion & ~pi0, 1, n_protons)
    proton_event = np.repeat(event, n_protons)
    ke = np.minimum(15.0 + rng.exponential(70.0, proton_event.size) * (0.6 + gev[proton_event]), 450.0)
    particles.add("p", proton_event, vertex[proton_event], _forward(rng, proton_event.size, 0.9), ke)
    pion_event = event[pion]
    ke = np.minimum(30.0 + rng.exponential(100.0, pion_event.size) * (0.5 + gev[pion_event]), 800.0)
    particles.add("pi", pion_event, vertex[pion_event], _forward(rng, pion_event.size, 0.7), ke)
    _add_pi0(particles, rng, event[pi0], vertex[pi0], gev[pi0])

    segments = [_tracks(particles, rng)]
    # Hadronic interactions and muon decays made new particles; their showers join the electrons and photons.
    segments.append(_showers(particles, rng))
    return _points(segments, rng, WINDOW_CM / side)


def _add_pi0(particles: _Particles, rng: np.random.Generator, event: np.ndarray, vertex: np.ndarray,
             gev: np.ndarray) -> None:
    """pi0 -> two photons that convert after about 9/7 X0 each: showers detached from the vertex."""
    mass = 135.0
    ke = np.minimum(20.0 + rng.exponential(180.0, event.size) * (0.5 + gev), 1500.0)
    energy = ke + mass
    beta = np.sqrt(1.0 - (mass / energy) ** 2)
    cos_star = rng.uniform(-1.0, 1.0, event.size)
    e1 = 0.5 * energy * (1 + beta * cos_star)
    e2 = energy - e1
    opening = np.arccos(np.clip(1.0 - mass**2 / (2 * e1 * e2), -1.0, 1.0))
    axis = _forward(rng, event.size, 0.6)
    # Transverse momentum balance: E1 sin(t1) = E2 sin(t2), t1 + t2 = opening.
    t1 = np.arctan2(e2 * np.sin(opening), e1 + e2 * np.cos(opening))
    t2 = opening - t1
    normal = np.cross(axis, rng.standard_normal((event.size, 3)))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    d1 = axis * np.cos(t1)[:, None] + normal * np.sin(t1)[:, None]
    d2 = axis * np.cos(t2)[:, None] - normal * np.sin(t2)[:, None]
    particles.add("gamma", np.concatenate([event, event]), np.concatenate([vertex, vertex]),
                  np.concatenate([d1, d2]), np.concatenate([e1, e2]))


def _range_cm(kind: str, ke: np.ndarray) -> np.ndarray:
    """CSDA range from the Bragg power law dE/dx = A R^b, integrated: T = A R^(b+1) / (b+1)."""
    return ((1 + BRAGG_POWER) * ke / BRAGG_A[kind]) ** (1 / (1 + BRAGG_POWER))


def _ke_at(kind: str, residual: np.ndarray) -> np.ndarray:
    return BRAGG_A[kind] * np.maximum(residual, 1e-3) ** (1 + BRAGG_POWER) / (1 + BRAGG_POWER)


def _tracks(particles: _Particles, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Muons, charged pions and protons as multiply scattered tracks with a Bragg rise at a stopping end.

    Returns segments (event, start, end, residual range at the end, Bragg A); a pion may end in a hadronic
    interaction (protons from a kink) and a stopping muon may decay (a Michel electron), both added to
    `particles` for the next stage.
    """
    columns: list[tuple[np.ndarray, ...]] = []
    for kind in ("pi", "mu", "p"):  # pions first: their interactions add protons
        event, start, direction, ke = particles.get(kind)
        if not event.size:
            continue
        full = _range_cm(kind, ke)
        length = np.minimum(full, 160.0)  # beyond the crop nothing is seen
        if kind == "pi":
            interaction = rng.exponential(PION_INTERACTION_CM, event.size)
            interacts = interaction < length
            length = np.where(interacts, interaction, length)
        residual_end = full - length
        step = length / TRACK_STEPS
        mass = MASS_MEV[kind]
        points = [start]
        d = direction.copy()
        position = start.copy()
        for k in range(TRACK_STEPS):
            residual_mid = residual_end + (TRACK_STEPS - k - 0.5) * step
            t = _ke_at(kind, residual_mid)
            p_beta = (t * t + 2 * t * mass) / (t + mass)
            theta = 13.6 / p_beta * np.sqrt(step / X0_CM)
            if k:
                d = d + theta[:, None] * rng.standard_normal(d.shape)
                d /= np.linalg.norm(d, axis=1, keepdims=True)
            position = position + step[:, None] * d
            points.append(position)
        for k in range(TRACK_STEPS):
            columns.append((event, points[k], points[k + 1],
                            residual_end + (TRACK_STEPS - 1 - k) * step, np.full(event.size, BRAGG_A[kind])))
        end = points[-1]
        if kind == "pi" and interacts.any():
            hit = np.flatnonzero(interacts)
            count = rng.integers(1, 3, hit.size)
            which = np.repeat(hit, count)
            particles.add("p", event[which], end[which], _isotropic(rng, which.size),
                          rng.uniform(15.0, 140.0, which.size))
        if kind == "mu":
            stops = (full < 160.0) & (rng.random(event.size) < 0.75)  # mu- capture leaves no Michel electron
            which = np.flatnonzero(stops)
            michel = 52.8 * rng.beta(3.0, 1.3, which.size)
            particles.add("e", event[which], end[which], _isotropic(rng, which.size), michel)
    return tuple(np.concatenate(c) for c in zip(*columns, strict=True))


def _showers(particles: _Particles, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Electromagnetic showers, all at once: electrons radiate photons every ~X0/2 until the critical energy,
    photons travel ~9/7 X0 unseen and convert into e+e- pairs (a doubly ionising start), low-energy photons
    Compton scatter. Returns minimum-ionising segments like _tracks."""
    ev_e, pos_e, dir_e, en_e = particles.get("e")
    ev_g, pos_g, dir_g, en_g = particles.get("gamma")
    columns: list[tuple[np.ndarray, ...]] = []

    def segment(event: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        columns.append((event, a, b, np.full(event.size, 1e4), np.zeros(event.size)))

    for _ in range(30):
        if not ev_e.size and not ev_g.size:
            break
        # Electrons.
        high = en_e > CRITICAL_MEV
        lo = ~high
        # Below the critical energy: range out, scattering strongly, in three pieces.
        if lo.any():
            ev, pos, d, en = ev_e[lo], pos_e[lo], dir_e[lo], en_e[lo]
            piece = en / MIP_DEDX / 3
            for k in range(3):
                e_here = np.maximum(en * (1 - k / 3), 0.5)
                theta = np.minimum(13.6 / e_here * np.sqrt(piece / X0_CM), 1.0)
                d = d + theta[:, None] * rng.standard_normal(d.shape)
                d /= np.linalg.norm(d, axis=1, keepdims=True)
                nxt = pos + piece[:, None] * d
                segment(ev, pos, nxt)
                pos = nxt
        ev, pos, d, en = ev_e[high], pos_e[high], dir_e[high], en_e[high]
        step = np.minimum(rng.exponential(X0_CM / 2, ev.size) + 0.3, 0.5 * en / MIP_DEDX)
        end = pos + step[:, None] * d
        segment(ev, pos, end)
        left = en - step * MIP_DEDX
        fraction = rng.uniform(0.05, 0.75, ev.size)
        theta = 13.6 / left * np.sqrt(step / X0_CM)
        new_dir = d + theta[:, None] * rng.standard_normal(d.shape)
        new_dir /= np.linalg.norm(new_dir, axis=1, keepdims=True)
        photon_dir = d + (0.5 / np.maximum(fraction * left, 1.0))[:, None] * rng.standard_normal(d.shape)
        photon_dir /= np.linalg.norm(photon_dir, axis=1, keepdims=True)
        # Besides the hard photon, two soft ones: their Compton electrons are the blips around a shower.
        soft = np.minimum(left * rng.uniform(0.003, 0.02, (2, ev.size)), rng.uniform(0.5, 8.0, (2, ev.size)))
        left = left - soft.sum(axis=0)
        soft_dir = np.concatenate([d, d]) + 0.3 * rng.standard_normal((2 * ev.size, 3))
        soft_dir /= np.linalg.norm(soft_dir, axis=1, keepdims=True)
        next_e = [(ev, end, new_dir, left * (1 - fraction))]
        next_g = [(ev, end, photon_dir, left * fraction),
                  (np.concatenate([ev, ev]), np.concatenate([end, end]), soft_dir, soft.reshape(-1))]
        # Photons: pair production above ~10 MeV, else one Compton electron; both after a flight unseen.
        flight = rng.exponential(X0_CM * 9 / 7, ev_g.size)
        at = pos_g + flight[:, None] * dir_g
        pair = en_g > 10.0
        share = rng.uniform(0.1, 0.9, ev_g.size)
        kick = (1.0 / np.maximum(en_g, 1.0))[:, None]
        for part in (share, 1 - share):
            dd = dir_g + kick * rng.standard_normal(dir_g.shape)
            dd /= np.linalg.norm(dd, axis=1, keepdims=True)
            next_e.append((ev_g[pair], at[pair], dd[pair], (en_g[pair] - 1.022) * part[pair]))
        compton = ~pair & (en_g > 0.3)
        dd = _isotropic(rng, int(compton.sum())) * 0.5 + dir_g[compton]
        dd /= np.linalg.norm(dd, axis=1, keepdims=True)
        next_e.append((ev_g[compton], at[compton], dd, en_g[compton] * rng.uniform(0.3, 1.0, dd.shape[0])))
        ev_e, pos_e, dir_e, en_e = (np.concatenate(c) for c in zip(*next_e, strict=True))
        ev_g, pos_g, dir_g, en_g = (np.concatenate(c) for c in zip(*next_g, strict=True))
        # Particles far outside the crop or too soft to see are dropped.
        inside_e = (np.abs(pos_e).max(axis=1) < 70.0) & (en_e > 0.5)
        inside_g = (np.abs(pos_g).max(axis=1) < 70.0) & (en_g > 0.3)
        ev_e, pos_e, dir_e, en_e = ev_e[inside_e], pos_e[inside_e], dir_e[inside_e], en_e[inside_e]
        ev_g, pos_g, dir_g, en_g = ev_g[inside_g], pos_g[inside_g], dir_g[inside_g], en_g[inside_g]
    if not columns:
        return (np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0))
    return tuple(np.concatenate(c) for c in zip(*columns, strict=True))


def _points(segments: list[tuple[np.ndarray, ...]], rng: np.random.Generator, pixel_cm: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample every segment at half-pixel steps: (event, xyz, collected charge in MIP-pixel units)."""
    event, a, b, residual_end, bragg_a = (np.concatenate(c) for c in zip(*segments, strict=True))
    delta = b - a
    length = np.linalg.norm(delta, axis=1)
    ds = 0.5 * pixel_cm
    count = np.maximum(np.ceil(length / ds).astype(np.int64), 1)
    owner = np.repeat(np.arange(event.size), count)
    first = np.repeat(np.cumsum(count) - count, count)
    t = (np.arange(owner.size) - first + rng.random(owner.size)) / count[owner]
    xyz = a[owner] + t[:, None] * delta[owner]
    residual = residual_end[owner] + (1 - t) * length[owner]
    dedx = np.minimum(np.maximum(bragg_a[owner] * np.maximum(residual, 0.05) ** BRAGG_POWER, MIP_DEDX), 60.0)
    collected = dedx / (1 + RECOMBINATION_K * dedx)
    mip = MIP_DEDX / (1 + RECOMBINATION_K * MIP_DEDX)
    # Landau-like fluctuations of each piece of charge, and diffusion while drifting to the wires.
    charge = collected / mip * (length[owner] / count[owner] / pixel_cm) * rng.gamma(4.0, 0.25, owner.size)
    xyz += rng.normal(0.0, 0.4 * pixel_cm, xyz.shape)
    return event[owner], xyz, charge


# --- the detector: projection onto wire planes, noise, dead wires ----------------------------------------


def _noise_bank(rng: np.random.Generator, side: int) -> np.ndarray:
    """Noise frames twice the crop's size (wires with their own noise levels, some noisy, plus slow
    baseline wander along the ticks); each event adds a random window of one."""
    from scipy.ndimage import gaussian_filter1d

    bank = rng.standard_normal((4, 2 * side, 2 * side, 3), dtype=np.float32)
    level = np.asarray(NOISE, np.float32) * rng.lognormal(0.0, 0.25, (4, 2 * side, 1, 3)).astype(np.float32)
    level *= np.where(rng.random((4, 2 * side, 1, 3)) < 0.02, 3.0, 1.0).astype(np.float32)
    wander = gaussian_filter1d(rng.standard_normal((4, 2 * side, 2 * side, 3), dtype=np.float32),
                               sigma=max(side / 25, 1.0), axis=2)
    wander *= 0.5 / max(float(wander.std()), 1e-6)
    return (bank + wander) * level


def _render(points: tuple[np.ndarray, np.ndarray, np.ndarray], out: np.ndarray, rng: np.random.Generator,
            side: int, noise: np.ndarray) -> None:
    event, xyz, charge = points
    pixel_cm = WINDOW_CM / side
    out[...] = 0.0
    flat = out.reshape(-1)
    tick = np.floor((xyz[:, 0] + WINDOW_CM / 2) / pixel_cm).astype(np.int64)
    for plane, angle in enumerate(np.radians(PLANE_ANGLES_DEG)):
        coordinate = xyz[:, 2] * np.cos(angle) + xyz[:, 1] * np.sin(angle)
        wire = np.floor((coordinate + WINDOW_CM / 2) / pixel_cm).astype(np.int64)
        seen = (wire >= 0) & (wire < side) & (tick >= 0) & (tick < side)
        index = ((event[seen] * side + wire[seen]) * side + tick[seen]) * 3 + plane
        np.add.at(flat, index, (charge[seen] * (MIP_PIXEL * GAIN[plane])).astype(np.float32))
    n = out.shape[0]
    bank = rng.integers(0, noise.shape[0], n)
    offset = rng.integers(0, side + 1, (n, 2))
    for i in range(n):
        out[i] += noise[bank[i], offset[i, 0] : offset[i, 0] + side, offset[i, 1] : offset[i, 1] + side]
    alive = rng.random((n, side, 1, 3)) >= DEAD_FRACTION
    # Now and then a whole readout board (32 wires at side 200) is off.
    board = max(round(32 * side / 200), 1)
    off = rng.random((n, 3)) < 0.08
    first = rng.integers(0, side - board + 1, (n, 3))
    wires = np.arange(side)[None, :, None]
    alive &= ~(off[:, None, :] & (wires >= first[:, None, :]) & (wires < first[:, None, :] + board))[:, :, None, :]
    dead_event, dead_wire, _, dead_plane = np.nonzero(~alive)
    out[dead_event, dead_wire, :, dead_plane] = 0.0  # indexing the few dead wires beats a masked multiply
    np.clip(out, 0.0, 1.0, out=out)
