"""A small streaming XLSX writer for exports of a million rows (issue 20: < 90 s, < 200 MB).

xlsxwriter's constant_memory mode writes a cell per Python call and took ~4.7 minutes for
1,000,000 submissions. Here a row is one pre-built XML string (the caller formats it in
one f-string), every sheet streams through its own raw-deflate compressor into a
temporary file, and the ZIP container is written at the end from those finished
streams (CRC and sizes known, so `out` need not be seekable). Several sheets fill at
the same time (all submissions, and each pillar), which zipfile cannot do.

What the sheets carry, because drafters open them in Excel and LibreOffice:
- inline strings (no shared-string table to hold in memory), dates as real date serials
  with a date format, numbers as numbers;
- a frozen, bold header row, an autofilter, column widths;
- print set-up: landscape, A4, fit to one page wide, the header row repeated on every page;
- cells without `r` attributes: every cell of a row is present (empty `<c/>` for a missing
  value), so the same cells can go to two sheets; each row carries its number. ECMA-376
  makes both optional; Excel, LibreOffice and openpyxl read cells in order.
"""

from __future__ import annotations

import struct
import tempfile
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from xml.sax.saxutils import escape, quoteattr

MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
MAX_ROWS = 1_048_576  # Excel's limit, header included
COMPRESS_LEVEL = 1  # bench/bench_export.py: level 6 costs ~2.5x the CPU for ~20% smaller files
_ZIP32_LIMIT = 0xFFFFFFFF

# Style indices (cellXfs order in _STYLES).
DEFAULT, HEADER, TITLE, BOLD, WRAP, DATE, QUOTED_WRAP, TOP, LINK, NUMBER = range(10)

