"""`xpubench study sonic --quick` as a user runs it: a real server, a real load, a real store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_metrics_doc import defined, fields
from tests.test_study import row
from xpubench.store import ResultStore

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("uvicorn")


def test_quick_study_stores_both_kinds_of_cells_prints_its_tables_and_stops_its_servers(tmp_path: Path):
    results, out = tmp_path / "r", tmp_path / "sonic.json"
    done = run_cli("study", "sonic", "--quick", "--results", str(results), "--json", str(out), timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    with ResultStore(results, create=False) as store:
        in_process = store.cells(found["in_process_run"])
        loads = {policy: store.cells(run_id) for policy, (run_id,) in found["load_runs"].items()}  # one round
    assert sorted(r["batch_size"] for r in in_process) == [1, 8, 32]
    assert all(r["status"] == "ok" and r["scenario"] == "single-stream" for r in in_process)
    assert set(loads) == {"dynamic", "none"}
    for policy, records in loads.items():
        assert [r["scenario_result"]["concurrency"] for r in records] == [1, 4, 8]
        assert all(r["status"] == "ok" and r["scenario"] == "load" and r["model"] == "facile" for r in records)
        config = records[0]["scenario_result"]["server_config"]
        assert config["max_batch_size"] == (32 if policy == "dynamic" else 1)
        if len(os.sched_getaffinity(0)) > 1:  # the server on half the CPUs, its clients on the other half
            assert all(r["scenario_result"]["client_cpus"] for r in records)
    assert all(r["scenario_result"]["server"]["avg_batch"] == 1 for r in loads["none"])
    missing = sorted(set().union(*(fields(r) for r in in_process + loads["dynamic"])) - defined())
    assert not missing, f"fields stored but not defined in docs/metrics.md: {missing}"

    text = done.stdout
    assert row(text, "in each client (CPU) [ms]")[2] == "16 ms"  # SONIC's FACILE beside ours
    assert float(row(text, "in each client (CPU) [ms]")[1]) > 0 and float(row(text, "as a service [ms]")[1]) > 0
    for label in ("t_GPU = front + S(1) [ms]", "t_latency [ms]", "saturation: clients per instance",
                  "server capacity [req/s]", "the clients' own limit [req/s]"):
        assert len(row(text, label)) == 4, label
    assert row(text, "saturation: clients per instance")[3] == "68 CPU processes per T4"
    assert [row(text, str(n))[0] for n in (1, 4, 8)] == ["1", "4", "8"] and "batching gain" in text
    errors = row(text, "held-out error (largest)")[1:3]
    assert all(e.endswith("%") for e in errors), errors  # N=4 was held out of each fit
    assert "held out N=4" in text
    fits = found["models"][0]["fits"]
    assert fits["dynamic"]["held_out"][0]["clients"] == 4 and fits["none"]["max_batch"] == 1

    # The servers were workers of the study's launcher: none is left once it returned.
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    serving = []
    for pid in pids:
        try:
            environ = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        ppid = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:"))
        if b"xpubench.run.worker" in environ and ppid == os.getpid():
            serving.append(pid)
    assert not serving
    for port_line in (line for line in done.stderr.splitlines() if "serving facile on http://" in line):
        port = int(port_line.split("http://127.0.0.1:")[1].split()[0])
        import socket

        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"a server still listens on {port}"
