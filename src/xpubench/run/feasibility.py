"""The one answer to "can this cell run here?": its scenario, its backend, the runtime and device, and a
converter chain to the artifact it loads. A cell that cannot gets its `unavailable` row and no worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xpubench.backends import get_backend
from xpubench.core.cell import Cell, CellResult
from xpubench.scenarios import unavailable_reason as scenario_unavailable

if TYPE_CHECKING:
    from xpubench.backends.base import Backend
    from xpubench.models import Workload


def artifact_kind(backend_cls: type[Backend], cell: Cell, workload: Workload) -> tuple[str | None, str | None]:
    """The artifact kind the cell loads: its backend's first that a converter chain reaches from the
    model's sources; (None, why) when there is none."""
    kinds = backend_cls.artifact_kinds(cell.precision, dict(cell.options))
    reasons = [workload.artifacts.reason(k) for k in kinds]
    if all(reasons):
        return None, reasons[0]
    return kinds[reasons.index(None)], None


def unavailable(cell: Cell, workload: Workload) -> CellResult | None:
    """The cell's `unavailable` row, with the reason, when it cannot run here; None when it can."""
    common: dict = {"dataset": workload.dataset}
    reason = scenario_unavailable(cell.scenario, cell.timing)
    if reason:
        return CellResult.not_measured(cell, "unavailable", reason, **common)
    try:
        backend_cls = get_backend(cell.backend)
    except KeyError as exc:
        return CellResult.not_measured(cell, "unavailable", str(exc.args[0]), **common)
    common["emulated"] = backend_cls.emulated
    reason = backend_cls.unavailable_reason(cell.device, cell.precision, dict(cell.options))
    if not reason and cell.timing == "compute" and not backend_cls.times_compute:
        reason = f"{cell.backend} cannot time compute apart from the input and output handover: use --timing end-to-end"
    if not reason:
        reason = artifact_kind(backend_cls, cell, workload)[1]
    return CellResult.not_measured(cell, "unavailable", str(reason), **common) if reason else None
