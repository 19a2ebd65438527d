"""What a cell's task needs of the worker that runs it: the resource its device is (a cluster's workers declare
these names, e.g. `dask worker ... --resources "gpu=1,edgetpu=1"`)."""

from __future__ import annotations

from collections import Counter

from xpubench.core.cell import Cell
from xpubench.hetero.spec import SplitSpec, is_split

# A device kind -> the worker resource it takes, one per task; devices not named here (cpu, the emulated
# ones) need none.
DEVICE_RESOURCES = {"cuda": "gpu", "edgetpu": "edgetpu"}


def resources_for(device: str) -> dict[str, float]:
    """`cuda:0` -> {"gpu": 1}; `cpu` -> {}."""
    name = DEVICE_RESOURCES.get(device.split(":")[0])
    return {name: 1} if name else {}


def resources_for_cell(cell: Cell) -> dict[str, float]:
    """The cell's device's resources; a split's, those of every part (two cuda parts take two GPUs)."""
    if not is_split(cell):
        return resources_for(cell.device)
    found: Counter[str] = Counter()
    for part in SplitSpec.of_cell(cell).parts:
        found.update(resources_for(part.device))
    return dict(found)
