"""Charts as PNG bytes (matplotlib, Agg backend: no display needed), readable at a glance.

Chinese labels need a CJK font. The first installed one of `CJK_FONTS` is used; with none (a fresh machine
without `fonts-noto-cjk`), charts fall back to English labels in the default font so they still read —
never boxes instead of characters.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Sequence
from functools import cache

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend is chosen above, before pyplot loads
from matplotlib import font_manager

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Serif CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
    "AR PL UMing CN",
)
# pyplot and rc settings are process-global: one chart at a time (bulletins render in worker threads).
_LOCK = threading.Lock()
THIS_WEEK = "#c0392b"
PREVIOUS_WEEK = "#bdc3c7"
TARGET = "#2c3e50"


@cache
def cjk_font() -> str | None:
    """The name of an installed font with Chinese glyphs, or None."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def _style(cjk: bool) -> dict[str, object]:
    family = [cjk_font(), "DejaVu Sans"] if cjk and cjk_font() else ["DejaVu Sans"]
    return {
        "font.family": "sans-serif",
        "font.sans-serif": family,
        "axes.unicode_minus": False,
        "font.size": 11,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """A PNG as a data: URI, so the HTML needs no other file."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def compare_bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[int],
    previous: Sequence[int],
    legend: tuple[str, str],
    *,
    cjk: bool,
) -> bytes:
    """Horizontal bars, this week against the previous one, biggest on top, values written at the bar ends."""
    with _LOCK, plt.rc_context(_style(cjk)):
        n = max(1, len(labels))
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * n + 1.4))
        ys = list(range(len(labels)))[::-1]
        h = 0.38
        prev = ax.barh([y - h / 2 for y in ys], previous, height=h, color=PREVIOUS_WEEK, label=legend[1])
        bars = ax.barh([y + h / 2 for y in ys], values, height=h, color=THIS_WEEK, label=legend[0])
        ax.bar_label(bars, padding=3, fontsize=10)
        ax.set_yticks(ys, list(labels))
        ax.set_title(title, loc="left", fontsize=13, fontweight="bold")
        ax.xaxis.set_visible(False)
        ax.spines["bottom"].set_visible(False)
        ax.margins(x=0.12)
        ax.legend(
            handles=[bars, prev], loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, frameon=False, fontsize=9
        )  # above the bars, never over them
        if not labels:
            ax.text(0.5, 0.5, "—", transform=ax.transAxes, ha="center", va="center", fontsize=20)
        return _png(fig)


def rate_bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    targets: Sequence[float | None],
    target_label: str,
    value_labels: Sequence[str],
    *,
    cjk: bool,
) -> bytes:
    """Rates in per cent as vertical bars, each with its target as a dark tick; a missing rate shows '—'."""
    with _LOCK, plt.rc_context(_style(cjk)):
        fig, ax = plt.subplots(figsize=(7.5, 3.6))
        xs = range(len(labels))
        pct = [0.0 if v is None else v * 100 for v in values]
        colors = []
        for v, t in zip(values, targets, strict=True):
            colors.append("#95a5a6" if v is None or t is None else ("#27ae60" if v >= t else THIS_WEEK))
        bars = ax.bar(xs, pct, color=colors, width=0.6)
        ax.bar_label(bars, labels=list(value_labels), padding=3)  # the same text as the tables
        first = True
        for x, t in zip(xs, targets, strict=True):
            if t is not None:
                ax.hlines(
                    t * 100, x - 0.4, x + 0.4, colors=TARGET, linewidth=2.5, label=target_label if first else None
                )
                first = False
        ax.set_xticks(list(xs), list(labels))
        ax.set_ylim(0, 112)
        ax.set_yticks([0, 25, 50, 75, 100], ["0", "25%", "50%", "75%", "100%"])
        ax.set_title(title, loc="left", fontsize=13, fontweight="bold")
        if not first:
            ax.legend(loc="upper right", frameon=False, fontsize=9, bbox_to_anchor=(1.0, 1.12))
        return _png(fig)
