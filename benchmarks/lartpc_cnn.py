"""Is the LArTPC generator's classification neither trivial nor hopeless? A small CNN says.

Trains a 4-layer CNN on generated events and prints its validation accuracy and confusion matrix
(rows: true NC, numu CC, nue CC; columns: predicted), with the off-diagonal pairs summed: in the
study's data NC and nue CC are confused most (pi0 photons look like electrons).

The events are the generator's default, 200x200 per plane; the network max-pools them 3x3 first (a
hit survives a max-pool; 2 cores could not train on the full resolution in minutes).

    python benchmarks/lartpc_cnn.py [TRAIN_EVENTS] [SIDE] [EPOCHS]    # default 4500 200 9
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(train: int = 4500, side: int = 200, epochs: int = 9) -> None:
    from xpubench.data import lartpc

    start = time.perf_counter()
    x, y = lartpc.generate(train, 7, side=side)
    x_val, y_val = lartpc.generate(train // 2, 8, side=side)
    print(f"generated {train}+{train // 2} events at {side}x{side} in {time.perf_counter() - start:.1f} s")

    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((side, side, 3)),
        layers.MaxPooling2D(max(1, side // 64)),
        layers.Conv2D(16, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.GlobalMaxPooling2D(), layers.Dense(64, activation="relu"), layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, validation_data=(x_val, y_val), epochs=epochs, batch_size=64, verbose=2)

    from xpubench.models.metrics import confusion

    counts = np.asarray(confusion(model.predict(x_val, verbose=0), y_val))
    print(f"validation accuracy {np.trace(counts) / counts.sum():.3f}")
    print("confusion (rows true NC, numu CC, nue CC; columns predicted)")
    print(counts)
    pair = counts + counts.T
    print(f"confused: NC<->nue CC {pair[0, 2]}, NC<->numu CC {pair[0, 1]}, numu CC<->nue CC {pair[1, 2]}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
