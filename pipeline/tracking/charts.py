"""Learning curves of a trial as a PNG, drawn with Pillow: raw per-epoch values bold, a centred moving average faint.

Epochs are numbered from 1 on the x axis, as in the runs' metric steps and tags.

Pillow (a matplotlib dependency) rather than matplotlib: about 5 ms a figure instead of about
100 ms, which is paid once per trial (see `benchmarks/tracking_overhead.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def smooth_curve(points: list[float], window: int = 5) -> list[float]:
    """Centred moving average of a learning curve: each point the mean of the finite values within
    `window // 2` epochs either side (fewer at the ends). It does not lag behind a trend, as a trailing
    exponential average does, and stays within the raw values' range."""
    half = window // 2
    out: list[float] = []
    for i in range(len(points)):
        near = [p for p in points[max(0, i - half) : i + half + 1] if np.isfinite(p)]
        out.append(float(np.mean(near)) if near else float("nan"))
    return out


_COLORS = ((31, 119, 180), (255, 127, 14))  # training, validation (matplotlib's C0, C1)
_SCALE = 2  # drawn at twice the size, then halved: cheap anti-aliasing


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** np.floor(np.log10(raw))
    return float(next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw))


def _font(size: int):
    from PIL import ImageFont  # noqa: PLC0415

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _panel(draw, box, key, series, fonts) -> None:
    """One metric: bold raw per-epoch values (a dot each) and faint smoothed curves of training and validation."""
    s = _SCALE
    x0, y0, x1, y1 = box
    small, normal = fonts
    draw.text(((x0 + x1) // 2, y0 - 18 * s), key, fill="black", font=normal, anchor="mm")
    finite = [v for _, raw, smooth in series for v in (*raw, *smooth) if np.isfinite(v)]
    n = max((len(raw) for _, raw, _ in series), default=1)
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - (abs(lo) or 1) * 0.05, hi + (abs(hi) or 1) * 0.05
    step = _nice_step(hi - lo, 4)
    lo, hi = np.floor(lo / step) * step, np.ceil(hi / step) * step

    def px(i: float, v: float) -> tuple[float, float]:
        fx = (i - 1) / (n - 1) if n > 1 else 0.5
        return x0 + fx * (x1 - x0), y1 - (v - lo) / (hi - lo) * (y1 - y0)

    for k in range(int(round((hi - lo) / step)) + 1):
        v = lo + k * step
        _, y = px(1, v)
        draw.line([(x0, y), (x1, y)], fill=(225, 225, 225), width=s)
        draw.text((x0 - 6 * s, y), f"{v:.3g}", fill=(60, 60, 60), font=small, anchor="rm")
    xstep = max(1, int(_nice_step(max(n - 1, 1), 6)))
    for i in range(1, n + 1):
        if i == n or ((i - 1) % xstep == 0 and n - i >= xstep / 2):
            x, _ = px(i, lo)
            draw.line([(x, y1), (x, y1 + 4 * s)], fill=(60, 60, 60), width=s)
            draw.text((x, y1 + 6 * s), str(i), fill=(60, 60, 60), font=small, anchor="ma")
    draw.text(((x0 + x1) // 2, y1 + 20 * s), "epoch", fill="black", font=small, anchor="ma")
    draw.rectangle([x0, y0, x1, y1], outline=(90, 90, 90), width=s)
    for (_, raw, smooth), color in zip(series, _COLORS):
        faint = tuple(int(c + (255 - c) * 0.65) for c in color)
        for pts, width, fill in ((smooth, 1, faint), (raw, 2, color)):  # the raw values drawn last, on top
            xy = [px(i, v) for i, v in enumerate(pts, start=1 + (len(raw) - len(pts))) if np.isfinite(v)]
            if len(xy) > 1:
                draw.line(xy, fill=fill, width=width * s, joint="curve")
            if pts is raw and len(raw) < 30:
                for x, y in xy:
                    draw.ellipse([x - 3 * s, y - 3 * s, x + 3 * s, y + 3 * s], fill=color)
    ly = y0 + 8 * s
    width = max((draw.textlength(name, font=small) for name, _, _ in series), default=0)
    draw.rectangle([x1 - 126 * s, y0 + s, min(x1 - s, x1 - 90 * s + width), ly + 14 * s * len(series) - 6 * s],
                   fill="white")  # fmt: skip
    for (name, _, _), color in zip(series, _COLORS):
        draw.line([(x1 - 120 * s, ly), (x1 - 100 * s, ly)], fill=color, width=3 * s)
        draw.text((x1 - 95 * s, ly), name, fill="black", font=small, anchor="lm")
        ly += 14 * s


def plot_learning_curves(history: Mapping[str, list[float]], path: Path, title: str = "") -> Path:
    """Save raw and smoothed learning curves as a PNG: one panel per metric with its `val_` twin.

    The raw per-epoch values are the main line (bold, a dot per epoch when fewer than 30), epochs
    numbered from 1; `smooth_curve` (a centred moving average of 5 epochs) is a faint extra.

    Returns:
        `path`.
    """
    from PIL import Image, ImageDraw  # noqa: PLC0415

    s = _SCALE
    keys = [k for k in history if not k.startswith("val_") and history[k]]
    keys += [k for k in history if k.startswith("val_") and history[k] and k[4:] not in history]
    pw, ph, left, top, bottom = 400, 290, 64, 58, 44
    img = Image.new("RGB", (max(1, len(keys)) * pw * s, ph * s), "white")
    draw = ImageDraw.Draw(img)
    fonts = (_font(11 * s), _font(13 * s))
    note = "per epoch; faint: moving average of 5 epochs"
    draw.text((8 * s, 6 * s), f"{title}   {note}" if title else note, fill="black", font=fonts[1])
    for col, key in enumerate(keys):
        series = []
        for name in [key] if key.startswith("val_") else [key, f"val_{key}"]:
            raw = [float(v) for v in history.get(name, [])]
            if raw:
                series.append((name, raw, smooth_curve(raw)))
        box = (col * pw * s + left * s, top * s, (col + 1) * pw * s - 14 * s, (ph - bottom) * s)
        _panel(draw, box, key, series, fonts)
    img.reduce(s).save(path, optimize=False, compress_level=3)
    return path
