"""Plots of evaluation reports (PNG files, matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_report(report: dict[str, Any], out_prefix: Path) -> list[Path]:
    """Write ``<prefix>_classwise_sq.png`` (IoU per class) and ``<prefix>_stq_per_sequence.png``.

    Returns:
        the written paths.
    """
    dataset = report["dataset"]
    return [
        _bar_plot(
            report["IoU_per_class"],
            report["SQ"],
            "SQ",
            "IoU (%)",
            "#4477aa",
            f"{dataset}: class-wise SQ",
            out_prefix,
            "_classwise_sq.png",
        ),
        _bar_plot(
            report["STQ_per_seq"],
            report["STQ"],
            "STQ",
            "STQ (%)",
            "#228833",
            f"{dataset}: STQ per sequence",
            out_prefix,
            "_stq_per_sequence.png",
        ),
    ]


def _bar_plot(
    values: dict[str, float],
    mean: float,
    mean_name: str,
    ylabel: str,
    colour: str,
    title: str,
    out_prefix: Path,
    suffix: str,
) -> Path:
    """Bars of ``values`` (fractions, shown in %) with a dashed line at ``mean``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(values)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 3.5))
    ax.bar(range(len(names)), [100 * values[n] for n in names], color=colour)
    ax.axhline(100 * mean, color="#cc6677", linestyle="--", label=f"{mean_name} {100 * mean:.1f}")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = out_prefix.with_name(out_prefix.name + suffix)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
