"""Training zoo models on their dataset, cached under a fingerprint of code, data and settings."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from xpubench.models.zoo import Size, ZooEntry, build_calo_discriminator
from xpubench.paths import cache_dir

SEED = 1234
ESTIMATE_AFTER = 4  # batches timed (after the first, which traces the graph) before estimating the total
GAN_SUM_WEIGHT = 10.0  # the generator's energy-sum constraint against the adversarial loss


def size_of(entry: ZooEntry, size_name: str = "default", epochs: int | None = None) -> Size:
    return entry.sizes[size_name].with_epochs(epochs)


EAGER_STEPS = 8  # at most this many training steps run without tracing (the zoo's tiny sizes)


def fingerprint(entry: ZooEntry, size: Size | None = None) -> str:
    from xpubench.models import datasets

    size = size or entry.sizes["default"]
    parts = [
        inspect.getsource(entry.build),
        inspect.getsource(_TRAINERS[entry.task]),
        datasets.source_digest(entry.dataset) if entry.dataset else "",
        repr((entry.dataset, entry.metric, entry.task, size, entry.learning_rate, SEED)),
    ]
    if entry.task == "generate":
        parts.append(inspect.getsource(build_calo_discriminator))
    else:
        parts.append(inspect.getsource(_short_memory_batch_norm))
    if entry.dataset not in (None, "digits"):
        parts.append(inspect.getsource(datasets))  # how events are split and fed
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def model_dir(entry: ZooEntry, size_name: str = "default", epochs: int | None = None) -> Path:
    tag = "" if size_name == "default" else f"-{size_name}"
    return cache_dir() / "models" / f"{entry.name}{tag}-{fingerprint(entry, size_of(entry, size_name, epochs))}"


def train_with_onednn() -> None:
    """For a process that trains and then ends: oneDNN's kernels, which train the zoo's convolutional
    networks 1.5x (DenseNet-169) to 4x (ResNet-50 V2) faster on these CPUs. Inference keeps them off
    (`quiet_tensorflow`: the same sums as ONNX Runtime and LiteRT). TensorFlow reads this once, when
    it starts: once it is imported, this changes nothing."""
    if "tensorflow" not in sys.modules:
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"


def untrained(name: str) -> bool:
    """Whether zoo model `name` (NAME or NAME:SIZE) trains on first use and is not in the cache yet."""
    from xpubench.models.zoo import lookup

    found = lookup(name)
    return bool(found) and found[0].task != "none" and not (model_dir(*found) / "meta.json").exists()


def ensure_trained(
    entry: ZooEntry,
    say: Callable[[str], None] = print,
    size_name: str = "default",
    epochs: int | None = None,
    stream: TextIO | None = None,
) -> Path:
    """The folder holding `model.keras` and `meta.json`; trains once when they are missing.

    `stream` takes the per-epoch progress (default stderr: a redrawn line on a terminal, a line per
    epoch otherwise).
    """
    size = size_of(entry, size_name, epochs)
    folder = model_dir(entry, size_name, epochs)
    if (folder / "meta.json").exists():
        return folder
    from xpubench.convert.keras import quiet_tensorflow

    quiet_tensorflow()
    import keras

    if entry.task == "none":
        say(f"building {entry.name} (untrained; once, then cached in {folder})")
    else:
        where = f"{entry.dataset}, {size.describe()}"
        say(f"training {entry.name} at {size_name} size ({where}; once, then cached in {folder})")
    keras.utils.set_random_seed(SEED)
    started, cpu_started = time.perf_counter(), time.process_time()
    model, meta = _TRAINERS[entry.task](entry, size, say, stream or sys.stderr)
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started  # all threads: comparable on a shared, busy machine
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    meta = {
        "model": entry.name,
        "size": size_name,
        "dataset": entry.dataset,
        "input_shape": list(model.inputs[0].shape[1:]),
        "input_name": model.inputs[0].name.split(":")[0],
        "parameters": int(model.count_params()),
        "metric": entry.metric,
        **meta,
        "train_seconds": seconds,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1",  # kernels with other sums: other weights
        "train_cpu_seconds": cpu_seconds,
        "epochs": size.epochs,
        "train_events": size.train,
        "seed": SEED,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))  # written last: marks the folder complete
    if entry.task != "none":
        value = meta["keras_accuracy"]
        say(f"trained {entry.name}: held-out {entry.metric} {value:.4f} in {seconds:.1f} s "
            f"({cpu_seconds:.0f} s of CPU)")
    return folder


def _fit(entry: ZooEntry, size: Size, say: Callable[[str], None], stream: TextIO) -> tuple[Any, dict]:
    """Classifiers and regressors: keras fit on the training split, scored on the held-out one."""
    import keras

    from xpubench.models.datasets import split_for
    from xpubench.models.metrics import confusion, evaluate

    split = split_for(entry, size)
    kwargs = dict(size.model)
    if entry.task == "regress":
        outputs, loss = 1, "mean_absolute_percentage_error"  # the metric is relative: so is the loss
        kwargs["target_scale"] = float(np.float32(np.median(split.y_train)))
    else:
        outputs, loss = len(split.classes), "sparse_categorical_crossentropy"
    model = entry.build(split.x_train.shape[1:], outputs, **kwargs)
    _short_memory_batch_norm(model)
    steps = -(-len(split.x_train) // size.batch_size)
    # Tracing a big network's training step costs tens of seconds: for a handful of steps, run them eagerly.
    model.compile(
        optimizer=keras.optimizers.Adam(entry.learning_rate), loss=loss, run_eagerly=size.epochs * steps <= EAGER_STEPS
    )
    progress = _progress_callback(size.epochs, steps, say, stream)
    model.fit(
        split.x_train, split.y_train, epochs=size.epochs, batch_size=size.batch_size, verbose=0, shuffle=True,
        callbacks=[progress],
    )
    scores = model.predict(split.x_test, batch_size=256, verbose=0)
    meta: dict = {"keras_accuracy": evaluate(entry.metric, scores, split.y_test)}
    if entry.task == "classify":
        meta["classes"] = list(split.classes)
        meta["confusion"] = confusion(scores, split.y_test)  # rows: true class, columns: predicted
        if entry.metric != "top1":
            meta["top1"] = evaluate("top1", scores, split.y_test)
    return model, meta


def _short_memory_batch_norm(model: Any, momentum: float = 0.9) -> None:
    """Batch normalisation that remembers the last tens of batches, not the last thousands.

    keras.applications set momentum 0.99 (ResNet, DenseNet) or 0.999 (MobileNetV2): their moving
    statistics need thousands of steps to forget their initial values. Trained here for hundreds,
    a model scores well on batch statistics and at chance at inference (one class for every input).
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, momentum)


