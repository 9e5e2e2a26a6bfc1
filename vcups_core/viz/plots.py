"""Plots of evaluation reports (PNG files, matplotlib's Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_report(report: dict[str, Any], out_prefix: Path) -> list[Path]:
    """Write ``<prefix>_classwise_sq.png`` (IoU per class) and ``<prefix>_stq_per_sequence.png``.

    Returns:
        the written paths.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    names = list(report["IoU_per_class"])
    values = [100 * report["IoU_per_class"][n] for n in names]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names)), 3.5))
    ax.bar(range(len(names)), values, color="#4477aa")
    ax.axhline(
        100 * report["SQ"], color="#cc6677", linestyle="--", label=f"SQ {100 * report['SQ']:.1f}"
    )
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{report['dataset']}: class-wise SQ")
    ax.legend()
    fig.tight_layout()
    path = out_prefix.with_name(out_prefix.name + "_classwise_sq.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    seqs = list(report["STQ_per_seq"])
    fig, ax = plt.subplots(figsize=(max(6, 0.4 * len(seqs)), 3.5))
    ax.bar(range(len(seqs)), [100 * report["STQ_per_seq"][s] for s in seqs], color="#228833")
    ax.axhline(
        100 * report["STQ"], color="#cc6677", linestyle="--", label=f"STQ {100 * report['STQ']:.1f}"
    )
    ax.set_xticks(range(len(seqs)), seqs, rotation=60, ha="right")
    ax.set_ylabel("STQ (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{report['dataset']}: STQ per sequence")
    ax.legend()
    fig.tight_layout()
    path = out_prefix.with_name(out_prefix.name + "_stq_per_sequence.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written
