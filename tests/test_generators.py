"""Physics data generators: shapes, determinism, balance, physics sanity, and `xpubench data`."""

import numpy as np
import pytest
from scipy import ndimage

from tests.conftest import run_cli
from xpubench.data import GENERATORS, calo, generate, generator, hcal, jets, lartpc
from xpubench.errors import UsageError

SIDE = 48  # small LArTPC images: the same events as at 200, coarser
LIT = 0.2  # above the wire noise: about 2/3 of a minimum-ionising track's pixel value


@pytest.fixture(scope="module")
def lartpc_events() -> tuple[np.ndarray, np.ndarray]:
    return lartpc.generate(150, 11, side=SIDE)


def test_registry_names_every_generator_and_rejects_unknown_names():
    assert set(GENERATORS) == {"lartpc", "calo", "hcal", "jets"}
    assert GENERATORS["lartpc"].classes == ("NC", "numu CC", "nue CC")
    assert GENERATORS["jets"].classes == ("QCD", "top")
    assert GENERATORS["calo"].classes is None and GENERATORS["hcal"].classes is None
    x, y = generate("jets", 10, seed=2, side=16)
    assert x.shape == (10, 16, 16, 1)
    with pytest.raises(UsageError, match="unknown generator 'nope': choose from lartpc"):
        generator("nope")


def test_lartpc_shapes_range_balance_and_determinism(lartpc_events):
    x, y = lartpc_events
    assert x.shape == (150, SIDE, SIDE, 3) and x.dtype == np.float32
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [50, 50, 50]
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert 0 < len(np.unique(y[:10])) and not (np.diff(y) == 0).all()  # shuffled, not sorted by class
    again, y_again = lartpc.generate(150, 11, side=SIDE)
    assert np.array_equal(x, again) and np.array_equal(y, y_again)
    other, _ = lartpc.generate(150, 12, side=SIDE)
    assert not np.array_equal(x, other)
    # The chunked path (what the CLI writes) gives the same events as generate().
    pieces = [(cx.copy(), cy.copy()) for cx, cy in lartpc.iter_chunks(300, 3, side=16)]
    whole_x, whole_y = lartpc.generate(300, 3, side=16)
    assert len(pieces) == 2
    assert np.array_equal(np.concatenate([p[0] for p in pieces]), whole_x)
    assert np.array_equal(np.concatenate([p[1] for p in pieces]), whole_y)


def _largest_cluster_extent(plane: np.ndarray) -> float:
    """Diagonal of the bounding box of the largest 8-connected cluster of lit pixels (pixels)."""
    clusters, count = ndimage.label(plane > LIT, structure=np.ones((3, 3)))
    if count == 0:
        return 0.0
    biggest = np.bincount(clusters.ravel())[1:].argmax() + 1
    wires, ticks = np.nonzero(clusters == biggest)
    return float(np.hypot(np.ptp(wires), np.ptp(ticks)))


def test_lartpc_physics_muons_are_long_and_electrons_deposit_most(lartpc_events):
    x, y = lartpc_events
    extent = np.array([_largest_cluster_extent(event[:, :, 2]) for event in x])  # collection plane
    charge = np.where(x > LIT, x, 0.0).sum(axis=(1, 2, 3))
    nc, numu, nue = (np.median(extent[y == c]) for c in range(3))
    assert numu > 1.3 * nc  # a long minimum-ionising muon track against short hadronic activity
    nc_q, numu_q, nue_q = (np.median(charge[y == c]) for c in range(3))
    assert nue_q > nc_q  # the electron's shower holds most of a nue CC event's energy


def test_lartpc_planes_see_the_same_event(lartpc_events):
    """The drift coordinate is common to the three planes: their charge profiles along drift time agree."""
    x, _ = lartpc_events
    profile = np.where(x > LIT, x, 0.0).sum(axis=1)  # (events, tick, plane)
    seen = (profile.sum(axis=1) > 1.0).all(axis=1)
    corr = [np.corrcoef(p.T)[[0, 1, 0], [2, 2, 1]] for p in profile[seen]]
    assert np.median(corr, axis=0).min() > 0.75
    # Shuffling events between planes breaks it (the check can fail).
    mixed = [np.corrcoef(a[:, 2], b[:, 2])[0, 1] for a, b in zip(profile[seen][:-1], profile[seen][1:], strict=True)]
    assert np.median(mixed) < 0.3
    # Along the wires: U = z cos(a) + y sin(a), V = z cos(a) - y sin(a), Y = z, so the charge centroids obey
    # (U + V) / (2 cos a) = Y, up to what each plane's crop, noise and dead wires cut away.
    centre = (np.arange(SIDE) + 0.5) * lartpc.WINDOW_CM / SIDE - lartpc.WINDOW_CM / 2
    charge = np.where(x > LIT, x, 0.0).sum(axis=2)  # (events, wire, plane)
    total = charge.sum(axis=1)
    lit = (total > 1.0).all(axis=1)
    centroid = ((charge * centre[None, :, None]).sum(axis=1) / np.maximum(total, 1e-9))[lit]
    from_uv = (centroid[:, 0] + centroid[:, 1]) / (2 * np.cos(np.radians(lartpc.PLANE_ANGLES_DEG[0])))
    assert np.median(np.abs(from_uv - centroid[:, 2])) < 4.0  # cm
    assert np.median(np.abs(from_uv - np.roll(centroid[:, 2], 1))) > 8.0


