"""The incident report's timeline: alerts per time bin, stacked by severity, as inline SVG.

Pure string building, no scripts and no external assets, so the report opens
on an air-gapped machine. Every text that reaches the SVG is escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sentinel.alert import SEVERITIES

#: Fill colour of each severity, in the chart, the badges and the legend.
SEVERITY_COLOURS: dict[str, str] = {
    "critical": "#c62828",
    "high": "#ef6c00",
    "medium": "#f9a825",
    "low": "#1e88e5",
    "info": "#78909c",
}
_BIN_SIZES = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
_MAX_BINS = 72
#: Width of one character of the chart's 11px DejaVu Sans, a little over its widest
#: digits, so an estimated label is never narrower than the drawn one.
CHAR_WIDTH = 7.0
#: Padding around the alerts' span, as a share of it, and at least this many seconds.
PAD_SHARE = 0.05
PAD_MIN = 300.0


def text_width(text: str) -> float:
    """The estimated drawn width of ``text`` in the chart's font."""
    return len(text) * CHAR_WIDTH


def zoom(times: Sequence[float], since: float | None, until: float | None,
         fallback: tuple[float, float]) -> tuple[float, float]:
    """The chart's span: the alerts' own span, padded a little, inside the asked window.

    A ``--since 24h`` that holds alerts of one hour zooms to that hour; a
    24-hour axis would pack them into one bar. With no alerts, the asked window
    (or ``fallback``) is shown, empty.
    """
    if not times:
        lo = since if since is not None else fallback[0]
        hi = until if until is not None else fallback[1]
        return lo, max(hi, lo + 60)
    lo, hi = min(times), max(times)
    pad = max((hi - lo) * PAD_SHARE, PAD_MIN)
    start, end = lo - pad, hi + pad
    if since is not None:
        start = max(start, min(since, lo))
    if until is not None:
        end = min(end, max(until, hi + 1))
    return start, max(end, start + 60)


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def bin_size(span: float) -> int:
    """The smallest round bin (1 min … 1 week) that keeps the chart to at most 72 bars."""
    for size in _BIN_SIZES:
        if span / size <= _MAX_BINS:
            return size
    return math.ceil(span / _MAX_BINS)


def _label(ts: float, size: int) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    if size >= 86400:
        return dt.strftime("%Y-%m-%d")
    return dt.strftime("%m-%d %H:%M")


def _nice_max(n: int) -> int:
    """A round top for the y axis, at least ``n``."""
    if n <= 5:
        return max(n, 1)
    mag = int(10 ** (len(str(n)) - 1))
    for step in (1, 2, 5, 10):
        if step * mag >= n:
            return step * mag
    return 10 * mag


