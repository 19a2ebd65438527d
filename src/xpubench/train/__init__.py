"""Distributed-training cells: a zoo model trained by a real engine (tf.distribute, torch DDP) over 1..N workers,
its step broken down (forward, backward, all-reduce, optimizer, input wait, idle), its scaling efficiency, the
validity of what it learned, and a model of the ring all-reduce that predicts larger clusters."""
