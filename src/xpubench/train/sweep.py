"""A scaling request's cells, measured one by one through a launcher and stored as they come: each strategy's
1-worker cell first, so every other cell's efficiency is computed against it before it is stored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from xpubench.core.cell import CellResult
from xpubench.train.breakdown import efficiency
from xpubench.train.spec import TrainSpec
from xpubench.train.task import TrainCellTask, unavailable

if TYPE_CHECKING:
    from xpubench.run.launcher import Launcher
    from xpubench.store import ResultStore

Say = Callable[[str], None]


def specs_for(model: str, strategies: Sequence[str], workers: Sequence[int], scalings: Sequence[str],
              **settings: Any) -> list[TrainSpec]:
    """Every (strategy, scaling, workers) cell, one worker first (the baseline of its efficiency)."""
    counts = sorted(set(workers) | {1})
    return [TrainSpec(model, strategy, n, scaling, **settings)
            for strategy in strategies for scaling in scalings for n in counts]


def run_cells(specs: Sequence[TrainSpec], launcher: Launcher, store: ResultStore, run_id: str,
              timeout_s: float, say: Say) -> list[CellResult]:
    """Measure and store each cell; a cell that cannot run here is stored `unavailable` with its reason."""
    done: list[CellResult] = []
    baselines: dict[tuple[str, int], CellResult] = {}  # (strategy, global batch) -> the 1-worker cell
    for spec in specs:
        reason = unavailable(spec)
        info = None
        if reason is not None:
            result = CellResult.not_measured(spec.cell(), "unavailable", reason)
        elif spec.workers == 1 and (spec.strategy, spec.global_batch) in baselines:
            # One worker: weak and strong scaling are the same run; stored under both keys.
            first = baselines[(spec.strategy, spec.global_batch)]
            result = replace(first, cell=spec.cell(), scenario_result={**(first.scenario_result or {}),
                                                                        "scaling": spec.scaling},
                             warnings=(*first.warnings, "one worker: the same run as the weak-scaling cell"))
        else:
            say(f"training {spec.cell().key}")
            outcome = launcher.run(TrainCellTask(spec, timeout_s), timeout_s + 60, say)
            result = outcome.value if outcome.ok else CellResult.not_measured(spec.cell(), "failed",
                                                                               str(outcome.value))
            info = outcome.info
        if result.status == "ok" and result.scenario_result is not None:
            if spec.workers == 1:
                baselines.setdefault((spec.strategy, spec.global_batch), result)
            base = baselines.get((spec.strategy, spec.global_batch if spec.scaling == "strong" else spec.batch))
            if base is not None and base.scenario_result is not None:
                figures = {**result.scenario_result,
                           "efficiency": efficiency(result.scenario_result["samples_per_s"], spec.workers,
                                                    base.scenario_result["samples_per_s"]),
                           "efficiency_baseline": base.cell.key}
                figures["verdict"] = f"{figures['verdict']}, efficiency {figures['efficiency']:.0%}"
                result = replace(result, scenario_result=figures)
        store.add_cell(run_id, result, info.record() if info else {"affinity": None, "worker": None})
        done.append(result)
    return done
