"""A consultation's results as drafters use them (issue 18): an XLSX workbook and a PNG chart.

The workbook (bot/xlsx_stream.py, so it opens in Excel and LibreOffice like the exports):
"Ringkasan" counts the answers overall, by kecamatan, by kind of participant (raised the
topic or supported it) and by channel, one column per option; "Jawaban" lists every answer
without identity (kecamatan, kind, channel, the answer with personal data masked).

The chart, like the digest's (bot/digest_chart.py): upright 1080 x 1350 px, horizontal bars
labelled with their numbers, the Agg backend through `Figure` directly.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from bot.xlsx_stream import BOLD, DEFAULT, HEADER, TITLE, WRAP, Workbook, number_cell, string_cell
from handlers.consultation import Tally
from handlers.i18n import Catalog
from handlers.text import clip
from storage.consultations import Consultation, Row

WIDTH_IN, HEIGHT_IN, DPI = 7.2, 9.0, 150  # 1080 x 1350 px
BAR_COLOUR = "#1f6f8b"
AREA_COLOUR = "#7aa6b8"
TEXT_COLOUR = "#1a1a1a"


def _columns(c: Consultation, catalog: Catalog, lang: str) -> list[str]:
    if c.kind == "choice":
        return list(c.options)
    return [catalog.text(lang, "consult.sheet.answers")]


def _counts(c: Consultation, counts: Mapping[int, int]) -> list[int]:
    if c.kind == "choice":
        return [counts.get(n, 0) for n in range(1, len(c.options) + 1)]
    return [sum(counts.values())]


def write_xlsx(out: BinaryIO, catalog: Catalog, lang: str, c: Consultation, tally: Tally, rows: Sequence[Row]) -> None:
    t = catalog.text
    options = _columns(c, catalog, lang)
    book = Workbook(out)
    summary = book.add_sheet(
        t(lang, "consult.sheet.summary"), [24, 28, 12, *[max(12, min(30, len(o) + 4)) for o in options]], header_rows=3
    )
    summary.row(string_cell(t(lang, "consult.sheet.title", id=c.id, question=clip(c.question, 200)), TITLE), 24)
    summary.row(
        string_cell(
            t(
                lang,
                "consult.results_counts",
                asked=tally.asked,
                answered=tally.answered,
                not_sent=tally.not_sent,
                changed=tally.changed,
            ),
            DEFAULT,  # one line running across the empty cells beside it
        )
    )
    summary.row(
        "".join(
            string_cell(h, HEADER)
            for h in (t(lang, "consult.sheet.group"), t(lang, "consult.sheet.value"), t(lang, "consult.sheet.answered"))
        )
        + "".join(string_cell(o, HEADER) for o in options)
    )

    def line(group: str, value: str, counts: Mapping[int, int], style: int = WRAP) -> None:
        summary.row(
            string_cell(group, style)
            + string_cell(value, style)
            + number_cell(sum(counts.values()))
            + "".join(number_cell(n) for n in _counts(c, counts))
        )

    line(t(lang, "consult.sheet.all"), "", tally.options, BOLD)
    for group, found in (
        ("consult.sheet.by_area", tally.by_area),
        ("consult.sheet.by_role", {t(lang, f"consult.roles.{k}"): v for k, v in tally.by_role.items()}),
        ("consult.sheet.by_channel", tally.by_channel),
    ):
        for value, counts in sorted(found.items()):
            line(t(lang, group), value, counts)

    answers = book.add_sheet(t(lang, "consult.sheet.answers_sheet"), [20, 22, 12, 70, 14])
    answers.row(
        "".join(
            string_cell(t(lang, f"consult.sheet.{h}"), HEADER) for h in ("area", "role", "channel", "answer", "changed")
        )
    )
    for row in rows:
        if row.answers <= 0:
            continue
        shown = c.options[row.choice - 1] if c.kind == "choice" and row.choice else row.answer_masked or ""
        answers.row(
            string_cell(row.area or "-")
            + string_cell(t(lang, f"consult.roles.{row.role}"))
            + string_cell(row.channel)
            + string_cell(shown, WRAP)
            + number_cell(row.answers - 1)
        )
    book.close()


def render_chart(catalog: Catalog, lang: str, c: Consultation, tally: Tally) -> bytes:
    """PNG bytes: the answers overall (per option for a choice), then per kecamatan."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = catalog.text
    labels = _columns(c, catalog, lang)
    overall = _counts(c, tally.options)
    areas = sorted(tally.by_area.items(), key=lambda item: (-sum(item[1].values()), item[0]))[:8]

    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.text(
        0.04,
        0.965,
        t(lang, "consult.chart_title", id=c.id),
        fontsize=20,
        fontweight="bold",
        color=TEXT_COLOUR,
        va="top",
    )
    fig.text(0.04, 0.925, clip(c.question, 70), fontsize=13, color="#333333", va="top")
    fig.text(
        0.04,
        0.895,
        t(lang, "consult.chart_counts", answered=tally.answered, asked=tally.asked, not_sent=tally.not_sent),
        fontsize=12,
        color="#555555",
        va="top",
    )
    top_ax = fig.add_axes((0.04, 0.50, 0.92, 0.34))
    low_ax = fig.add_axes((0.04, 0.03, 0.92, 0.38))
    for ax, names, values, colour, heading in (
        (top_ax, labels, overall, BAR_COLOUR, t(lang, "consult.chart_overall")),
        (
            low_ax,
            [a for a, _ in areas],
            [sum(counts.values()) for _, counts in areas],
            AREA_COLOUR,
            t(lang, "consult.chart_by_area"),
        ),
    ):
        peak = max([*values, 1])
        ax.set_title(heading, loc="left", fontsize=15, fontweight="bold", color=TEXT_COLOUR)
        for i, (name, value) in enumerate(zip(names, values, strict=True)):
            y = -i * 2.2
            ax.text(0, y + 0.55, clip(name, 48), fontsize=13, color=TEXT_COLOUR, va="bottom", ha="left")
            ax.barh(y, value, height=0.9, color=colour, align="center")
            share = f" ({round(100 * value / tally.answered)}%)" if tally.answered and c.kind == "choice" else ""
            ax.text(value + peak * 0.015, y, f"{value}{share}", fontsize=13, va="center", color=TEXT_COLOUR)
        ax.set_xlim(0, peak * 1.25)
        # Room for at least four rows: one or two bars stay bar-shaped, not blocks.
        ax.set_ylim(-max(len(values), 4) * 2.2 + 0.8, 1.6)
        ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
