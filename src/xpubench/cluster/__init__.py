"""Cells fanned out over a Dask cluster: `DaskLauncher` is a Launcher (xpubench.run.launcher) whose workers are
the cluster's; `connect("tcp://host:8786" | "local:N")` makes one."""

from xpubench.cluster.launcher import DaskLauncher, connect

__all__ = ["DaskLauncher", "connect"]
