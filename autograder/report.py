"""The class report: score distribution per exercise (a figure) and the flags (a table)."""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path


def write_report(out: Path, results: list[dict]) -> Path:
    """Write ``report.png`` and ``report.html`` in ``out``; return the HTML's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autograder.sandbox import isolation_available

    out = Path(out)
    per_cell: dict[str, list[float]] = {}
    for r in results:
        for _nb, grades in sorted(r["grades"].items()):
            for gid, g in grades.items():
                if g["max_score"] and not g["needs_manual"]:
                    key = f"{r['assignment']}/{gid}"
                    per_cell.setdefault(key, []).append(g["score"] / g["max_score"])
    names = sorted(per_cell)
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(names) + 1)))
    if names:
        ax.boxplot([per_cell[n] for n in names], orientation="horizontal", tick_labels=names)
        for i, n in enumerate(names, start=1):
            ax.plot(per_cell[n], [i] * len(per_cell[n]), "o", alpha=0.3, color="C0")
    ax.set_xlabel("fraction of the exercise's points earned")
    ax.set_xlim(-0.05, 1.05)
    ax.set_title(f"Scores per autograded exercise ({len(results)} submissions)")
    fig.tight_layout()
    fig.savefig(out / "report.png", dpi=100)
    plt.close(fig)

    counts = Counter(f for r in results for f in r["flags"])
    flagged = [r for r in results if r["flags"]]
    rows = "\n".join(
        f"<tr><td>{html.escape(r['student'])}</td><td>{html.escape(r['assignment'])}</td>"
        f"<td>{r['score']:g} / {r['max_score']:g}</td>"
        f"<td>{html.escape(', '.join(r['flags']))}</td></tr>"
        for r in flagged
    )
    summary = "".join(f"<li>{html.escape(f)}: {n}</li>" for f, n in sorted(counts.items()))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Grading report</title></head><body>
<h1>Grading report</h1>
<p>{len(results)} submissions graded. Kernel sandbox: {html.escape(isolation_available()[1])}.</p>
<img src="report.png" alt="score distribution per exercise">
<h2>Flags</h2><ul>{summary or "<li>none</li>"}</ul>
<table border="1"><tr><th>student</th><th>assignment</th><th>score</th><th>flags</th></tr>
{rows}
</table></body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
