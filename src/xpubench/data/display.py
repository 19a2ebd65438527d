"""Event displays of generated data as PNG files (matplotlib, Agg backend, imported when called)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():  # noqa: ANN202 - matplotlib.pyplot, imported lazily
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def lartpc_event(x: np.ndarray, title: str, path: Path) -> Path:
    """One event (side, side, 3): the U, V and Y planes side by side, wire across, drift time down."""
    from xpubench.data.lartpc import PLANE_ANGLES_DEG, PLANES, WINDOW_CM

    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3), constrained_layout=True)
    extent = (0.0, WINDOW_CM, WINDOW_CM, 0.0)
    for plane, ax in enumerate(axes):
        image = ax.imshow(x[:, :, plane].T, cmap="inferno", vmin=0.0, vmax=1.0, extent=extent, aspect="equal")
        kind = "collection" if PLANE_ANGLES_DEG[plane] == 0 else f"induction {PLANE_ANGLES_DEG[plane]:+.1f} deg"
        ax.set_title(f"plane {PLANES[plane]} ({kind})", fontsize=10)
        ax.set_xlabel("wire coordinate (cm)")
    axes[0].set_ylabel("drift (cm)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="charge (1 MIP ~ 0.3)")
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def calo_shower(x: np.ndarray, energy: float, path: Path) -> Path:
    """One shower (nx, ny, nz): the transverse map summed over depth, a side view, and the longitudinal profile."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), constrained_layout=True)
    floor = max(float(x.max()) * 1e-5, 1e-9)
    front = axes[0].imshow(np.log10(x.sum(axis=2).T + floor), cmap="viridis", origin="lower")
    axes[0].set_title("transverse, summed over depth (log10 GeV)", fontsize=10)
    axes[0].set_xlabel("x cell")
    axes[0].set_ylabel("y cell")
    fig.colorbar(front, ax=axes[0], shrink=0.8)
    side = axes[1].imshow(np.log10(x.sum(axis=1).T + floor), cmap="viridis", origin="lower", aspect="auto")
    axes[1].set_title("side view, summed over y (log10 GeV)", fontsize=10)
    axes[1].set_xlabel("x cell")
    axes[1].set_ylabel("layer")
    fig.colorbar(side, ax=axes[1], shrink=0.8)
    axes[2].step(np.arange(x.shape[2]), x.sum(axis=(0, 1)), where="mid")
    axes[2].set_title("longitudinal profile", fontsize=10)
    axes[2].set_xlabel("layer")
    axes[2].set_ylabel("energy (GeV)")
    fig.suptitle(f"calorimeter shower, primary energy {energy:.0f} GeV")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def jet_images(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], path: Path, per_class: int = 3) -> Path:
    """A few single jets of each class and each class's average image (log scale)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(classes), per_class + 1, figsize=(2.8 * (per_class + 1), 2.8 * len(classes)),
                             constrained_layout=True, squeeze=False)
    for label, name in enumerate(classes):
        members = np.flatnonzero(y == label)
        for column in range(per_class + 1):
            ax = axes[label, column]
            ax.set_xticks([])
            ax.set_yticks([])
            if column == per_class:
                image = x[members].mean(axis=0) if members.size else np.zeros(x.shape[1:])
                ax.set_title(f"{name}: mean of {members.size}", fontsize=9)
            elif column < members.size:
                image = x[members[column]]
                ax.set_title(f"{name} jet", fontsize=9)
            else:
                continue
            ax.imshow(np.log10(image[..., 0].T + 1e-4), cmap="viridis", vmin=-4, vmax=0, origin="lower")
    fig.suptitle("jet images: pT fraction per (eta, phi) cell, log10")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def hcal_pulses(x: np.ndarray, y: np.ndarray, path: Path, count: int = 12) -> Path:
    """Pulse samples of a few channels, coloured by their true energy, and the raw sum against the truth."""
    from xpubench.data.hcal import SAMPLES

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    top = float(np.max(y[:count])) if y.size else 1.0
    for i in range(min(count, len(y))):
        axes[0].plot(np.arange(SAMPLES), x[i, :SAMPLES], marker="o", color=cmap(float(y[i]) / top))
    axes[0].set_xlabel("time sample (25 ns)")
    axes[0].set_ylabel("charge (GeV-equivalent, uncalibrated)")
    axes[0].set_title("pulses (colour: true energy)", fontsize=10)
    axes[1].scatter(y, x[:, :SAMPLES].sum(axis=1), s=3, alpha=0.4)
    axes[1].set_xlabel("true energy (GeV)")
    axes[1].set_ylabel("sum of samples")
    axes[1].set_title("raw sum vs truth", fontsize=10)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_examples(name: str, x: np.ndarray, y: np.ndarray, folder: Path, per_class: int = 1) -> list[Path]:
    """Example displays of a generated dataset into folder: per class for lartpc, a summary for the others."""
    from xpubench.data import generator

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    classes = generator(name).classes
    if name == "lartpc":
        assert classes is not None
        for label, cls in enumerate(classes):
            for k, i in enumerate(np.flatnonzero(y == label)[:per_class]):
                suffix = "" if per_class == 1 else f"-{k}"
                written.append(lartpc_event(x[i], f"LArTPC event {i}: {cls}",
                                            folder / f"lartpc-{_slug(cls)}{suffix}.png"))
    elif name == "calo":
        for k in range(min(per_class, len(y))):
            suffix = "" if per_class == 1 else f"-{k}"
            written.append(calo_shower(x[k], float(y[k]), folder / f"calo{suffix}.png"))
    elif name == "jets":
        assert classes is not None
        written.append(jet_images(x, y, classes, folder / "jets.png"))
    elif name == "hcal":
        written.append(hcal_pulses(x, y, folder / "hcal.png"))
    return written
