"""The zoo: the source studies' networks as Keras 3 definitions, each with its dataset, metric and sizes."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

SIZE_NAMES = ("default", "full", "tiny")  # a model named NAME:full or NAME:tiny is built and trained at that size
SCAN_SIDES = (64, 128, 256, 512, 1024)  # the heterogeneous-platform study's square sides


@dataclass(frozen=True)
class Size:
    """How big a zoo model is built and on how much data it trains."""

    data: tuple[tuple[str, Any], ...] = ()  # the dataset's size keywords: side, channels, cells
    model: tuple[tuple[str, Any], ...] = ()  # the build function's keywords: alpha, widths, ...
    train: int = 0  # training events (0: the model is not trained)
    test: int = 0  # held-out events
    epochs: int = 0
    batch_size: int = 32

    def with_epochs(self, epochs: int | None) -> Size:
        return self if epochs is None else replace(self, epochs=epochs)

    def describe(self, input_shape: tuple[int, ...] | None = None) -> str:
        parts = ["x".join(map(str, input_shape))] if input_shape else []
        parts += [f"{k}={v}" for k, v in self.model if k not in ("widths", "blocks", "side")]  # side: in the shape
        if self.train:
            parts.append(f"{self.train}+{self.test} events, {self.epochs} epoch{'s' if self.epochs != 1 else ''}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ZooEntry:
    name: str
    summary: str
    dataset: str | None  # digits, lartpc, jets, hcal, calo; None for the untrained scans
    metric: str | None  # top1, auc, resolution; None: latency only
    build: Callable[..., Any]  # build(input_shape, outputs, **size.model) -> an uncompiled keras.Model
    sizes: dict[str, Size] = field(default_factory=dict)  # "default", "full", "tiny"
    learning_rate: float = 1e-3
    task: str = "classify"  # classify, regress, generate (GAN), none (untrained)
    parameters: dict[str, int] = field(default_factory=dict)  # at "default" and "full" size; checked by a test

    @property
    def epochs(self) -> int:
        return self.sizes["default"].epochs

    @property
    def batch_size(self) -> int:
        return self.sizes["default"].batch_size


def lookup(name: str) -> tuple[ZooEntry, str] | None:
    """`resnet50v2` -> (entry, "default"); `resnet50v2:full` -> (entry, "full"); None if not a zoo model."""
    base, _, size = name.partition(":")
    entry = ZOO.get(base)
    if entry is None or (size and size not in entry.sizes):
        return None
    return entry, size or "default"


def expand(names: Iterable[str]) -> tuple[str, ...]:
    """A scan's family name stands for all its points: `matmul-scan` -> matmul-scan-64 ... -1024."""
    out: list[str] = []
    for name in names:
        base, sep, size = name.partition(":")
        out += [p + sep + size for p in FAMILIES[base]] if base in FAMILIES else [name]
    return tuple(out)


def input_shape(entry: ZooEntry, size: Size) -> tuple[int, ...]:
    """One sample's shape as the model takes it (the generators' features for hcal are fixed: 0 here)."""
    data = dict(size.data)
    if entry.dataset == "digits":
        return (data.get("side", 28), data.get("side", 28), data.get("channels", 1))
    if entry.dataset == "lartpc":
        return (data["side"], data["side"], 3)
    if entry.dataset == "jets":
        return (data["side"], data["side"], 1)
    if entry.dataset == "calo":
        return (dict(size.model)["latent"] + 1,)
    if entry.dataset is None:
        return (dict(size.model)["side"],)
    return ()  # hcal: known once the data is generated


# ----------------------------------------------------------------------------- the edge study (MNIST-like digits)


def build_dense1(input_shape: tuple[int, ...] = (28, 28, 1), outputs: int = 10) -> Any:
    """One fully connected layer, 784 -> 10: 7,850 parameters (the edge study's Dense1)."""
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape, name="image"),
            keras.layers.Flatten(),
            keras.layers.Dense(outputs, activation="softmax", name="dense"),
        ],
        name="dense1",
    )


