"""The certificate as a PDF (A4, Chinese), drawn with ReportLab.

Chinese text uses ReportLab's built-in CID font STSong-Light (Adobe-GB1): the
PDF names the font and carries no glyphs, and every PDF viewer with Chinese
support (Adobe Reader, Preview, browsers, phones) draws it with its own Song
typeface. The text stays real text (searchable, copyable, extracted by the
tests). The table of records is a platypus Table that breaks across pages
with its header repeated.
"""

from __future__ import annotations

import io
import re
from xml.sax.saxutils import escape

from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from app.clock import local_date
from app.models import Certificate
from app.policy import hours

FONT = "STSong-Light"
LATIN_FONT = "Helvetica"
# A run of printable ASCII starting and ending with a visible character.
_LATIN_RUN = re.compile(r"[!-~](?:[ -~]*[!-~])?")
KIND_NAMES = {"credit": "志愿时长", "honor": "荣誉时长"}
QR_SIZE = 34 * mm
_INK = colors.HexColor("#1f2937")
_ACCENT = colors.HexColor("#b91c1c")
_RULE = colors.HexColor("#9ca3af")
_HEADER_FILL = colors.HexColor("#f3f4f6")
_CELL_PADDING = 4


def _font() -> str:
    if FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(FONT))
    return FONT


def _styles() -> dict[str, ParagraphStyle]:
    font = _font()
    base = ParagraphStyle("base", fontName=font, fontSize=10.5, leading=16, textColor=_INK, wordWrap="CJK")
    return {
        "title": ParagraphStyle("title", parent=base, fontSize=24, leading=32, alignment=TA_CENTER, spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=10, alignment=TA_CENTER, textColor=_RULE),
        "body": ParagraphStyle("body", parent=base, fontSize=12, leading=22, firstLineIndent=24),
        "label": ParagraphStyle("label", parent=base, textColor=colors.HexColor("#4b5563")),
        "value": base,
        "right": ParagraphStyle("right", parent=base, fontSize=12, leading=22, alignment=TA_RIGHT),
        "cell": ParagraphStyle("cell", parent=base, fontSize=9, leading=12),
        "caption": ParagraphStyle("caption", parent=base, fontSize=8, leading=11, alignment=TA_CENTER),
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=11, textColor=colors.HexColor("#4b5563")),
        "heading": ParagraphStyle("heading", parent=base, fontSize=13, leading=20, spaceBefore=10, spaceAfter=6),
    }


def _text(value: object) -> str:
    """Text made safe for a Paragraph's markup, its Latin letters and digits set in
    Helvetica: every viewer has it, and the numbers, dates and codes then read
    right even where the CJK font is drawn poorly."""
    text = "" if value is None else str(value)
    parts, last = [], 0
    for run in _LATIN_RUN.finditer(text):
        parts.append(escape(text[last : run.start()]))
        parts.append(f'<font name="{LATIN_FONT}">{escape(run.group())}</font>')
        last = run.end()
    parts.append(escape(text[last:]))
    return "".join(parts)


def _draw(canvas, x: float, y: float, text: str, size: float, right: bool = False) -> None:
    """Draw mixed Chinese and Latin text on the canvas, each run in its font."""
    runs = []
    last = 0
    for run in _LATIN_RUN.finditer(text):
        runs += [(text[last : run.start()], FONT), (run.group(), LATIN_FONT)]
        last = run.end()
    runs.append((text[last:], FONT))
    runs = [(chunk, font) for chunk, font in runs if chunk]
    if right:
        x -= sum(pdfmetrics.stringWidth(chunk, font, size) for chunk, font in runs)
    for chunk, font in runs:
        canvas.setFont(font, size)
        canvas.drawString(x, y, chunk)
        x += pdfmetrics.stringWidth(chunk, font, size)


def _qr(url: str) -> Drawing:
    widget = QrCodeWidget(url, barLevel="M")
    left, bottom, right, top = widget.getBounds()
    drawing = Drawing(QR_SIZE, QR_SIZE, transform=[QR_SIZE / (right - left), 0, 0, QR_SIZE / (top - bottom), 0, 0])
    drawing.add(widget)
    return drawing


