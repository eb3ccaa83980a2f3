"""Small inline SVG charts for the report page: no JavaScript, no network, no plotting library.

`chart` draws one panel: points (`Point`), lines and shaded horizontal bands on linear or log10
axes with ticks, axis labels and a legend. Every text is escaped. Pure functions: data in, SVG text out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

W, H = 420, 260
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 36, 40
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
SHAPES = ("circle", "square", "triangle")


@dataclass(frozen=True)
class Point:
    """A marker at (`x`, `y`) of series `series` (colour and shape); `hollow` for a lesser kind (pruned);
    `label` is its tooltip."""

    x: float
    y: float
    series: int = 0
    hollow: bool = False
    label: str = ""


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10.0**e for e in range(math.floor(lo), math.ceil(hi) + 1) if lo - 1e-9 <= e <= hi + 1e-9]
    raw = (hi - lo) / 4 or 1.0
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _span(values: list[float], log: bool) -> tuple[float, float]:
    vs = [math.log10(v) if log else v for v in values if math.isfinite(v) and (v > 0 or not log)]
    if not vs:
        return 0.0, 1.0
    lo, hi = min(vs), max(vs)
    pad = (hi - lo) * 0.06 or (abs(lo) * 0.1 or 0.5)
    return lo - pad, hi + pad


def _marker(shape: str, x: float, y: float, colour: str, hollow: bool, label: str) -> str:
    """One marker with its tooltip: a circle, square or triangle, filled unless `hollow`."""
    style = f'fill="{"none" if hollow else colour}" stroke="{colour}" stroke-width="1.3"'
    tip = f"<title>{escape(label)}</title>"
    if shape == "square":
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" {style}>{tip}</rect>'
    if shape == "triangle":
        pts = f"{x:.1f},{y - 4.5:.1f} {x - 4:.1f},{y + 3.5:.1f} {x + 4:.1f},{y + 3.5:.1f}"
        return f'<polygon points="{pts}" {style}>{tip}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.8" {style}>{tip}</circle>'


def chart(
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    points: list[Point] = (),
    lines: dict[str, list[float]] | None = None,
    bands: list[tuple[float, float, float, float, int]] = (),
    series: list[str] = (),
    xlog: bool = False,
    ylog: bool = False,
    css_class: str = "chart",
) -> str:
    """One SVG panel. `lines`: name -> y values at x = 1, 2, ...; `bands`: (x0, x1, y0, y1, series) rectangles
    (a round's trials and its search range); `series`: legend names of the series indices."""
    lines = lines or {}
    xs = (
        [p.x for p in points]
        + [v for b in bands for v in b[:2]]
        + [float(i + 1) for ys in lines.values() for i in range(len(ys))]
    )
    ys_all = [p.y for p in points] + [v for b in bands for v in b[2:4]] + [y for ys in lines.values() for y in ys]
    (x0, x1), (y0, y1) = _span(xs, xlog), _span(ys_all, ylog)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(v: float) -> float:
        return LEFT + ((math.log10(v) if xlog else v) - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return TOP + ph - ((math.log10(v) if ylog else v) - y0) / (y1 - y0) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="{css_class}" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" role="img"><title>{escape(title)}</title>',
           f'<text x="{W / 2}" y="15" text-anchor="middle" class="t">{escape(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']  # fmt: skip
    for bx0, bx1, by0, by1, s in bands:
        top, bottom = sy(max(by0, by1)), sy(min(by0, by1))
        size = f'width="{max(sx(bx1) - sx(bx0), 1):.1f}" height="{max(bottom - top, 1):.1f}"'
        out.append(f'<rect x="{sx(bx0):.1f}" y="{top:.1f}" {size} fill="{PALETTE[s % len(PALETTE)]}" opacity="0.12"/>')
    for axis, (lo, hi), log in (("x", (x0, x1), xlog), ("y", (y0, y1), ylog)):
        for t in _ticks(lo, hi, log):
            label = f"{t:.0e}" if log else f"{t:.4g}"
            if axis == "x":
                out.append(f'<text x="{sx(t):.1f}" y="{TOP + ph + 14}" text-anchor="middle" class="k">{label}</text>')
            else:
                out.append(f'<text x="{LEFT - 4}" y="{sy(t) + 3:.1f}" text-anchor="end" class="k">{label}</text>')
                out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eee"/>')
    for i, (name, ys) in enumerate(lines.items()):
        pts = " ".join(f"{sx(j + 1):.1f},{sy(y):.1f}" for j, y in enumerate(ys))
        dash = ' stroke-dasharray="4 3"' if name.startswith("val_") else ""
        colour = PALETTE[(i // 2) % len(PALETTE)] if len(lines) > 1 else PALETTE[0]
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}>'
                   f"<title>{escape(name)}</title></polyline>")  # fmt: skip
    for p in points:
        colour = PALETTE[p.series % len(PALETTE)]
        out.append(_marker(SHAPES[p.series % len(SHAPES)], sx(p.x), sy(p.y), colour, p.hollow, p.label))
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 6}" text-anchor="middle" class="a">{escape(xlabel)}</text>')
    out.append(f'<text transform="translate(12 {TOP + ph / 2}) rotate(-90)" text-anchor="middle" '
               f'class="a">{escape(ylabel)}</text>')  # fmt: skip
    names = list(series) or list(lines)
    for i, name in enumerate(names):
        colour = PALETTE[(i // 2 if lines and not series else i) % len(PALETTE)]
        dash = ' stroke-dasharray="4 3"' if lines and not series and name.startswith("val_") else ""
        x, y = LEFT + 84 * i, TOP - 6  # one legend row between the title and the plot
        out.append(f'<line x1="{x}" x2="{x + 14}" y1="{y - 3}" y2="{y - 3}" stroke="{colour}" '
                   f'stroke-width="2"{dash}/><text x="{x + 18}" y="{y}" class="k">{escape(name)}</text>')  # fmt: skip
    out.append("</svg>")
    return "\n".join(out)
