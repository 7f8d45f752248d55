"""Small inline SVG charts for the memory page: no JavaScript library, no network."""

from __future__ import annotations

from html import escape

import numpy as np

W, H, PAD = 520, 180, 34


def bars(labels: list[str], counts, title: str) -> str:
    """A bar chart: one bar per label, heights ∝ counts; each bar carries its count."""
    counts = np.asarray(counts, dtype=np.float64)
    n = max(len(counts), 1)
    top = counts.max() if len(counts) and counts.max() > 0 else 1.0
    bw = (W - 2 * PAD) / n
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
           f'<text x="{PAD}" y="14" class="chart-title">{escape(title)}</text>']
    for i, (label, c) in enumerate(zip(labels, counts)):
        h = (H - 2 * PAD) * c / top
        x, y = PAD + i * bw, H - PAD - h
        out.append(f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
                   f'data-count="{int(c)}"><title>{escape(label)}: {int(c):,}</title></rect>')
        if i % -(-n // 10) == 0:   # at most ten labels
            out.append(f'<text x="{x + bw / 2:.1f}" y="{H - PAD + 12}" class="tick">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def lines(t, series: dict[str, list[float]], title: str) -> str:
    """Line chart of several series over time ``t`` (seconds), each scaled to its own maximum."""
    t = np.asarray(t, dtype=np.float64)
    out = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
           f'<text x="{PAD}" y="14" class="chart-title">{escape(title)}</text>']
    if len(t) >= 2 and t[-1] > t[0]:
        for j, (name, ys) in enumerate(series.items()):
            ys = np.asarray(ys, dtype=np.float64)
            top = ys.max() if ys.max() > 0 else 1.0
            xs = PAD + (W - 2 * PAD) * (t - t[0]) / (t[-1] - t[0])
            yy = H - PAD - (H - 2 * PAD) * ys / top
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, yy))
            out.append(f'<polyline class="series s{j}" points="{pts}" />'
                       f'<text x="{W - PAD}" y="{30 + 14 * j}" class="legend s{j}">{escape(name)} '
                       f'(max {top:,.0f})</text>')
        out.append(f'<text x="{PAD}" y="{H - 8}" class="tick">last {t[-1] - t[0]:.0f} s</text>')
    else:
        out.append(f'<text x="{PAD}" y="{H / 2}" class="tick">collecting: the page samples while it runs</text>')
    out.append("</svg>")
    return "".join(out)
