"""The unconverted Keras model or SavedModel on TensorFlow: the source studies' "TensorFlow" row."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec


class TensorFlowBackend(Backend):
    name = "tensorflow"
    formats = ("keras", "savedmodel")
    distribution = "tensorflow-cpu"
    module = "tensorflow"
    depends_on = ("tensorflow", "keras")  # the full build, installed instead of tensorflow-cpu; Keras 3 beside it

    @classmethod
    def artifact_kinds(cls, precision: str, options: Mapping[str, str] | None = None) -> tuple[str, ...]:
        return tuple(f"{fmt}:{precision}" for fmt in cls.formats)

    @classmethod
    def claim_process(cls, threads: int) -> None:
        """TensorFlow fixes its thread pools when its runtime starts, and converters start it too:
        set them before anything else does."""
        from xpubench.convert.keras import quiet_tensorflow

        quiet_tensorflow()
        import tensorflow as tf

        _set_threads(tf, threads)

    def load(self) -> None:
        from xpubench.convert.keras import load_keras, quiet_tensorflow

        quiet_tensorflow()
        import tensorflow as tf

        _set_threads(tf, self.threads)
        if self.artifact.is_dir():  # a SavedModel: its serving signature, called with positional tensors
            signature = tf.saved_model.load(str(self.artifact)).signatures["serving_default"]
            specs = signature.structured_input_signature[1]
            self._names = sorted(specs)
            self._specs = [
                TensorSpec(n, tuple(specs[n].shape), np.dtype(specs[n].dtype.as_numpy_dtype)) for n in self._names
            ]
            output_names = sorted(signature.structured_outputs)

            def run(*tensors: Any) -> list[Any]:
                out = signature(**dict(zip(self._names, tensors, strict=True)))
                return [out[n] for n in output_names]

            self.infer = (lambda xs: run(*xs)) if len(self._names) > 1 else run
        else:
            model = load_keras(self.artifact)
            self._specs = [
                TensorSpec(t.name.split(":")[0], tuple(t.shape), np.dtype(getattr(t.dtype, "name", t.dtype)))
                for t in model.inputs
            ]
            # One traced graph per input shape, as a deployed TF model runs; the eager Python call
            # path of `model(x)` would add milliseconds that are Keras', not TensorFlow's.
            self.infer = tf.function(model, reduce_retracing=True)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._specs

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
