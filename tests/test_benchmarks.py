"""The measurement scripts of ``benchmarks/`` (docs/performance.rst,
"Workers") still run against the library: they use the bench's private
client (``trio_rsocket._bench``) and ``run(..., workers=N)``, so a change to
either shows up here rather than when someone next measures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
PATIENCE = 120.0


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )


def test_the_workers_echo_script_measures_two_workers_with_the_bench_client() -> None:
    done = run_script("workers_echo.py", "--repeat", "1", "--seconds", "0.05", "--workers", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    measured = [line for line in lines if line.startswith("  rep 1 workers=2: ")]
    assert len(measured) == 1
    # The workers reported every one of the 100 measured connections.
    spread = measured[0].split("connections per worker [")[1].split("]")[0]
    assert sum(int(count) for count in spread.split(", ")) == 100
    assert any(line.startswith("workers=2: median ") for line in lines)


def test_the_rolling_restart_script_parses_its_options() -> None:
    done = run_script("rolling_restart.py", "--help")
    assert done.returncode == 0, done.stderr
    assert "--connections" in done.stdout
    assert "--hups" in done.stdout
