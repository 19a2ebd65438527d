"""The unconverted Keras model on TensorFlow: the source studies' "TensorFlow" row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec


class TensorFlowBackend(Backend):
    name = "tensorflow"
    formats = ("keras",)
    distribution = "tensorflow-cpu"
    module = "tensorflow"

    @classmethod
    def claim_process(cls, threads: int) -> None:
        """TensorFlow fixes its thread pools when its runtime starts, and converters start it too:
        set them before anything else does."""
        from xpubench.convert.keras import quiet_tensorflow

        quiet_tensorflow()
        import tensorflow as tf

        _set_threads(tf, threads)

    def __init__(
        self,
        artifact: Path,
        device: str = "cpu",
        threads: int = 1,
        precision: str = "fp32",
        options: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(artifact, device, threads, precision, options)
        from xpubench.convert.keras import load_keras, quiet_tensorflow

        quiet_tensorflow()
        import tensorflow as tf

        _set_threads(tf, threads)
        self._model = load_keras(self.artifact)
        # One traced graph per input shape, as a deployed TF model runs; the eager Python call
        # path of `model(x)` would add milliseconds that are Keras', not TensorFlow's.
        self.infer = tf.function(self._model, reduce_retracing=True)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(t.name.split(":")[0], tuple(t.shape), np.dtype(getattr(t.dtype, "name", t.dtype)))
            for t in self._model.inputs
        ]

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        return tensors[0] if len(tensors) == 1 else tensors

    def infer(self, prepared: Any) -> Any:  # replaced per instance by the traced model
        raise NotImplementedError

    def fetch(self, result: Any) -> list[np.ndarray]:
        outputs = result if isinstance(result, list | tuple) else [result]
        return [np.asarray(o) for o in outputs]


def _set_threads(tf: Any, threads: int) -> None:
    """TensorFlow fixes its thread pools when its runtime starts: a later, different count is refused."""
    config = tf.config.threading
    try:
        config.set_intra_op_parallelism_threads(threads)
        config.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        if config.get_intra_op_parallelism_threads() != threads:
            raise RuntimeError(
                f"TensorFlow already started with {config.get_intra_op_parallelism_threads()} threads in this "
                f"process: measure threads={threads} in a run of its own"
            ) from None