def _gan(entry: ZooEntry, size: Size, say: Callable[[str], None], stream: TextIO) -> tuple[Any, dict]:
    """The calo-gan: the generator and discriminator trained adversarially (non-saturating loss), with
    the study's physics constraint as an extra generator loss: a shower's cell sum over its energy
    must match the real showers' sampling fraction."""
    import keras
    import tensorflow as tf

    from xpubench.models.datasets import ENERGY_UNIT, generator_inputs, load_dataset
    from xpubench.models.metrics import evaluate

    model_kw = dict(size.model)
    cells, latent = tuple(model_kw["cells"]), model_kw["latent"]
    split = load_dataset("calo", size.train, size.test, **dict(size.data))
    real = np.asarray(split.x_train, dtype=np.float32)
    energy = np.asarray(split.y_train, dtype=np.float32)
    sampling = float(np.mean(real.reshape(len(real), -1).sum(axis=1) / energy))

    generator = entry.build((latent + 1,), 0, **model_kw)
    discriminator = build_calo_discriminator(cells, model_kw["width"])
    g_opt = keras.optimizers.Adam(entry.learning_rate, beta_1=0.5)
    d_opt = keras.optimizers.Adam(entry.learning_rate, beta_1=0.5)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    axes = list(range(1, len(cells) + 1))

    def normalised(shower: Any, e: Any) -> Any:
        # per unit of deposited energy, x100: the discriminator judges shapes, the sum term judges scale
        return shower / tf.reshape(e * ENERGY_UNIT * sampling / 100.0, (-1, 1, 1, 1))

    @tf.function
    def step(real_batch: Any, z: Any) -> tuple[Any, Any]:
        e = z[:, -1:]
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            fake = generator(z, training=True)
            d_real = discriminator([normalised(real_batch, e), e], training=True)
            d_fake = discriminator([normalised(fake, e), e], training=True)
            d_loss = bce(tf.ones_like(d_real), d_real) + bce(tf.zeros_like(d_fake), d_fake)
            ratio = tf.reduce_sum(fake, axis=axes) / (e[:, 0] * ENERGY_UNIT * sampling)
            g_loss = bce(tf.ones_like(d_fake), d_fake) + GAN_SUM_WEIGHT * tf.reduce_mean(tf.square(ratio - 1.0))
        g_opt.apply_gradients(zip(g_tape.gradient(g_loss, generator.trainable_variables),
                                  generator.trainable_variables, strict=True))
        d_opt.apply_gradients(zip(d_tape.gradient(d_loss, discriminator.trainable_variables),
                                  discriminator.trainable_variables, strict=True))
        return g_loss, d_loss

    rng = np.random.default_rng(SEED)
    steps = -(-len(real) // size.batch_size)
    progress = _Progress(size.epochs, steps, say, stream)
    for epoch in range(size.epochs):
        order = rng.permutation(len(real))
        for index in range(steps):
            batch = order[index * size.batch_size : (index + 1) * size.batch_size]
            z = generator_inputs(energy[batch], latent, int(rng.integers(1 << 31)))
            g_loss, d_loss = step(tf.constant(real[batch]), tf.constant(z))
            progress.batch_done(epoch, index, float(g_loss), f"d {float(d_loss):.3f}")
        progress.epoch_done(epoch)

    z_test = generator_inputs(split.y_test, latent, SEED)
    fake = generator.predict(z_test, batch_size=256, verbose=0)
    response = fake.reshape(len(fake), -1).sum(axis=1) / split.y_test
    real_response = np.asarray(split.x_test).reshape(len(split.y_test), -1).sum(axis=1) / split.y_test
    meta = {
        "keras_accuracy": evaluate("resolution", fake, split.y_test),
        "real_resolution": evaluate("resolution", split.x_test, split.y_test),
        "response": float(np.mean(response)),
        "real_response": float(np.mean(real_response)),
    }
    return generator, meta


def _untrained(entry: ZooEntry, size: Size, say: Callable[[str], None], stream: TextIO) -> tuple[Any, dict]:
    """The scans: random weights (seeded), no data, latency only."""
    from xpubench.models.zoo import input_shape

    return entry.build(input_shape(entry, size), 0, **dict(size.model)), {"keras_accuracy": None}


_TRAINERS: dict[str, Callable[[ZooEntry, Size, Callable[[str], None], TextIO], tuple[Any, dict]]] = {
    "classify": _fit,
    "regress": _fit,
    "generate": _gan,
    "none": _untrained,
}


class _Progress:
    """Training progress on a stream: a redrawn line on a terminal, one line per epoch otherwise; and,
    once a few batches are timed, one estimate of the whole training through `say`."""

    def __init__(self, epochs: int, steps: int, say: Callable[[str], None], stream: TextIO) -> None:
        self.epochs, self.steps, self.say, self.stream = epochs, steps, say, stream
        self.tty = stream.isatty()
        self.started = time.perf_counter()
        self.first_done: float | None = None
        self.estimated = False
        self.loss_sum, self.loss_count, self.extra = 0.0, 0, ""

    def batch_done(self, epoch: int, index: int, loss: float, extra: str = "") -> None:
        now = time.perf_counter()
        self.loss_sum, self.loss_count, self.extra = self.loss_sum + loss, self.loss_count + 1, extra
        done = epoch * self.steps + index + 1
        total = self.epochs * self.steps
        if self.first_done is None:
            self.first_done = now
        elif not self.estimated and (done > ESTIMATE_AFTER or done == total):
            self.estimated = True
            per_batch = (now - self.first_done) / (done - 1)
            left = per_batch * (total - done)
            self.say(f"  about {_duration(now - self.started + left)} to train ({total} batches, "
                     f"{per_batch * 1e3:.0f} ms each)")
        if self.tty:
            self.stream.write(f"\r\033[K{self._line(epoch)} [{index + 1}/{self.steps}]")
            self.stream.flush()

    def epoch_done(self, epoch: int) -> None:
        prefix = "\r\033[K" if self.tty else ""
        self.stream.write(prefix + self._line(epoch) + "\n")
        self.stream.flush()
        self.loss_sum, self.loss_count = 0.0, 0

    def _line(self, epoch: int) -> str:
        loss = self.loss_sum / max(self.loss_count, 1)
        extra = f" {self.extra}" if self.extra else ""
        elapsed = time.perf_counter() - self.started
        return f"  epoch {epoch + 1}/{self.epochs} loss {loss:.4f}{extra} {elapsed:6.1f} s"


def _progress_callback(epochs: int, steps: int, say: Callable[[str], None], stream: TextIO) -> Any:
    import keras

    progress = _Progress(epochs, steps, say, stream)

    class ProgressCallback(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            # keras reports the running mean of the epoch's loss: undo it to keep ours per batch
            mean = float((logs or {}).get("loss", 0.0))
            progress.batch_done(self.epoch, batch, mean * (batch + 1) - progress.loss_sum)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            progress.epoch_done(epoch)

    return ProgressCallback()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
