"""The report's recall@K plot: entity recall and pseudo-recall over K, as a base64 PNG drawn
with matplotlib's Agg canvas (no display, no global pyplot state)."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

_RECALL_KEY = re.compile(r"^recall@(\d+)$")


def recall_curve(values: Any) -> tuple[list[int], list[float]]:
    if not isinstance(values, dict):
        return [], []
    points = []
    for key, value in values.items():
        match = _RECALL_KEY.match(str(key))
        if match and isinstance(value, int | float):
            points.append((int(match.group(1)), float(value)))
    points.sort()
    return [k for k, _ in points], [v for _, v in points]


def recall_plot_png(retrieval: dict[str, Any]) -> str | None:
    """Entity recall and pseudo-recall over K as a base64 PNG; None without any recall@K."""
    curves = {
        "entity recall": recall_curve(retrieval.get("entity_recall")),
        "pseudo-recall": recall_curve(retrieval.get("pseudo_recall")),
    }
    curves = {name: c for name, c in curves.items() if c[0]}
    if not curves:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    top = 1.0
    for name, (ks, values) in curves.items():
        ax.plot(ks, values, marker="o", label=name)
        top = max(top, *values)
    all_ks = sorted({k for ks, _ in curves.values() for k in ks})
    if all_ks[-1] / all_ks[0] >= 20:
        ax.set_xscale("log")
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set_ylim(0, 100 if top > 1.0 else 1.0)
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
