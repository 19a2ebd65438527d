"""Training zoo models on their dataset, cached under a fingerprint of code, data and settings."""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xpubench.models.zoo import ZooEntry
from xpubench.paths import cache_dir

SEED = 1234


def fingerprint(entry: ZooEntry) -> str:
    from xpubench.data import digits

    parts = [
        inspect.getsource(entry.build),
        inspect.getsource(digits),
        repr((entry.dataset, entry.epochs, entry.batch_size, entry.learning_rate, SEED)),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def model_dir(entry: ZooEntry) -> Path:
    return cache_dir() / "models" / f"{entry.name}-{fingerprint(entry)}"


def ensure_trained(entry: ZooEntry, say: Callable[[str], None] = print) -> Path:
    """The folder holding `model.keras` and `meta.json`; trains once when they are missing."""
    folder = model_dir(entry)
    if (folder / "meta.json").exists():
        return folder
    say(f"training {entry.name} on {entry.dataset} ({entry.epochs} epochs; once, then cached in {folder})")
    from xpubench.convert.keras import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from xpubench.models.datasets import load_dataset

    split = load_dataset(entry.dataset)
    keras.utils.set_random_seed(SEED)
    model = entry.build()
    model.compile(
        optimizer=keras.optimizers.Adam(entry.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.perf_counter()
    model.fit(
        split.x_train, split.y_train, epochs=entry.epochs, batch_size=entry.batch_size, verbose=0, shuffle=True
    )
    seconds = time.perf_counter() - started
    scores = model.predict(split.x_test, batch_size=256, verbose=0)
    accuracy = float(np.mean(np.argmax(scores, axis=1) == split.y_test))
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    meta = {
        "model": entry.name,
        "dataset": entry.dataset,
        "parameters": int(model.count_params()),
        "keras_accuracy": accuracy,
        "train_seconds": seconds,
        "epochs": entry.epochs,
        "seed": SEED,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))  # written last: marks the folder complete
    say(f"trained {entry.name}: held-out top-1 {accuracy:.4f} in {seconds:.1f} s")
    return folder