def build_conv3dense1(input_shape: tuple[int, ...] = (28, 28, 1), outputs: int = 10) -> Any:
    """Three convolutions and one dense layer on 28x28x1: 118,690 parameters (the study's Conv3Dense1)."""
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape, name="image"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
            keras.layers.Conv2D(72, 3, activation="relu", name="conv3"),
            keras.layers.Flatten(),
            keras.layers.Dense(outputs, activation="softmax", name="dense"),
        ],
        name="conv3dense1",
    )


def build_mobilenet_v1(input_shape: tuple[int, ...], outputs: int, alpha: float = 1.0) -> Any:
    """keras.applications MobileNet (v1), no downloaded weights; `alpha` narrows every layer."""
    import keras

    return keras.applications.MobileNet(
        input_shape=input_shape, alpha=alpha, weights=None, classes=outputs, dropout=0.0, name="mobilenet_v1"
    )


def build_mobilenet_v2(input_shape: tuple[int, ...], outputs: int, alpha: float = 1.0) -> Any:
    """keras.applications MobileNetV2; at alpha 1 on 32x32x3 with 10 classes: 2,270,794 parameters, the
    edge study's MobileNet figure."""
    import keras

    return keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=alpha, weights=None, classes=outputs, name="mobilenet_v2"
    )


# ----------------------------------------------------------------------------- the LArTPC study


def build_resnet50v2(input_shape: tuple[int, ...], outputs: int) -> Any:
    """keras.applications ResNet50V2, no downloaded weights."""
    import keras

    return keras.applications.ResNet50V2(input_shape=input_shape, weights=None, classes=outputs, name="resnet50v2")


def build_densenet169(input_shape: tuple[int, ...], outputs: int) -> Any:
    """keras.applications DenseNet169, no downloaded weights."""
    import keras

    return keras.applications.DenseNet169(
        input_shape=input_shape, weights=None, classes=outputs, name="densenet169"
    )


# ----------------------------------------------------------------------------- the heterogeneous-computing talk


def build_facile(input_shape: tuple[int, ...], outputs: int = 1, target_scale: float = 1.0) -> Any:
    """FACILE-like HCAL channel regression: batch-normalised inputs, two hidden layers of 36: ~2k parameters.
    The output is rescaled by a fixed `target_scale` (GeV) so the last layer learns numbers near 1."""
    import keras

    return keras.Sequential(
        [
            keras.Input(input_shape, name="channel"),
            keras.layers.BatchNormalization(name="standardise"),
            keras.layers.Dense(36, activation="relu", name="dense1"),
            keras.layers.BatchNormalization(name="norm1"),
            keras.layers.Dense(36, activation="relu", name="dense2"),
            keras.layers.BatchNormalization(name="norm2"),
            keras.layers.Dense(outputs, name="energy_scaled"),
            keras.layers.Rescaling(target_scale, name="energy"),
        ],
        name="facile",
    )


def build_toptag_resnet(
    input_shape: tuple[int, ...], outputs: int = 2, widths: tuple[int, ...] = (16, 32, 64), blocks: int = 2
) -> Any:
    """A ResNet of basic blocks on jet images (top vs QCD); widths (64, 128, 256, 512): ResNet-18, ~11M
    parameters, the size of the talk's top-tagging ResNet."""
    import keras
    from keras import layers

    image = keras.Input(input_shape, name="jet")
    x = layers.Conv2D(widths[0], 3, padding="same", use_bias=False, name="stem_conv")(image)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, width in enumerate(widths):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            tag = f"s{stage}b{block}"
            shortcut = x
            if stride != 1 or x.shape[-1] != width:
                shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False, name=f"{tag}_proj")(x)
                shortcut = layers.BatchNormalization(name=f"{tag}_proj_bn")(shortcut)
            y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False, name=f"{tag}_conv1")(x)
            y = layers.BatchNormalization(name=f"{tag}_bn1")(y)
            y = layers.ReLU(name=f"{tag}_relu1")(y)
            y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{tag}_conv2")(y)
            y = layers.BatchNormalization(name=f"{tag}_bn2")(y)
            x = layers.ReLU(name=f"{tag}_out")(layers.Add(name=f"{tag}_add")([shortcut, y]))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(image, layers.Dense(outputs, activation="softmax", name="predictions")(x), name="toptag_resnet")


