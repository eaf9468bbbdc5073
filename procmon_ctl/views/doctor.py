"""`doctor`'s report as people read it: one line per check, PASS/WARN/FAIL/INFO, a
fix under each problem, and the counts; `doctor --json` prints the model itself."""

from __future__ import annotations

from .schema import DoctorReport
from .wrap import wrap

# The name column is as wide as the longest name up to this (CONFIG_DEBUG_INFO_BTF);
# a longer name has a line of its own, its detail below in the detail column, so one
# long name does not narrow every detail to half a terminal.
NAME_COLUMN_MAX = 21


def render_table(report: DoctorReport, width: int | None = None) -> str:
    """One line per check, and a fix under each FAIL and WARN.  With `width` (a
    terminal's) a long detail or fix is folded onto indented continuation lines at
    spaces rather than cut: a fix is there to be read whole."""
    names = [len(c.name) for c in report.checks if len(c.name) <= NAME_COLUMN_MAX]
    column = max(names, default=NAME_COLUMN_MAX)
    under = " " * (4 + 2 + column + 2)  # where details start
    lines = []
    for c in report.checks:
        if len(c.name) <= column:
            lines += wrap(c.detail, width, f"{c.status:<4}  {c.name:<{column}}  ", under)
        else:
            lines.append(f"{c.status:<4}  {c.name}")
            lines += wrap(c.detail, width, under)
        if c.fix and c.status in ("FAIL", "WARN"):
            lines += wrap(c.fix, width, f"{under}fix: ", f"{under}     ")
    counts = {s: sum(c.status == s for c in report.checks) for s in ("PASS", "WARN", "FAIL")}
    lines.append(f"{counts['PASS']} passed, {counts['WARN']} warnings, {counts['FAIL']} failed")
    return "\n".join(lines)
