"""The one answer to "can this cell run here?": its scenario, its backend, the runtime and device, and a
converter chain to the artifact it loads. A cell that cannot gets its `unavailable` row and no worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xpubench.backends import get_backend
from xpubench.core.cell import Cell, CellResult
from xpubench.hetero.spec import SplitSpec, is_split
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
    if is_split(cell):
        reason = split_unavailable(cell, workload)
        return CellResult.not_measured(cell, "unavailable", reason, **common) if reason else None
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


def split_unavailable(cell: Cell, workload: Workload) -> str | None:
    """Why a split cannot run here: its scenario, a part's own reason (data-parallel: each part loads the whole
    model, so its artifact too), or a pipeline's cut that this model does not have; None when it can."""
    if cell.scenario != "single-stream" or cell.timing != "end-to-end":
        return "a split is measured single-stream and end-to-end: use --scenario single-stream --timing end-to-end"
    spec = SplitSpec.of_cell(cell)
    for part, one in zip(spec.parts, spec.part_cells(cell), strict=True):
        try:
            backend_cls = get_backend(part.backend)
        except KeyError as exc:
            return f"part {part.spec}: {exc.args[0]}"
        reason = backend_cls.unavailable_reason(part.device, part.precision, dict(part.options))
        if not reason and spec.mode == "data":
            reason = artifact_kind(backend_cls, one, workload)[1]
        if reason:
            return f"part {part.spec}: {reason}"
    if spec.mode == "pipeline":
        reason = workload.artifacts.reason("onnx:fp32")
        if reason:
            return f"a pipeline cuts the ONNX graph: {reason}"
        import onnx

        from xpubench.hetero.cuts import check_cuts

        try:  # a cut this model has not (a typo, a skip connection) is this cell's answer, not the request's
            check_cuts(onnx.load(str(workload.artifact("onnx:fp32")), load_external_data=False), list(spec.cuts))
        except ValueError as exc:
            return str(exc)
    return None