# ----------------------------------------------------------------------------- the CERN openlab TPU study (3D GAN)


def build_calo_generator(
    input_shape: tuple[int, ...],
    outputs: int = 0,
    cells: tuple[int, int, int] = (51, 51, 25),
    latent: int = 64,
    width: int = 16,
) -> Any:
    """The 3D-convolutional GAN's generator: z = (noise..., E / 100 GeV) -> shower (cells) in GeV.

    Noise and energy travel in one input so every runtime and loader sees a single tensor; a frozen
    one-hot Dense picks the energy back out, and the shower is the network's per-GeV shape times it
    (the study's energy conditioning).
    """
    import keras
    import numpy as np
    from keras import layers

    del outputs, latent
    # three upsamplings grow a coarse grid by (8, 8, 4); the excess is cropped
    factors = ((2, 2, 2), (2, 2, 1), (2, 2, 2))
    start = (math.ceil(cells[0] / 8), math.ceil(cells[1] / 8), math.ceil(cells[2] / 4))
    z = keras.Input(input_shape, name="z")
    x = layers.Dense(int(np.prod(start)) * width, name="project")(z)
    x = layers.LeakyReLU(0.2, name="project_act")(x)
    x = layers.Reshape((*start, width), name="grid")(x)
    for index, factor in enumerate(factors, start=1):
        x = layers.UpSampling3D(factor, name=f"up{index}")(x)
        x = layers.Conv3D(max(width // index, 4), 3, padding="same", name=f"conv{index}")(x)
        x = layers.LeakyReLU(0.2, name=f"act{index}")(x)
    x = layers.Conv3D(1, 3, padding="same", activation="relu", name="shape")(x)
    grown = (start[0] * 8, start[1] * 8, start[2] * 4)
    crop = tuple((0, g - c) for g, c in zip(grown, cells, strict=True))
    x = layers.Cropping3D(crop, name="crop")(x)
    x = layers.Reshape(cells, name="cells")(x)
    energy_pick = layers.Dense(1, use_bias=False, trainable=False, name="energy_pick")
    energy = energy_pick(z)
    energy_pick.set_weights([np.eye(input_shape[0], 1, -(input_shape[0] - 1), dtype="float32")])
    energy = layers.Reshape((1, 1, 1), name="energy_grid")(energy)
    shower = layers.Multiply(name="shower")([x, energy])
    return keras.Model(z, shower, name="calo_gan_generator")


def build_calo_discriminator(cells: tuple[int, int, int], width: int = 16) -> Any:
    """The GAN's discriminator: (shower per 100 GeV, E / 100 GeV) -> real/fake logit; trained here only."""
    import keras
    from keras import layers

    shower = keras.Input(cells, name="shower")
    energy = keras.Input((1,), name="energy")
    x = layers.Reshape((*cells, 1))(shower)
    x = layers.Conv3D(width, 3, strides=(2, 2, 2), padding="same")(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.Conv3D(width, 3, strides=(2, 2, 2), padding="same")(x)
    x = layers.LeakyReLU(0.2)(x)
    x = layers.GlobalAveragePooling3D()(x)
    x = layers.Concatenate()([x, energy])
    x = layers.Dense(width, activation="relu")(x)
    return keras.Model([shower, energy], layers.Dense(1)(x), name="calo_gan_discriminator")


# ----------------------------------------------------------------------------- the heterogeneous-platform scans


def build_matmul(input_shape: tuple[int, ...], outputs: int = 0, side: int = 64) -> Any:
    """A side x side matrix times a vector: one Dense layer without bias, as the study timed it."""
    import keras

    del outputs
    return keras.Sequential(
        [keras.Input(input_shape, name="vector"), keras.layers.Dense(side, use_bias=False, name="matmul")],
        name=f"matmul_{side}",
    )


def build_dense_scan(input_shape: tuple[int, ...], outputs: int = 0, side: int = 64) -> Any:
    """A feed-forward network of width `side`: side inputs -> side -> side (ReLU) -> 10 (softmax)."""
    import keras

    del outputs
    return keras.Sequential(
        [
            keras.Input(input_shape, name="features"),
            keras.layers.Dense(side, activation="relu", name="hidden1"),
            keras.layers.Dense(side, activation="relu", name="hidden2"),
            keras.layers.Dense(10, activation="softmax", name="scores"),
        ],
        name=f"dense_scan_{side}",
    )


def _size(data: dict | None = None, model: dict | None = None, **rest: Any) -> Size:
    return Size(tuple((data or {}).items()), tuple((model or {}).items()), **rest)


def _scan_points(family: str, summary: str, build: Callable[..., Any]) -> list[ZooEntry]:
    return [
        ZooEntry(
            f"{family}-{side}", summary.format(side=side), None, None, build,
            {s: _size(model={"side": side}) for s in SIZE_NAMES}, task="none",
        )
        for side in SCAN_SIDES
    ]


_DIGITS32 = {"side": 32, "channels": 3}  # CIFAR-10's input shape, the edge study's MobileNet input
_ENTRIES = [
    ZooEntry(
        "dense1", "1 dense layer, 784->10 (edge study's Dense1)", "digits", "top1", build_dense1,
        {"default": _size(train=1437, test=360, epochs=40), "full": _size(train=1437, test=360, epochs=40),
         "tiny": _size(train=1437, test=360, epochs=1)},
    ),
    ZooEntry(
        "conv3dense1", "3 conv + 1 dense (edge study's Conv3Dense1)", "digits", "top1", build_conv3dense1,
        {"default": _size(train=1437, test=360, epochs=12), "full": _size(train=1437, test=360, epochs=12),
         "tiny": _size(train=1437, test=360, epochs=1)},
    ),
    ZooEntry(
        "mobilenet-v1", "keras MobileNet v1 on digits as 32x32x3", "digits", "top1", build_mobilenet_v1,
        {"default": _size(_DIGITS32, {"alpha": 0.25}, train=1437, test=360, epochs=15),
         "full": _size(_DIGITS32, {"alpha": 1.0}, train=1437, test=360, epochs=30),
         "tiny": _size(_DIGITS32, {"alpha": 0.25}, train=1437, test=360, epochs=1, batch_size=256)},
    ),
    ZooEntry(
        "mobilenet-v2", "keras MobileNetV2 on digits as 32x32x3 (study: CIFAR-10)", "digits", "top1",
        build_mobilenet_v2,
        {"default": _size(_DIGITS32, {"alpha": 0.35}, train=1437, test=360, epochs=15),
         "full": _size(_DIGITS32, {"alpha": 1.0}, train=1437, test=360, epochs=30),
         "tiny": _size(_DIGITS32, {"alpha": 0.35}, train=1437, test=360, epochs=1, batch_size=256)},
    ),
    ZooEntry(
        "resnet50v2", "keras ResNet50V2 on LArTPC neutrino images", "lartpc", "top1", build_resnet50v2,
        {"default": _size({"side": 48}, train=2000, test=500, epochs=2),
         "full": _size({"side": 200}, train=10000, test=2000, epochs=10),
         "tiny": _size({"side": 32}, train=32, test=16, epochs=1, batch_size=16)},
    ),
    ZooEntry(
        "densenet169", "keras DenseNet169 on LArTPC neutrino images", "lartpc", "top1", build_densenet169,
        {"default": _size({"side": 48}, train=2000, test=500, epochs=2),
         "full": _size({"side": 200}, train=10000, test=2000, epochs=10),
         "tiny": _size({"side": 32}, train=32, test=16, epochs=1, batch_size=16)},
    ),
    ZooEntry(
        "facile", "FACILE-like HCAL channel energy regression, ~2k params", "hcal", "resolution", build_facile,
        {"default": _size(train=50000, test=10000, epochs=10, batch_size=256),
         "full": _size(train=500000, test=100000, epochs=30, batch_size=256),
         "tiny": _size(train=512, test=128, epochs=1, batch_size=128)},
        task="regress",
    ),
    ZooEntry(
        "toptag-resnet", "ResNet on jet images, top vs QCD", "jets", "auc", build_toptag_resnet,
        {"default": _size({"side": 32}, {"widths": (16, 32, 64)}, train=8000, test=2000, epochs=3),
         "full": _size({"side": 64}, {"widths": (64, 128, 256, 512)}, train=50000, test=10000, epochs=20),
         "tiny": _size({"side": 16}, {"widths": (8, 16)}, train=64, test=32, epochs=1)},
    ),
    ZooEntry(
        "calo-gan", "3D-conv GAN generator: (noise, E) -> calorimeter shower", "calo", "resolution",
        build_calo_generator,
        {"default": _size({"cells": (25, 25, 12)}, {"cells": (25, 25, 12), "latent": 32, "width": 8},
                          train=2000, test=500, epochs=3),
         "full": _size({"cells": (51, 51, 25)}, {"cells": (51, 51, 25), "latent": 200, "width": 32},
                       train=10000, test=2000, epochs=20),
         "tiny": _size({"cells": (8, 8, 6)}, {"cells": (8, 8, 6), "latent": 8, "width": 4},
                       train=64, test=32, epochs=1)},
        learning_rate=2e-4, task="generate",
    ),
    *_scan_points("matmul-scan", "{side}x{side} matrix times a vector (untrained)", build_matmul),
    *_scan_points("dense-scan", "dense net, width {side} (untrained)", build_dense_scan),
]
# Parameter counts at the default and full size, for `xpubench zoo` without building every model
# (tests/test_zoo.py builds them and checks these figures).
_PARAMETERS = {
    "dense1": (7_850, 7_850),
    "conv3dense1": (118_690, 118_690),
    "mobilenet-v1": (221_114, 3_239_114),
    "mobilenet-v2": (423_018, 2_270_794),
    "resnet50v2": (23_570_947, 23_570_947),
    "densenet169": (12_647_875, 12_647_875),
    "facile": (2_173, 2_173),
    "toptag-resnet": (175_570, 11_178_306),
    "calo-gan": (16_238, 2_263_474),
    **{f"matmul-scan-{n}": (n * n, n * n) for n in SCAN_SIDES},
    **{f"dense-scan-{n}": (2 * n * n + 12 * n + 10,) * 2 for n in SCAN_SIDES},
}
ZOO: dict[str, ZooEntry] = {
    e.name: replace(e, parameters=dict(zip(("default", "full"), _PARAMETERS[e.name], strict=True)))
    for e in _ENTRIES
}
FAMILIES: dict[str, tuple[str, ...]] = {
    family: tuple(f"{family}-{side}" for side in SCAN_SIDES) for family in ("matmul-scan", "dense-scan")
}

DATASETS: dict[str, str] = {
    "digits": "scikit-learn's 1,797 real handwritten digits, upsampled to 28x28x1; 80/20 stratified split",
    "lartpc": "generated LArTPC neutrino events, 3 wire planes; NC / numu CC / nue CC",
    "jets": "generated jet images; QCD / top",
    "hcal": "generated HCAL channels: pulse samples and position -> energy (GeV)",
    "calo": "generated calorimeter showers for a particle energy (GeV)",
}