def test_lartpc_smaller_side_renders_the_same_events():
    fine, y_fine = lartpc.generate(30, 4, side=32)
    coarse, y_coarse = lartpc.generate(30, 4, side=16)
    assert np.array_equal(y_fine, y_coarse)
    binned = fine.reshape(30, 16, 2, 16, 2, 3).sum(axis=(2, 4))  # a track crosses two fine pixels per coarse one

    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        a, b = np.where(a > 2 * LIT, a, 0.0).ravel(), np.where(b > LIT, b, 0.0).ravel()
        return float(np.corrcoef(a, b)[0, 1]) if a.std() and b.std() else np.nan

    same = np.nanmean([similarity(binned[i], coarse[i]) for i in range(30)])
    other = np.nanmean([similarity(binned[i], coarse[(i + 1) % 30]) for i in range(30)])
    assert same > 0.5 and other < 0.2


def test_calo_energy_scales_with_the_primary_and_the_shower_deepens():
    x, y = calo.generate(60, 1, energy_min=10.0, energy_max=400.0, cells=(15, 15, 25))
    assert x.shape == (60, 15, 15, 25) and x.dtype == np.float32 and y.dtype == np.float32
    assert (x >= 0).all() and 10.0 <= y.min() and y.max() <= 400.0
    ratio = x.sum(axis=(1, 2, 3)) / (calo.SAMPLING_FRACTION * y)
    assert 0.6 < np.median(ratio) < 1.0  # the visible share, less lateral and rear leakage
    low, high = y < 100.0, y > 250.0
    assert ratio[low].std() > ratio[high].std()  # stochastic term: relative fluctuations fall with energy
    depth = (x.sum(axis=(1, 2)) * np.arange(25)).sum(axis=1) / x.sum(axis=(1, 2, 3))
    assert depth[high].mean() > depth[low].mean() + 0.5  # shower maximum grows with ln(E)
    again, _ = calo.generate(60, 1, energy_min=10.0, energy_max=400.0, cells=(15, 15, 25))
    assert np.array_equal(x, again)


def test_hcal_pulses_track_the_true_energy():
    x, y = hcal.generate(3000, 0)
    assert x.shape == (3000, len(hcal.FEATURES)) and x.dtype == np.float32 and (y > 0).all()
    in_time = x[:, hcal.IN_TIME] + x[:, hcal.IN_TIME + 1]
    assert np.corrcoef(in_time, y)[0, 1] > 0.9
    # ... but not perfectly: pileup and noise leave work for the regression at low energy.
    soft = y < 5.0
    assert np.std((in_time[soft] - y[soft]) / y[soft]) > 0.2
    assert np.array_equal(x, hcal.generate(3000, 0)[0])


def test_jets_are_normalised_balanced_and_top_jets_are_heavier():
    x, y = jets.generate(400, 0)
    assert x.shape == (400, 32, 32, 1) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [200, 200]
    assert np.allclose(x.sum(axis=(1, 2, 3)), 1.0, atol=1e-4)
    mass = jets.jet_mass(x)
    assert np.median(mass[y == 1]) > 1.5 * np.median(mass[y == 0])
    assert np.array_equal(x, jets.generate(400, 0)[0])


@pytest.mark.slow  # two subprocesses and matplotlib
def test_cli_writes_a_loadable_npz_and_event_displays(tmp_path):
    out = tmp_path / "l.npz"
    done = run_cli("data", "generate", "lartpc", "--events", "9", "--seed", "3", "--side", "24", "--out", str(out),
                   "--png", str(tmp_path / "png"))
    assert done.returncode == 0, done.stderr
    assert "9 events" in done.stdout and "NC 3, numu CC 3, nue CC 3" in done.stdout
    with np.load(out) as data:
        x, y = data["x"], data["y"]
    expected_x, expected_y = lartpc.generate(9, 3, side=24)
    assert np.array_equal(x, expected_x) and np.array_equal(y, expected_y)
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == ["lartpc-nc.png", "lartpc-nue-cc.png", "lartpc-numu-cc.png"]
    assert all((tmp_path / "png" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    listing = run_cli("data", "list")
    assert listing.returncode == 0 and all(name in listing.stdout for name in GENERATORS)


@pytest.mark.slow  # three subprocesses
def test_cli_usage_errors_exit_2(tmp_path):
    bad = run_cli("data", "generate", "nope", "--out", str(tmp_path / "n.npz"))
    assert bad.returncode == 2 and "unknown generator 'nope'" in bad.stderr and len(bad.stderr.splitlines()) == 1
    fixed = run_cli("data", "generate", "hcal", "--side", "10", "--out", str(tmp_path / "h.npz"))
    assert fixed.returncode == 2 and "fixed size" in fixed.stderr
    suffix = run_cli("data", "generate", "jets", "--events", "4", "--out", str(tmp_path / "j.txt"))
    assert suffix.returncode == 2 and not (tmp_path / "j.txt").exists()
