"""The study's custom training loop under a tf.distribute strategy: per replica, gradient tapes; one explicit
all-reduce of every gradient (the replica context's all_reduce, RING collectives across worker processes);
then RMSprop. Each part is its own tf.function so its time is its own. Run by `tf_worker` (one process of a
MultiWorkerMirroredStrategy group) and, in the task's own process, over logical CPU devices (MirroredStrategy).

Forward and backward run in one traced function (a tape cannot cross functions): their split is probed
before the timed steps by a forward-only function on the same batches (`forward_split` says so)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from xpubench.train.spec import TrainSpec


def _checksum(arrays: list[np.ndarray]) -> float:
    return float(sum((a.astype(np.float64) * (1 + np.arange(a.size).reshape(a.shape) % 7)).sum() for a in arrays))


def train(spec: TrainSpec, strategy: Any, rank: int) -> dict[str, Any]:
    """Train spec.model under `strategy`; the report of this process (rank) with its replicas' figures."""
    import keras
    import tensorflow as tf

    from xpubench.models.datasets import ENERGY_UNIT, generator_inputs
    from xpubench.models.metrics import evaluate
    from xpubench.models.zoo import build_calo_discriminator
    from xpubench.train.feed import Feed, load_split, model_facts, sampling_fraction
    from xpubench.train.validity import shower_distance

    class StudyRMSprop(keras.optimizers.RMSprop):
        """RMSprop that applies the gradients it is given: the loop all-reduced them already (and timed it)."""

        def _all_reduce_sum_gradients(self, grads_and_vars: Any) -> Any:
            return list(grads_and_vars)

    facts = model_facts(spec.model)
    split = load_split(facts)
    replicas = strategy.num_replicas_in_sync
    gan = facts.task == "generate"
    kw = facts.keywords
    keras.utils.set_random_seed(spec.seed)
    lr = spec.learning_rate or facts.learning_rate
    with strategy.scope():
        if gan:
            cells, latent = tuple(kw["cells"]), kw["latent"]
            models = [facts_build(facts, (latent + 1,), 0), build_calo_discriminator(cells, kw["width"])]
        else:
            outputs = 1 if facts.task == "regress" else len(split.classes)
            extra = {"target_scale": float(np.median(split.y_train))} if facts.task == "regress" else {}
            models = [facts_build(facts, split.x_train.shape[1:], outputs, **extra)]
        optimizers = [StudyRMSprop(lr) for _ in models]
        for model, opt in zip(models, optimizers, strict=True):
            opt.build(model.trainable_variables)
    variables = [m.trainable_variables for m in models]
    global_batch = spec.global_batch
    sampling = sampling_fraction(split) if gan else 1.0
    scale = ENERGY_UNIT * sampling
    bce = keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)

    def losses(x: Any, z: Any) -> list[Any]:
        if gan:
            generator, discriminator = models
            e = z[:, -1:]
            norm = tf.reshape(e * scale / 100.0, (-1, 1, 1, 1))
            fake = generator(z, training=True)
            d_real = discriminator([x / norm, e], training=True)
            d_fake = discriminator([fake / norm, e], training=True)
            d_loss = bce(tf.ones_like(d_real), d_real) + bce(tf.zeros_like(d_fake), d_fake)
            ratio = tf.reduce_sum(fake, axis=[1, 2, 3]) / (e[:, 0] * scale)
            g_loss = bce(tf.ones_like(d_fake), d_fake) + 10.0 * tf.square(ratio - 1.0)
            return [tf.nn.compute_average_loss(g_loss, global_batch_size=global_batch),
                    tf.nn.compute_average_loss(d_loss, global_batch_size=global_batch)]
        scores = models[0](x, training=True)
        if facts.task == "regress":
            per = tf.abs(tf.reshape(scores, [-1]) - tf.cast(z, tf.float32)) / tf.abs(tf.cast(z, tf.float32))
        else:
            per = keras.losses.sparse_categorical_crossentropy(z, scores)
        return [tf.nn.compute_average_loss(per, global_batch_size=global_batch)]

    def grads_replica(x: Any, z: Any) -> Any:
        with tf.GradientTape(persistent=True) as tape:
            found = losses(x, z)
        return [tape.gradient(loss, v) for loss, v in zip(found, variables, strict=True)]

    @tf.function
    def grads_fn(x: Any, z: Any) -> Any:
        return strategy.run(grads_replica, args=(x, z))

    @tf.function
    def forward_fn(x: Any, z: Any) -> Any:
        return strategy.run(losses, args=(x, z))

    @tf.function
    def reduce_fn(grads: Any) -> Any:
        def reduce(g: Any) -> Any:
            # identity: a value handed in from another function has no device, and a collective needs one
            g = tf.nest.map_structure(tf.identity, g)
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, g)

        return strategy.run(reduce, args=(grads,))

    @tf.function
    def apply_fn(grads: Any) -> None:
        def apply(g: Any) -> None:
            for opt, gs, vs in zip(optimizers, g, variables, strict=True):
                opt.apply_gradients(zip(gs, vs, strict=True))

        strategy.run(apply, args=(grads,))

    local_replicas = len(strategy.extended.worker_devices)
    world = replicas
    feeds = [Feed(spec, facts, split, rank * local_replicas + i, world) for i in range(local_replicas)]

    def next_batch() -> tuple[Any, Any]:
        batches = [f.next() for f in feeds]
        x = strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(batches[ctx.replica_id_in_sync_group - rank * local_replicas][0]))
        z = strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(batches[ctx.replica_id_in_sync_group - rank * local_replicas][1]))
        return x, z

    def validity() -> dict[str, Any]:
        if gan:
            z_test = generator_inputs(split.y_test, kw["latent"], spec.seed + 1)
            fake = models[0](tf.constant(z_test), training=False).numpy()
            return shower_distance(fake, np.asarray(split.x_test))
        scores = models[0](tf.constant(np.asarray(split.x_test)), training=False).numpy()
        value = evaluate(facts_metric(facts), scores, split.y_test)
        return {"metric": facts_metric(facts), "value": value, "distance": value, "events": len(split.y_test)}

    def replica_checksums() -> list[float]:
        every = [v for vs in variables for v in vs]
        if local_replicas == 1:
            return [_checksum([v.numpy() for v in every])]
        return [_checksum([v.value.values[i].numpy() for v in every]) for i in range(local_replicas)]

    untrained = validity() if rank == 0 else None
    # The forward/backward split, probed on a few batches before the timed steps (tracing excluded).
    forward_s, both_s = [], []
    phases: dict[str, list[float]] = {p: [] for p in ("input", "forward", "backward", "allreduce", "optimizer", "idle")}
    step_s: list[float] = []
    checksums: list[list[float]] = []
    first_step_s = 0.0
    last_end = previous_start = 0.0
    grads_total: list[float] = []
    for step in range(spec.warmup + spec.steps):
        if spec.fault is not None and spec.fault.rank == rank and spec.fault.step == step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        t0 = time.perf_counter()
        x, z = next_batch()
        t1 = time.perf_counter()
        grads = grads_fn(x, z)
        t2 = time.perf_counter()
        reduced = reduce_fn(grads) if spec.collectives else grads
        t3 = time.perf_counter()
        apply_fn(reduced)
        t4 = time.perf_counter()
        if step == 0:
            first_step_s = t4 - t0
        if step > spec.warmup:
            phases["idle"].append(t0 - last_end)
            step_s.append(t0 - previous_start)
        if step >= spec.warmup:
            phases["input"].append(t1 - t0)
            grads_total.append(t2 - t1)
            phases["allreduce"].append(t3 - t2)
            phases["optimizer"].append(t4 - t3)
            if step - spec.warmup < spec.checksums:
                checksums.append(replica_checksums())
        if step == spec.warmup - 1 or (spec.warmup == 0 and step == 0):
            for _ in range(3):  # probe: forward alone, then forward + backward, on this step's batch
                begun = time.perf_counter()
                forward_fn(x, z)
                middle = time.perf_counter()
                grads_fn(x, z)
                forward_s.append(middle - begun)
                both_s.append(time.perf_counter() - middle)
        previous_start, last_end = t0, t4
    if spec.collectives:
        reduce_fn(grads_fn(*next_batch()))  # a last collective: waiting for the slowest worker ends the last step
    end = time.perf_counter()
    phases["idle"].append(end - last_end)
    step_s.append(end - previous_start)
    share = min(float(np.median(forward_s) / np.median(both_s)), 1.0) if forward_s else 0.5
    phases["forward"] = [share * g for g in grads_total]
    phases["backward"] = [(1 - share) * g for g in grads_total]
    parameters = int(sum(np.prod(v.shape) for vs in variables for v in vs))
    report: dict[str, Any] = {
        "rank": rank,
        "phases": phases,
        "step_s": step_s,
        "first_step_s": first_step_s,
        "checksums": checksums,
        "allreduce_calls": 1,
        "allreduce_bucket_bytes": [4 * parameters],  # one batched all-reduce of every gradient
        "gradient_bytes": 4 * parameters,
        "parameters": parameters,
        "forward_split": f"probed: forward alone is {share:.0%} of forward + backward",
        "engine_version": f"tensorflow {tf.__version__}",
    }
    if rank == 0:
        report["validity"] = {**validity(), "untrained_distance": untrained["distance"]}  # type: ignore[index]
    return report