_STYLES = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<styleSheet xmlns="{MAIN_NS}">
<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm"/><numFmt numFmtId="165" formatCode="#,##0"/></numFmts>
<fonts count="4">
<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>
<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>
<font><b/><sz val="14"/><name val="Calibri"/><family val="2"/></font>
<font><u/><sz val="11"/><color rgb="FF0563C1"/><name val="Calibri"/><family val="2"/></font>
</fonts>
<fills count="3"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>
<fill><patternFill patternType="solid"><fgColor rgb="FFDDEBF7"/><bgColor indexed="64"/></patternFill></fill></fills>
<borders count="2"><border><left/><right/><top/><bottom/><diagonal/></border>
<border><left style="thin"><color auto="1"/></left><right style="thin"><color auto="1"/></right><top style="thin"><color auto="1"/></top><bottom style="thin"><color auto="1"/></bottom><diagonal/></border></borders>
<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>
<cellXfs count="10">
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>
<xf numFmtId="0" fontId="1" fillId="2" borderId="1" xfId="0" applyFont="1" applyFill="1" applyBorder="1" applyAlignment="1"><alignment vertical="top" wrapText="1"/></xf>
<xf numFmtId="0" fontId="2" fillId="0" borderId="0" xfId="0" applyFont="1"/>
<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1"><alignment vertical="top" wrapText="1"/></xf>
<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" applyAlignment="1"><alignment horizontal="left" vertical="top"/></xf>
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1" applyAlignment="1"><alignment vertical="top" wrapText="1"/></xf>
<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1"><alignment vertical="top"/></xf>
<xf numFmtId="0" fontId="3" fillId="0" borderId="0" xfId="0" applyFont="1" applyAlignment="1"><alignment vertical="top"/></xf>
<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>
</cellXfs>
<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>
</styleSheet>"""


class XlsxTooLarge(Exception):
    """A part or the whole file would pass 4 GiB (this writer does not write ZIP64)."""


def column_letter(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def text(value: str) -> str:
    """XML-escaped character data (the caller removes characters XML 1.0 forbids)."""
    if "&" in value or "<" in value or ">" in value:
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


def string_cell(value: str | None, style: int = TOP) -> str:
    if value is None or value == "":
        return f'<c s="{style}"/>'
    return f'<c s="{style}" t="inlineStr"><is><t xml:space="preserve">{text(value)}</t></is></c>'


def number_cell(value: float | int | None, style: int = TOP) -> str:
    if value is None:
        return f'<c s="{style}"/>'
    return f'<c s="{style}"><v>{value!r}</v></c>'


@dataclass
class _Part:
    name: str
    crc: int
    size: int
    compressed: int
    file: Any = None  # temporary file holding the deflated bytes, or None
    data: bytes = b""  # small parts: the deflated bytes themselves


class _Stream:
    """Raw deflate into a temporary file, with the CRC and sizes ZIP needs."""

    def __init__(self, level: int):
        # Kept open until the ZIP is written (Workbook.close closes it).
        self.file = tempfile.TemporaryFile()  # noqa: SIM115
        self.zip = zlib.compressobj(level, zlib.DEFLATED, -15)
        self.crc = 0
        self.size = 0
        self.compressed = 0

    def write(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        chunk = self.zip.compress(data)
        if chunk:
            self.compressed += len(chunk)
            self.file.write(chunk)

    def finish(self, name: str) -> _Part:
        chunk = self.zip.flush()
        self.compressed += len(chunk)
        self.file.write(chunk)
        if self.size > _ZIP32_LIMIT or self.compressed > _ZIP32_LIMIT:
            raise XlsxTooLarge(f"{name} passes 4 GiB")
        return _Part(name, self.crc, self.size, self.compressed, file=self.file)


@dataclass
class Sheet:
    """One worksheet. Rows are XML strings from row_xml(); written in order."""

    book: Workbook
    name: str
    widths: Sequence[float]
    index: int
    header_rows: int = 1  # frozen, repeated on printed pages (0: none)
    autofilter: bool = True
    landscape: bool = True
    rows: int = 0
    _buffer: list[str] = field(default_factory=list)
    _stream: _Stream | None = None

    def __post_init__(self) -> None:
        self._stream = _Stream(self.book.level)
        selected = ' tabSelected="1"' if self.index == 0 else ""
        views = (
            f'<sheetView workbookViewId="0"{selected}>'
            + (
                f'<pane ySplit="{self.header_rows}" topLeftCell="A{self.header_rows + 1}" '
                'activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft"/>'
                if self.header_rows
                else ""
            )
            + "</sheetView>"
        )
        cols = "".join(
            f'<col min="{i + 1}" max="{i + 1}" width="{w}" customWidth="1"/>' for i, w in enumerate(self.widths)
        )
        self._stream.write(
            f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{MAIN_NS}" '
            f'xmlns:r="{REL_NS}"><sheetPr><pageSetUpPr fitToPage="1"/></sheetPr><sheetViews>{views}'
            f'</sheetViews><sheetFormatPr defaultRowHeight="15"/><cols>{cols}</cols><sheetData>'.encode()
        )

    @property
    def full(self) -> bool:
        return self.rows >= MAX_ROWS

    def row(self, cells: str, height: float | None = None) -> None:
        """Append one row: `cells` is the concatenated XML of its cells, every column present
        (so the same cells can go to two sheets; the row carries its own number)."""
        self.rows += 1
        if height is None:
            self._buffer.append(f'<row r="{self.rows}">{cells}</row>')
        else:
            self._buffer.append(f'<row r="{self.rows}" ht="{height}" customHeight="1">{cells}</row>')
        if len(self._buffer) >= 1000:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            assert self._stream is not None
            self._stream.write("".join(self._buffer).encode("utf-8"))
            self._buffer.clear()

    def finish(self) -> _Part:
        self.flush()
        assert self._stream is not None
        last_col = column_letter(max(len(self.widths), 1) - 1)
        tail = ["</sheetData>"]
        if self.autofilter and self.header_rows:
            tail.append(f'<autoFilter ref="A{self.header_rows}:{last_col}{max(self.rows, self.header_rows + 1)}"/>')
        tail.append(
            '<printOptions gridLines="0"/><pageMargins left="0.5" right="0.5" top="0.6" bottom="0.6" '
            'header="0.3" footer="0.3"/>'
        )
        tail.append(
            f'<pageSetup paperSize="9" orientation="{"landscape" if self.landscape else "portrait"}" '
            'fitToWidth="1" fitToHeight="0"/>'
        )
        tail.append("<headerFooter><oddFooter>&amp;L&amp;A&amp;R&amp;P / &amp;N</oddFooter></headerFooter>")
        tail.append("</worksheet>")
        self._stream.write("".join(tail).encode())
        return self._stream.finish(f"xl/worksheets/sheet{self.index + 1}.xml")

    def defined_names(self) -> list[str]:
        ref = "'" + self.name.replace("'", "''") + "'"
        last_col = column_letter(max(len(self.widths), 1) - 1)
        names = []
        if self.autofilter and self.header_rows:
            names.append(
                f'<definedName name="_xlnm._FilterDatabase" localSheetId="{self.index}" hidden="1">'
                f"{escape(ref)}!$A${self.header_rows}:${last_col}${max(self.rows, self.header_rows + 1)}"
                "</definedName>"
            )
        if self.header_rows:
            names.append(
                f'<definedName name="_xlnm.Print_Titles" localSheetId="{self.index}">'
                f"{escape(ref)}!$1:${self.header_rows}</definedName>"
            )
        return names


class Workbook:
    """Sheets in the order they were added; close() writes the whole file to `out`."""

    def __init__(self, out: BinaryIO, *, level: int = COMPRESS_LEVEL):
        self.out = out
        self.level = level
        self.sheets: list[Sheet] = []

    def add_sheet(self, name: str, widths: Sequence[float], **options: Any) -> Sheet:
        sheet = Sheet(self, name, list(widths), len(self.sheets), **options)
        self.sheets.append(sheet)
        return sheet

    def close(self) -> None:
        parts = [sheet.finish() for sheet in self.sheets]
        try:
            small = {
                "[Content_Types].xml": self._content_types(),
                "_rels/.rels": (
                    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
                    'relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
                ),
                "xl/workbook.xml": self._workbook(),
                "xl/_rels/workbook.xml.rels": self._workbook_rels(),
                "xl/styles.xml": _STYLES,
            }
            entries = [_small_part(name, body.encode("utf-8")) for name, body in small.items()]
            _write_zip(self.out, [*entries[:4], *parts, entries[4]])
        finally:
            for part in parts:
                if part.file is not None:
                    part.file.close()

    def _content_types(self) -> str:
        sheets = "".join(
            f'<Override PartName="/xl/worksheets/sheet{i + 1}.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            for i in range(len(self.sheets))
        )
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            f"{sheets}"
            '<Override PartName="/xl/styles.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'
        )

    def _workbook(self) -> str:
        sheets = "".join(
            f'<sheet name={quoteattr(s.name)} sheetId="{s.index + 1}" r:id="rId{s.index + 1}"/>' for s in self.sheets
        )
        names = "".join(n for s in self.sheets for n in s.defined_names())
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<workbook xmlns="{MAIN_NS}" xmlns:r="{REL_NS}"><bookViews><workbookView/></bookViews>'
            f"<sheets>{sheets}</sheets>" + (f"<definedNames>{names}</definedNames>" if names else "") + "</workbook>"
        )

    def _workbook_rels(self) -> str:
        rels = "".join(
            f'<Relationship Id="rId{i + 1}" Type="{REL_NS}/worksheet" Target="worksheets/sheet{i + 1}.xml"/>'
            for i in range(len(self.sheets))
        )
        rels += f'<Relationship Id="rId{len(self.sheets) + 1}" Type="{REL_NS}/styles" Target="styles.xml"/>'
        return (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}'
            "</Relationships>"
        )


def _small_part(name: str, data: bytes) -> _Part:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = packer.compress(data) + packer.flush()
    return _Part(name, zlib.crc32(data), len(data), len(deflated), data=deflated)


def _dos_time(moment: float) -> tuple[int, int]:
    t = time.localtime(moment)
    return (
        (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
        ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday,
    )


def _write_zip(out: BinaryIO, parts: Iterable[_Part]) -> None:
    """Local headers with sizes up front (no data descriptors), then the central directory."""
    dos_time, dos_date = _dos_time(time.time())
    offset = 0
    central: list[bytes] = []
    for part in parts:
        name = part.name.encode("utf-8")
        header = struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, dos_time, dos_date, part.crc, part.compressed, part.size, len(name), 0
        )
        out.write(header + name)
        if part.file is not None:
            part.file.seek(0)
            while chunk := part.file.read(1 << 20):
                out.write(chunk)
        else:
            out.write(part.data)
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                8,
                dos_time,
                dos_date,
                part.crc,
                part.compressed,
                part.size,
                len(name),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + name
        )
        offset += len(header) + len(name) + part.compressed
        if offset > _ZIP32_LIMIT:
            raise XlsxTooLarge("the workbook passes 4 GiB")
    directory = b"".join(central)
    out.write(directory)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), offset, 0))