def timeline_svg(
    alerts: Sequence[tuple[float, str]],
    start: float,
    end: float,
    windows: Sequence[tuple[str, float, float]] = (),
    width: int = 1180,
    height: int = 300,
    tr: Callable[[str], str] = lambda s: s,
) -> str:
    """The SVG of ``alerts`` as ``(time, severity)`` between ``start`` and ``end``.

    ``windows`` are named schedule windows ``(name, start, end)``, drawn as
    shaded bands behind the bars so a reader sees which alerts fell in them.
    ``tr`` translates the chart's fixed words. No text reaches past the SVG's
    edges: edge labels are anchored inward, window names kept inside the plot.
    """
    size = bin_size(max(end - start, 1.0))
    first = math.floor(start / size) * size
    nbins = max(1, math.ceil((end - first) / size))
    counts = [dict.fromkeys(SEVERITIES, 0) for _ in range(nbins)]
    for t, sev in alerts:
        i = min(max(int((t - first) // size), 0), nbins - 1)
        counts[i][sev if sev in SEVERITY_COLOURS else "info"] += 1
    top = _nice_max(max((sum(c.values()) for c in counts), default=0))
    left, right, upper, lower = 48, 12, 14, 58
    pw, ph = width - left - right, height - upper - lower
    bw = pw / nbins

    def x(ts: float) -> float:
        return left + (ts - first) / (nbins * size) * pw

    def y(n: float) -> float:
        return upper + ph - n / top * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}"'
           f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
           f' aria-label="alerts per {size // 60} minutes, by severity">',
           f'<rect x="{left}" y="{upper}" width="{pw}" height="{ph}" fill="#fafafa"'
           ' stroke="#cfd8dc"/>']
    for name, ws, we in windows:
        a, b = max(x(ws), left), min(x(we), left + pw)
        if b > a:
            out.append(f'<rect x="{a:.1f}" y="{upper}" width="{b - a:.1f}" height="{ph}"'
                       f' fill="#e8f5e9"><title>{_esc(name)}</title></rect>')
            # a window that opens near the right edge keeps its name inside the plot
            nx = max(min(a + 4, left + pw - 4 - text_width(name)), left + 4)
            out.append(f'<text x="{nx:.1f}" y="{upper + 12}" class="win">{_esc(name)}</text>')
    for k in range(5):
        n = top * k / 4
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y(n):.1f}" y2="{y(n):.1f}"'
                   ' stroke="#eceff1"/>')
        out.append(f'<text x="{left - 6}" y="{y(n) + 4:.1f}" text-anchor="end">'
                   f'{n:g}</text>')
    for i, c in enumerate(counts):
        base = 0
        for sev in reversed(SEVERITIES):  # info at the bottom, critical on top
            n = c[sev]
            if not n:
                continue
            out.append(f'<rect class="bar {sev}" x="{left + i * bw + 1:.1f}"'
                       f' y="{y(base + n):.1f}" width="{max(bw - 2, 1):.1f}"'
                       f' height="{y(base) - y(base + n):.1f}" fill="{SEVERITY_COLOURS[sev]}">'
                       f'<title>{_esc(_label(first + i * size, size))}: {n} {_esc(tr(sev))}'
                       "</title></rect>")
            base += n
    step = max(1, math.ceil(nbins / 8))
    ticks = list(range(0, nbins + 1, step))
    if ticks[-1] != nbins:
        # the axis always says where it ends; a tick too close to the end makes room
        if (nbins - ticks[-1]) * bw < 1.5 * text_width(_label(first, size)) and len(ticks) > 1:
            ticks.pop()
        ticks.append(nbins)
    for i in ticks:
        tx = left + i * bw
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{upper + ph}" y2="{upper + ph + 4}"'
                   ' stroke="#90a4ae"/>')
        label = _label(first + i * size, size)
        half = text_width(label) / 2
        # the first and last labels would spill past the SVG's edges when centred
        anchor = "start" if tx - half < 0 else "end" if tx + half > width else "middle"
        out.append(f'<text x="{tx:.1f}" y="{upper + ph + 18}" text-anchor="{anchor}">'
                   f'{_esc(label)}</text>')
    lx = left
    for sev in SEVERITIES:
        total = sum(c[sev] for c in counts)
        out.append(f'<rect x="{lx}" y="{height - 20}" width="12" height="12"'
                   f' fill="{SEVERITY_COLOURS[sev]}"/>')
        out.append(f'<text x="{lx + 16}" y="{height - 10}">{_esc(tr(sev))} ({total})</text>')
        lx += 120
    out.append(f'<text x="{left + pw}" y="{height - 10}" text-anchor="end">'
               f'{_esc(tr("bars"))}: {_esc(_span_name(size, tr))} (UTC)</text>')
    out.append("</svg>")
    return "\n".join(out)


def _span_name(size: int, tr: Callable[[str], str] = lambda s: s) -> str:
    if size % 86400 == 0:
        n, one, many = size // 86400, "{n} day", "{n} days"
    elif size % 3600 == 0:
        n, one, many = size // 3600, "{n} hour", "{n} hours"
    else:
        n, one, many = max(size // 60, 1), "{n} minute", "{n} minutes"
    return tr(one if n == 1 else many).format(n=n)