def facts_build(facts: Any, input_shape: Any, outputs: int, **extra: Any) -> Any:
    from xpubench.models.zoo import lookup

    entry, _ = lookup(facts.name)  # type: ignore[misc]
    return entry.build(tuple(input_shape), outputs, **{**facts.keywords, **extra})


def facts_metric(facts: Any) -> str:
    from xpubench.models.zoo import lookup

    entry, _ = lookup(facts.name)  # type: ignore[misc]
    return entry.metric


def mirrored(spec: TrainSpec) -> list[dict[str, Any]]:
    """MirroredStrategy over spec.workers logical CPU devices of this process: one report per replica
    (they share a clock: the breakdown is the process's, the checksums each replica's)."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * spec.workers)
    tf.config.threading.set_intra_op_parallelism_threads(spec.threads * spec.workers)
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(spec.workers)])
    report = train(spec, strategy, 0)
    table = list(zip(*report.pop("checksums"), strict=True)) if report["checksums"] else [[]] * spec.workers
    return [{**report, "rank": i, "checksums": list(table[i])} for i in range(spec.workers)]


def multiworker(spec: TrainSpec, rank: int) -> dict[str, Any]:
    """One process of a MultiWorkerMirroredStrategy group (TF_CONFIG set by the group): RING collectives
    with a time limit, so a peer that is gone fails the step instead of hanging it."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(spec.threads)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=spec.collective_timeout_s,
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    report = train(spec, strategy, rank)
    report["checksums"] = [row[0] for row in report["checksums"]]
    return report
