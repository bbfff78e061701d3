"""The benchmark runs end to end (a smoke test: no figure is checked for speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from trio_rsocket._bench import IMPLEMENTATIONS, Row, format_table

# Far more than the smoke run takes; only a hang should ever reach it.
TIMEOUT = 180


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_rsocket._bench", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_quick_run_measures_every_implementation(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = run_bench("--quick", "--repeat", "1", "--only", "echo", "accept", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "64-byte echo, 1 connection" in result.stdout
    assert "sequential accepts" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [row["workload"] for row in rows] == ["echo", "accept"]
    for row in rows:
        assert sorted(row["samples"]) == sorted(IMPLEMENTATIONS)
        assert all(len(figures) == 1 and figures[0] > 0 for figures in row["samples"].values())


def test_load_shows_saved_results_without_measuring(tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    row = Row("echo", "64-byte echo, 1 connection", "round trips/s", True, {"rsocket": [30.0], "trio": [20.0]})
    environment = {
        "python": "3",
        "trio": "0",
        "platform": "test",
        "cpus": 2,
        "settings": {
            "bulk_bytes": 2**20,
            "tls_bulk_bytes": 2**20,
            "seconds": 1,
            "repeat": 1,
            "concurrent": 100,
            "idle_connections": 10,
        },
        "fd_limit": {"before": 1024, "now": 1024, "hard": 1024},
    }
    saved.write_text(json.dumps({"environment": environment, "rows": [asdict(row)]}))
    result = run_bench("--load", str(saved))
    assert result.returncode == 0, result.stderr
    assert "1.50x" in result.stdout


def test_memory_ratio_counts_less_as_better() -> None:
    row = Row("idle", "idle connections, memory", "KiB/connection", False, {"rsocket": [4.0], "trio": [6.0]})
    assert row.ratio("trio") == 1.5
    assert "1.50x" in format_table([row])


def test_unknown_workload_is_a_usage_error() -> None:
    result = run_bench("--only", "nonsense")
    assert result.returncode == 2
    assert "nonsense" in result.stderr
