"""Plain-text tables of benchmark results."""

from __future__ import annotations


def test_text_table_aligns_and_formats_cells() -> None:
    from vcups_core.metrics.tables import text_table, verdict

    table = text_table(["name", "J", "n"], [["car", 0.5, 3], ["scooter-black", None, 12]])
    assert table.splitlines() == [
        "name               J   n",
        "-------------  -----  --",
        "car            0.500   3",
        "scooter-black      -  12",
    ]
    two_left = text_table(["a", "b", "c"], [["x", "y", 1.25]], left=2, digits=1)
    assert two_left.splitlines()[2] == "x  y  1.2"
    assert (verdict(True), verdict(False)) == ("PASS", "MISS")
