"""Small inline SVG charts drawn here, so the HTML needs no script and the PDF stays byte-for-byte
the same for the same figures (every coordinate is written with fixed decimals)."""

from __future__ import annotations

from html import escape

WIDTH = 640
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'
COLOURS = ("#1f4e79", "#6fa8dc", "#e69138", "#93c47d")


def _n(value: float) -> str:
    return f"{value:.1f}"


def _svg(height: float, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {_n(height)}" '
        f'width="{WIDTH}" height="{_n(height)}" role="img" aria-label="{escape(title)}">'
        + "".join(body) + "</svg>"
    )


def _legend(series: list[tuple[str, list[int]]], y: float) -> list[str]:
    parts, x = [], 10.0
    for i, (label, _) in enumerate(series):
        parts.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="12" height="12" fill="{COLOURS[i]}"/>')
        parts.append(f'<text x="{_n(x + 17)}" y="{_n(y + 10)}" {FONT} font-size="11">{escape(label)}</text>')
        x += 30 + 7 * len(label)
    return parts


TICKS = 5


def _scale_top(values: list[float]) -> float:
    """The smallest round top (5 steps of 1, 2 or 5 times a power of ten) at or above the values."""
    top, unit = max(values, default=0) or 1, 1
    while True:
        for step in (unit, 2 * unit, 5 * unit):
            if step * TICKS >= top:
                return float(step * TICKS)
        unit *= 10


def stacked_rows(labels: list[str], series: list[tuple[str, list[int]]], title: str) -> str:
    """One horizontal stacked bar per label (divisions), the series side by side in each."""
    left, row, top = 300.0, 22.0, 26.0
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    scale = (WIDTH - left - 40) / _scale_top(totals)
    body = _legend(series, 4)
    for i, label in enumerate(labels):
        y = top + i * row
        body.append(f'<text x="{_n(left - 6)}" y="{_n(y + 14)}" text-anchor="end" {FONT} '
                    f'font-size="10">{escape(label)}</text>')
        x = left
        for s, (_, values) in enumerate(series):
            width = values[i] * scale
            if width:
                body.append(f'<rect x="{_n(x)}" y="{_n(y + 3)}" width="{_n(width)}" height="{_n(row - 6)}" '
                            f'fill="{COLOURS[s]}"/>')
            x += width
        body.append(f'<text x="{_n(x + 4)}" y="{_n(y + 14)}" {FONT} font-size="10">{totals[i]}</text>')
    body.append(f'<line x1="{_n(left)}" y1="{_n(top)}" x2="{_n(left)}" y2="{_n(top + row * len(labels))}" '
                'stroke="#444" stroke-width="1"/>')
    return _svg(top + row * len(labels) + 6, body, title)


def _axis(bottom: float, height: float, top_value: float, left: float, unit: str) -> list[str]:
    parts = []
    for k in range(TICKS + 1):
        value = top_value * k / TICKS
        y = bottom - height * k / TICKS
        parts.append(f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(WIDTH - 10)}" y2="{_n(y)}" '
                     'stroke="#ccc" stroke-width="0.5"/>')
        parts.append(f'<text x="{_n(left - 4)}" y="{_n(y + 4)}" text-anchor="end" {FONT} '
                     f'font-size="9">{value:g}{unit}</text>')
    return parts


def _day_labels(labels: list[str], left: float, step: float, bottom: float) -> list[str]:
    every = max(1, -(-len(labels) // 16))  # at most 16 labels under the axis
    return [
        f'<text x="{_n(left + step * (i + 0.5))}" y="{_n(bottom + 13)}" text-anchor="middle" {FONT} '
        f'font-size="9">{escape(label)}</text>'
        for i, label in enumerate(labels) if i % every == 0
    ]


def stacked_columns(labels: list[str], series: list[tuple[str, list[int]]], title: str) -> str:
    """One vertical stacked column per label (days)."""
    left, top, height = 40.0, 26.0, 170.0
    bottom = top + height
    totals = [sum(values[i] for _, values in series) for i in range(len(labels))]
    top_value = _scale_top(totals)
    step = (WIDTH - left - 10) / max(len(labels), 1)
    body = _legend(series, 4) + _axis(bottom, height, top_value, left, "")
    for i in range(len(labels)):
        y = bottom
        for s, (_, values) in enumerate(series):
            h = values[i] * height / top_value
            if h:
                body.append(f'<rect x="{_n(left + step * i + step * 0.15)}" y="{_n(y - h)}" '
                            f'width="{_n(step * 0.7)}" height="{_n(h)}" fill="{COLOURS[s]}"/>')
            y -= h
    body += _day_labels(labels, left, step, bottom)
    return _svg(bottom + 20, body, title)


def line(labels: list[str], values: list[float | None], title: str, top_value: float = 100.0) -> str:
    """A line through the values (gaps where a value is None), on a 0..top_value scale."""
    left, top, height = 40.0, 10.0, 150.0
    bottom = top + height
    step = (WIDTH - left - 10) / max(len(labels), 1)
    body = _axis(bottom, height, top_value, left, "")
    points = [
        (left + step * (i + 0.5), bottom - v * height / top_value)
        for i, v in enumerate(values) if v is not None
    ]
    if len(points) > 1:
        body.append('<polyline fill="none" stroke="#1f4e79" stroke-width="2" points="'
                    + " ".join(f"{_n(x)},{_n(y)}" for x, y in points) + '"/>')
    body += [f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.5" fill="#1f4e79"/>' for x, y in points]
    body += _day_labels(labels, left, step, bottom)
    return _svg(bottom + 20, body, title)
