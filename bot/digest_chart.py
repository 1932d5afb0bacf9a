"""The digest's chart: this period against the previous one, per pillar, as a PNG.

Made for a phone held upright: 1080 x 1350 pixels (4:5, shown whole in Telegram and mail
apps), horizontal bars so the long Indonesian pillar names need no rotation, each name
written above its bars across the full width, and every bar labelled with its number so
nobody has to read an axis. The Agg backend through `Figure` directly: no display, and no
pyplot global state shared between threads.
"""

from __future__ import annotations

import io

from handlers.digest import UNTAGGED, Digest, Wording
from handlers.domain import PILLARS
from handlers.i18n import Catalog

WIDTH_IN, HEIGHT_IN, DPI = 7.2, 9.0, 150  # 1080 x 1350 px
CURRENT_COLOUR = "#1f6f8b"
PREVIOUS_COLOUR = "#b8c4cc"
TEXT_COLOUR = "#1a1a1a"


def render_chart(digest: Digest, catalog: Catalog, lang: str) -> bytes:
    """PNG bytes. CPU-bound (~0.2 s): call it through asyncio.to_thread from async code."""
    # Imported here, not at module level: matplotlib is ~50 MB and ~1 s of start-up that
    # the bot only needs once a week (bench/RESULTS.md, memory).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    w = Wording(catalog, lang, None)
    keys = [*PILLARS] + (
        [UNTAGGED] if digest.by_pillar[UNTAGGED].current or digest.by_pillar[UNTAGGED].previous else []
    )
    current = [digest.by_pillar[k].current for k in keys]
    previous = [digest.by_pillar[k].previous for k in keys]
    top = max([*current, *previous, 1])

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.04, right=0.96, top=0.82, bottom=0.03)
    ax = fig.add_subplot()
    fig.text(0.04, 0.955, w.t("digest.chart_title"), fontsize=21, fontweight="bold", color=TEXT_COLOUR, va="top")
    fig.text(0.04, 0.905, w.dates(digest.period), fontsize=15, color="#555555", va="top")

    # Rows from the top: per pillar a name line, then the current and the previous bar.
    step, bar = 3.3, 0.85
    for i, key in enumerate(keys):
        y = -i * step
        ax.text(0, y + 0.15, w.pillar(key), fontsize=16, fontweight="bold", color=TEXT_COLOUR, va="bottom", ha="left")
        for offset, value, colour, weight in (
            (-0.55, current[i], CURRENT_COLOUR, "bold"),
            (-0.55 - bar - 0.1, previous[i], PREVIOUS_COLOUR, "normal"),
        ):
            ax.barh(y + offset, value, height=bar, color=colour, align="center")
            ax.text(
                value + top * 0.015,
                y + offset,
                w.n(value),
                fontsize=15,
                fontweight=weight,
                va="center",
                ha="left",
                color=TEXT_COLOUR,
            )
    ax.set_xlim(0, top * 1.15)
    ax.set_ylim(-(len(keys) - 1) * step - 2.4, 1.4)
    ax.axis("off")
    handles = [
        Patch(color=CURRENT_COLOUR, label=w.period_name(digest.period)),
        Patch(color=PREVIOUS_COLOUR, label=w.period_name(digest.period.previous)),
    ]
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.03, 0.885),
        ncols=2,
        fontsize=15,
        frameon=False,
        handlelength=1.2,
        columnspacing=1.5,
    )
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI, facecolor="white")
    return out.getvalue()
