"""Plain-text tables of metric results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def classwise_table(
    iou_per_class: npt.ArrayLike,
    class_names: Sequence[str],
    *,
    header: str = "SQ",
    digits: int = 1,
) -> str:
    """Markdown table of per-class scores (in percent) with their mean as the last row.

    One row per class, like the class-wise SQ table of the paper (Table 12)::

        | Class | SQ |
        |:--|--:|
        | road | 95.1 |
        ...
        | mean | 60.2 |

    Args:
        iou_per_class: ``float[C]`` scores in ``[0, 1]``, e.g. ``STQuality.result()["IoU_per_class"]``.
            NaN marks a class to leave out: shown as ``-`` and excluded from the mean.
        class_names: ``C`` names.
        header: title of the score column.
        digits: decimals of the percentages.

    Returns:
        The table, lines joined by ``"\\n"`` (no trailing newline).

    Raises:
        ValueError: if the lengths differ or ``digits`` is negative.
    """
    scores = np.asarray(iou_per_class, dtype=np.float64).reshape(-1)
    if len(scores) != len(class_names):
        raise ValueError(
            f"iou_per_class has {len(scores)} entries but class_names has {len(class_names)}"
        )
    if digits < 0:
        raise ValueError(f"digits must be >= 0, got {digits}")
    lines = [f"| Class | {header} |", "|:--|--:|"]
    for name, value in zip(class_names, scores.tolist(), strict=True):
        cell = "-" if np.isnan(value) else f"{100.0 * value:.{digits}f}"
        lines.append(f"| {name} | {cell} |")
    finite = scores[~np.isnan(scores)]
    mean = f"{100.0 * float(finite.mean()):.{digits}f}" if finite.size else "-"
    lines.append(f"| mean | {mean} |")
    return "\n".join(lines)


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[object]], *, left: int = 1, digits: int = 3
) -> str:
    """Plain-text table of benchmark results, as the benchmarks print them.

    Args:
        header: column titles.
        rows: cells; floats get ``digits`` decimals, None prints as ``-``, others as ``str``.
        left: how many leading columns are left-aligned (the rest are right-aligned).
        digits: decimals of float cells.

    Returns:
        Header, a dashed rule and the rows, lines joined by ``"\\n"`` (no trailing newline).
    """

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    cells = [[cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i < left else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, cells)])


def verdict(ok: bool) -> str:
    """``"PASS"`` or ``"MISS"`` for a benchmark target."""
    return "PASS" if ok else "MISS"