def render_certificate_pdf(certificate: Certificate, verify_url: str) -> bytes:
    """The certificate as PDF bytes; ``verify_url`` is printed and drawn as a QR code."""
    styles = _styles()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=20 * mm,
        title=f"志愿服务证明 {certificate.number}",
        author=certificate.org_name,
        subject="志愿服务证明",
        creator="甬·志愿",
    )
    width = doc.width
    credit, honor = hours(certificate.credit_minutes), hours(certificate.honor_minutes)
    issued_on = local_date(certificate.issued_at)
    period = f"{certificate.period_from:%Y年%m月%d日} 至 {certificate.period_to:%Y年%m月%d日}"

    story: list = [
        Paragraph("志愿服务证明", styles["title"]),
        Paragraph(_text(f"证明编号：{certificate.number}"), styles["subtitle"]),
        Spacer(1, 8 * mm),
        Paragraph(
            _text("兹证明 ")
            + f"<u>{_text(certificate.real_name)}</u>"
            + _text(f"（身份证号 {certificate.id_masked}，志愿者编号 {certificate.volunteer_no}）于 {period} 期间在")
            + f"<u>{_text(certificate.org_name)}</u>"
            + _text(
                f"参加志愿服务，共有服务记录 {certificate.records_count} 条，"
                f"累计志愿服务时长 {credit:.1f} 小时，荣誉时长 {honor:.1f} 小时。"
            ),
            styles["body"],
        ),
        Paragraph("特此证明。", styles["body"]),
        Spacer(1, 6 * mm),
    ]

    facts = [
        ("姓名", certificate.real_name),
        ("身份证号", certificate.id_masked),
        ("志愿者编号", certificate.volunteer_no),
        ("服务组织", certificate.org_name),
        ("服务期间", period),
        ("志愿服务时长", f"{credit:.1f} 小时"),
        ("荣誉时长", f"{honor:.1f} 小时"),
        ("服务记录", f"{certificate.records_count} 条"),
        ("出具日期", f"{issued_on:%Y年%m月%d日}"),
    ]
    fact_table = Table(
        [[Paragraph(label, styles["label"]), Paragraph(_text(value), styles["value"])] for label, value in facts],
        colWidths=[28 * mm, width - QR_SIZE - 36 * mm],
    )
    fact_table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, _RULE),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    qr_block = Table(
        [[_qr(verify_url)], [Paragraph("扫码核验真伪", styles["caption"])]],
        colWidths=[QR_SIZE + 4 * mm],
    )
    qr_block.setStyle(TableStyle([("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    summary = Table([[fact_table, qr_block]], colWidths=[width - QR_SIZE - 8 * mm, QR_SIZE + 8 * mm])
    summary.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    story += [
        summary,
        Spacer(1, 3 * mm),
        Paragraph(_text(f"核验地址：{verify_url}"), styles["small"]),
        Paragraph("服务记录明细", styles["heading"]),
        _records_table(certificate, styles, width),
        Spacer(1, 10 * mm),
        # The sign-off stays in one piece at the end.
        KeepTogether(
            [
                Paragraph(_text(f"出具单位：{certificate.org_name}"), styles["right"]),
                Paragraph(_text(f"出具日期：{issued_on:%Y年%m月%d日}"), styles["right"]),
                Spacer(1, 6 * mm),
                Paragraph(
                    "本证明依据《志愿服务记录与证明出具办法》，由记录上述服务的组织出具（谁记录谁证明）。"
                    "证明内容经电子签名，可扫描二维码或访问核验地址查验真伪与当前状态。",
                    styles["small"],
                ),
            ]
        ),
    ]

    def decorate(canvas, page_doc) -> None:
        canvas.saveState()
        canvas.setFillColor(_RULE)
        _draw(canvas, 20 * mm, 10 * mm, f"志愿服务证明 {certificate.number}", 8)
        _draw(canvas, A4[0] - 20 * mm, 10 * mm, f"第 {page_doc.page} 页", 8, right=True)
        if certificate.status == "void":
            canvas.setFillColor(_ACCENT)
            canvas.setFillAlpha(0.25)
            canvas.setFont(FONT, 72)
            canvas.translate(A4[0] / 2, A4[1] / 2)
            canvas.rotate(35)
            canvas.drawCentredString(0, 0, "已作废 VOID")
        canvas.restoreState()

    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


def _records_table(certificate: Certificate, styles: dict[str, ParagraphStyle], width: float) -> Table:
    """序号, 日期, 活动, 地点, 时长, 类型: one row per record, the header on every page.

    Cells are plain strings where they can be, several times cheaper to lay out
    than Paragraphs (a 2,000-record table is about 50 pages); an activity or a
    place that needs wrapping, or mixes in Latin text, is a Paragraph."""
    cell = styles["cell"]
    widths = [12 * mm, 22 * mm, 0.0, 44 * mm, 24 * mm, 20 * mm]
    widths[2] = width - sum(widths)
    header = [Paragraph(text, cell) for text in ("序号", "日期", "服务活动", "服务地点", "时长（小时）", "类型")]
    rows = [header] + [
        [
            str(number),
            record["date"],
            _cell(record["activity"], cell, widths[2]),
            _cell(record["place"] or "—", cell, widths[3]),
            f"{hours(record['minutes']):.1f}",
            KIND_NAMES.get(record["kind"], record["kind"]),
        ]
        for number, record in enumerate(certificate.records, start=1)
    ]
    table = Table(rows, colWidths=widths, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), _HEADER_FILL),
                ("GRID", (0, 0), (-1, -1), 0.25, _RULE),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("TOPPADDING", (0, 0), (-1, -1), 3),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 3),
                ("LEFTPADDING", (0, 0), (-1, -1), _CELL_PADDING),
                ("RIGHTPADDING", (0, 0), (-1, -1), _CELL_PADDING),
                ("FONT", (0, 1), (-1, -1), FONT, cell.fontSize, cell.leading),
                ("FONT", (0, 1), (1, -1), LATIN_FONT, cell.fontSize, cell.leading),
                ("FONT", (4, 1), (4, -1), LATIN_FONT, cell.fontSize, cell.leading),
                ("TEXTCOLOR", (0, 1), (-1, -1), _INK),
            ]
        )
    )
    return table


def _cell(text: str, style: ParagraphStyle, width: float) -> str | Paragraph:
    """Chinese that fits on one line as a plain string; anything else as a Paragraph."""
    if (
        _LATIN_RUN.search(text) is None
        and pdfmetrics.stringWidth(text, FONT, style.fontSize) <= width - 2 * _CELL_PADDING
    ):
        return text
    return Paragraph(_text(text), style)
