"""Execution split across unlike devices: ONNX cut points, composite backends (data-parallel, layer pipeline),
the planner that places segments on devices, and the measurement of a split as a stored cell.

A *part* is one (backend, device, precision, CPUs); a composite runs each part in a native thread pinned to
its own CPUs (or, for data-parallel, in a process of its own with shared memory), so two CPU runtimes on
separate cores stand in for two accelerators.
"""
