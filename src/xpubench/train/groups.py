"""Starting a group of training worker processes and owning their lives: torchrun for torch DDP, and the
TF_CONFIG worker group for MultiWorkerMirroredStrategy. A worker that dies ends the group at once (its peers
would wait in a collective): the cell fails with the dead worker's reason, never hangs."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xpubench.run.ports import free_ports
from xpubench.train.spec import TrainSpec

Say = Callable[[str], None]
_TAIL = 4000


class TrainingFailed(Exception):
    """The worker group broke (a worker died, a collective timed out): the message is the reason."""


def _read_reports(folder: Path, workers: int) -> list[dict[str, Any]]:
    reports = [json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))]
    if len(reports) != workers:
        raise TrainingFailed(f"{workers - len(reports)} of {workers} workers ended without their figures")
    return reports


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _death(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


def run_group(spec: TrainSpec, timeout_s: float, say: Say) -> list[dict[str, Any]]:
    """`spec`'s training in fresh processes: torchrun's workers, or TensorFlow's (one process for Mirrored); the
    workers' reports, or TrainingFailed."""
    return run_torchrun(spec, timeout_s, say) if spec.strategy == "torch-ddp" else run_tf_workers(spec, timeout_s, say)


def run_torchrun(spec: TrainSpec, timeout_s: float, say: Say) -> list[dict[str, Any]]:
    """torch DDP over spec.workers processes started by torchrun (--standalone: its own rendezvous on
    127.0.0.1); torchrun's agent watches them and, with no restarts, ends the group when one fails."""
    with tempfile.TemporaryDirectory(prefix="xpubench-ddp-") as folder:
        spec_file = Path(folder) / "spec.pkl"
        spec_file.write_bytes(pickle.dumps(spec))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                   "--nproc-per-node", str(spec.workers), "--max-restarts", "0", "--monitor-interval", "0.5",
                   "-m", "xpubench.train.torch_worker", str(spec_file), folder]
        env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads), "PYTHONUNBUFFERED": "1"}
        say(f"{spec.cell().key}: torchrun, {spec.workers} worker(s)")
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise TrainingFailed(f"torchrun's workers did not finish within {timeout_s:g} s") from None
        finally:
            _kill_group(proc)
        if proc.returncode != 0:
            raise TrainingFailed(f"torchrun {_death(proc.returncode)}: {_torchrun_cause(output)}")
        return _read_reports(Path(folder), spec.workers)


def _torchrun_cause(output: str) -> str:
    """The root cause torchrun's agent reports (the first failed rank, its exit code and signal), or the last
    line. Its other failures are the peers it stopped (SIGTERM) because of that one."""
    lines = [line.strip() for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("Root Cause")), None)
    found: dict[str, str] = {}
    for line in lines[start:] if start is not None else []:
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("rank", "exitcode", "traceback") and key.strip() not in found:
            found[key.strip()] = value.strip()
    if "rank" in found and "exitcode" in found:
        signal_text = f" ({found['traceback']})" if found.get("traceback", "").startswith("Signal") else ""
        return f"worker rank {found['rank']} failed with exit code {found['exitcode']}{signal_text}"
    return _tail(output)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(5)


def run_tf_workers(spec: TrainSpec, timeout_s: float, say: Say) -> list[dict[str, Any]]:
    """MultiWorkerMirroredStrategy over spec.workers processes, each told its place by TF_CONFIG (127.0.0.1
    ports); or MirroredStrategy's replicas in one fresh process (its logical devices are set before TensorFlow
    starts). This group watches them like torchrun: the first that dies ends the others."""
    one_process = spec.strategy == "tf-mirrored"
    with tempfile.TemporaryDirectory(prefix="xpubench-mwms-") as folder:
        spec_file = Path(folder) / "spec.pkl"
        spec_file.write_bytes(pickle.dumps(spec))
        hosts = [] if one_process else [f"127.0.0.1:{p}" for p in free_ports(spec.workers)]
        say(f"{spec.cell().key}: " + (f"{spec.workers} replica(s) in one TensorFlow process" if one_process
                                      else f"{spec.workers} TensorFlow worker(s) on {', '.join(hosts)}"))
        procs = []
        for index in range(1 if one_process else spec.workers):
            config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": str(spec.threads),
                   **({} if one_process else {"TF_CONFIG": json.dumps(config)})}
            log = open(Path(folder) / f"worker{index}.log", "w")  # noqa: SIM115 - closed with the group
            procs.append((subprocess.Popen([sys.executable, "-m", "xpubench.train.tf_worker", str(spec_file), folder],
                                           stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True),
                          log))
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                codes = [p.poll() for p, _ in procs]
                failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
                if failed:
                    index, code = failed[0]
                    last = _tail((Path(folder) / f"worker{index}.log").read_text(errors="replace"))
                    raise TrainingFailed(f"TensorFlow worker {index} {_death(code)}"
                                         + (f"; its last output: {last}" if last else ""))
                if all(c == 0 for c in codes):
                    return _read_reports(Path(folder), spec.workers)
                if time.monotonic() > deadline:
                    raise TrainingFailed(f"the TensorFlow workers did not finish within {timeout_s:g} s")
                time.sleep(0.2)
        finally:
            for proc, log in procs:
                _kill_group(proc)
                log.close()
