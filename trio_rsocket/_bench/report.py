"""The results and how they are shown: :class:`Row`, its medians and paired
ratios, the plain-text and reST tables, and the chart.
"""

from __future__ import annotations

import importlib
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .workloads import ANYIO, RAW, WORKLOADS, MissingPackageError, variant_title

# ----------------------------------------------------------------------
# The results
# ----------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: RSocket (one variant) beside the baselines."""

    workload: str
    title: str
    unit: str
    higher_is_better: bool
    samples: dict[str, list[float]]
    #: What one operation is, for ``server_cpu`` ("" where not measured).
    operation: str = ""
    #: The server process's CPU time per operation, in microseconds.
    server_cpu: dict[str, list[float]] = field(default_factory=dict)
    #: The client's (this process's) CPU time per operation, in microseconds,
    #: where the workload measures it.
    client_cpu: dict[str, list[float]] = field(default_factory=dict)
    #: Which variant of each implementation the samples are (where it has several).
    variants: dict[str, str] = field(default_factory=dict)
    #: Baselines that could not be measured, and why (``"not installed"``).
    missing: dict[str, str] = field(default_factory=dict)

    def median(self, impl: str) -> float:
        return _median(self.samples.get(impl, []))

    def ratio(self, baseline: str) -> float:
        """Median over repetitions of how many times better RSocket did than
        *baseline* (>1: RSocket ahead; for memory, it used less)."""
        return _paired_ratio(self.samples, baseline, self.higher_is_better)

    def cpu_median(self, impl: str) -> float:
        return _median(self.server_cpu.get(impl, []))

    def cpu_ratio(self, baseline: str) -> float:
        """How many times less CPU RSocket's server used per operation than *baseline*'s."""
        return _paired_ratio(self.server_cpu, baseline, higher_is_better=False)

    def client_cpu_median(self, impl: str) -> float:
        return _median(self.client_cpu.get(impl, []))

    def client_cpu_ratio(self, baseline: str) -> float:
        """How many times less CPU RSocket's client used per operation than *baseline*'s."""
        return _paired_ratio(self.client_cpu, baseline, higher_is_better=False)


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _paired_ratio(samples: dict[str, list[float]], baseline: str, higher_is_better: bool) -> float:
    ours, theirs = samples.get("rsocket", []), samples.get(baseline, [])
    return _paired_quotient(ours, theirs) if higher_is_better else _paired_quotient(theirs, ours)


