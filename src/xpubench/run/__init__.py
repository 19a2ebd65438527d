"""Orchestration: a matrix of cells, the tasks that prepare and measure them, the launcher that runs each task
in an isolated worker, and the session that is one stored run's life.

The data flows one way: matrix -> session -> sweep -> launcher -> (worker) task -> cell runner -> store.
The launcher knows no task's insides; the tasks know no launcher.
"""