def _paired_quotient(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    # Repetition i of each contender ran back to back, so their ratio is
    # taken pair by pair: slow drift of the machine cancels out.
    pairs = [a / b for a, b in zip(numerators, denominators, strict=False) if a > 0 and b > 0]
    return statistics.median(pairs) if pairs else math.nan


# ----------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------


def _figure(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 10 else f"{value:.2f}"


def _ratio(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}x"


def _header(rows: Sequence[Row]) -> tuple[str, ...]:
    header = ("workload", "unit", "RSocket")
    return header + tuple(cell for impl in _baselines(rows) for cell in (impl, f"vs {impl}"))


def _baselines(rows: Sequence[Row]) -> list[str]:
    """The baseline columns: trio and asyncio always; anyio and the raw
    reference where some row measured them (or says why it could not)."""
    optional = [impl for impl in (ANYIO, RAW) if any(row.samples.get(impl) or impl in row.missing for row in rows)]
    return ["trio", "asyncio", *optional]


def _cells(row: Row, impl: str, figure: float, ratio: float) -> tuple[str, str]:
    """A baseline's figure and RSocket's ratio to it, or why it is missing."""
    if impl in row.missing:
        return row.missing[impl], "n/a"
    return _figure(figure), _ratio(ratio)


def _figure_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    baselines = _baselines(rows)
    return [
        (
            row.title,
            row.unit,
            _figure(row.median("rsocket")),
            *(cell for impl in baselines for cell in _cells(row, impl, row.median(impl), row.ratio(impl))),
        )
        for row in rows
    ]


def _cpu_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    baselines = _baselines(rows)
    return [
        (
            row.title,
            f"us/{row.operation}",
            _figure(row.cpu_median("rsocket")),
            *(cell for impl in baselines for cell in _cells(row, impl, row.cpu_median(impl), row.cpu_ratio(impl))),
        )
        for row in rows
        if row.operation and any(row.server_cpu.values())
    ]


def _client_cpu_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    baselines = _baselines(rows)
    return [
        (
            row.title,
            f"us/{row.operation}",
            _figure(row.client_cpu_median("rsocket")),
            *(
                cell
                for impl in baselines
                for cell in _cells(row, impl, row.client_cpu_median(impl), row.client_cpu_ratio(impl))
            ),
        )
        for row in rows
        if row.operation and any(row.client_cpu.values())
    ]


#: The implementations of the variant comparisons, in their column order.
_COMPARED: Final = ("rsocket", "trio", "asyncio")
_COMPARISON_HEADER: Final = ("comparison", "unit", "RSocket", "trio", "asyncio")


def _comparison_cells(rows: Sequence[Row]) -> list[tuple[str, ...]]:
    """For each pair of variants a workload compares: the quotient of their
    figures, and of their client CPU time per operation, per implementation
    measured in both (the median of the per-repetition quotients)."""
    by_name = {row.workload: row for row in rows}
    lines: list[tuple[str, ...]] = []
    for workload in WORKLOADS:
        for variant, reference in workload.compare:
            ours, theirs = by_name.get(f"{workload.name}:{variant}"), by_name.get(f"{workload.name}:{reference}")
            if ours is None or theirs is None:
                continue
            both = [
                impl
                for impl in _COMPARED
                if ours.variants.get(impl) == variant and theirs.variants.get(impl) == reference
            ]
            title = f"{workload.title}: {variant_title(variant)} / {variant_title(reference)}"
            for label, unit, our_series, their_series in (
                ("", workload.unit, ours.samples, theirs.samples),
                (", client CPU", f"us/{workload.operation}", ours.client_cpu, theirs.client_cpu),
            ):
                quotients = {
                    impl: _paired_quotient(our_series.get(impl, []), their_series.get(impl, [])) for impl in both
                }
                if any(not math.isnan(value) for value in quotients.values()):
                    lines.append((title + label, unit, *(_ratio(quotients.get(impl, math.nan)) for impl in _COMPARED)))
    return lines


def _text_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([render(header), rule, *(render(cells) for cells in lines)])


def _rst_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    out = [".. list-table::", "   :header-rows: 1", ""]
    for cells in [header, *lines]:
        out.append(f"   * - {cells[0]}")
        out.extend(f"     - {cell}" for cell in cells[1:])
    return "\n".join(out)


_SERVER_CPU_TITLE: Final = "Server CPU time per operation (lower is better; ratio > 1: RSocket's server used less):"
_CLIENT_CPU_TITLE: Final = (
    "Client CPU time per operation, the sender's in the file transfer "
    "(lower is better; ratio > 1: RSocket's client used less):"
)
_COMPARISON_TITLE: Final = (
    "Variants compared: the first's figure (or CPU time) divided by the second's, each implementation against itself:"
)


def _sections(rows: Sequence[Row]) -> list[tuple[str, Sequence[str], list[tuple[str, ...]]]]:
    """The tables to show: (title, header, lines), the figures first."""
    header = _header(rows)
    sections = [
        ("", header, _figure_cells(rows)),
        (_SERVER_CPU_TITLE, header, _cpu_cells(rows)),
        (_CLIENT_CPU_TITLE, header, _client_cpu_cells(rows)),
        (_COMPARISON_TITLE, _COMPARISON_HEADER, _comparison_cells(rows)),
    ]
    return [section for section in sections if section[2]]


def format_table(rows: Sequence[Row]) -> str:
    """The results as plain-text tables: the figures, then the servers' and
    the clients' CPU time per operation where they were measured, then the
    variants that a workload compares with each other."""
    return "\n\n".join(
        (f"{title}\n\n" if title else "") + _text_table(header, lines) for title, header, lines in _sections(rows)
    )


def format_rst_table(rows: Sequence[Row]) -> str:
    """The results as reST ``list-table`` directives (for docs/performance.rst)."""
    return "\n\n".join(
        (f"{title}\n\n" if title else "") + _rst_table(header, lines) for title, header, lines in _sections(rows)
    )


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only, or :class:`MissingPackageError`
    saying how to install it."""
    try:
        matplotlib = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise MissingPackageError(
            "--chart needs matplotlib: pip install '.[bench]' in a clone of trio-rsocket, or pip install matplotlib"
        ) from None


def write_chart(rows: Sequence[Row], path: str) -> None:
    """A bar chart of the ratios (needs matplotlib: the ``bench`` extra)."""
    plt = pyplot()
    titles = [row.title for row in rows]
    positions = range(len(rows))
    height = 0.38
    figure, axes = plt.subplots(figsize=(8, 0.55 * len(rows) + 1.6), dpi=100)
    for offset, baseline, color in ((-height / 2, "trio", "#4878a8"), (height / 2, "asyncio", "#e0a030")):
        values = [row.ratio(baseline) for row in rows]
        axes.barh([p + offset for p in positions], values, height, label=f"RSocket / {baseline}", color=color)
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_yticks(list(positions), titles)
    axes.invert_yaxis()
    axes.set_xlabel("times better than the baseline (memory: times less); 1 = level")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
