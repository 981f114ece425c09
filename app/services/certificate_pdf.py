"""The certificate as a PDF (A4), drawn with ReportLab, in the request's language
(zh-CN by default; its texts come from the gettext catalogs).

The layout follows the certificate of the 2021 rules on recording and
certifying volunteer service (志愿服务记录与证明出具办法): the title 志愿服务证明
and the certificate number; the statement of what is certified; the
volunteer's name, masked ID number and volunteer number; the issuing org; the
period; the service content; the credit and honor hours; the table of the
records; the issuing org's name where its seal goes and the date of issue;
and a QR code of the public verify URL.

**The glyphs travel with the document.** Every text is set in one TrueType
font, ``CERTIFICATE_FONT`` (default: WenQuanYi Micro Hei, Debian's
``fonts-wqy-microhei``, Apache 2.0 / GPL with the font-embedding exception),
Chinese and Latin alike; ReportLab embeds the subset of glyphs the certificate
uses (TrueType outlines only — a CFF/OpenType font such as Noto CJK's ``.otf``
is refused when it is loaded), so the PDF reads the same on a machine with no
Chinese font and no standard-14 font is referenced. The text stays real text
(searchable, copyable, extracted by the tests). The table of records breaks
across pages with its header repeated.
"""

from __future__ import annotations

import io
import os
import threading
from xml.sax.saxutils import escape

from babel.dates import format_date
from flask import current_app
from flask_babel import format_decimal, get_locale, gettext, pgettext
from reportlab.graphics.barcode.qr import QrCodeWidget
from reportlab.graphics.shapes import Drawing
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER, TA_RIGHT
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from app.clock import local_date
from app.districts import district_name
from app.i18n import current_locale
from app.models import Certificate
from app.policy import hours

# The name the configured font is registered under in ReportLab.
FONT = "CertificateFont"
DEFAULT_FONT_PATH = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"
FONT_PACKAGE = "fonts-wqy-microhei"
QR_SIZE = 34 * mm
SEAL_SIZE = 36 * mm
# How many activities the "service content" names before "and N more".
CONTENT_ACTIVITIES = 6
_INK = colors.HexColor("#1f2937")
_ACCENT = colors.HexColor("#b91c1c")
_RULE = colors.HexColor("#9ca3af")
_HEADER_FILL = colors.HexColor("#f3f4f6")
_CELL_PADDING = 4
_font_lock = threading.Lock()
# Every table's cells in the one embedded font (a table's default is Helvetica, never embedded).
_FONT_STYLE = ("FONTNAME", (0, 0), (-1, -1), FONT)


class CertificateFontError(RuntimeError):
    """The certificate font is missing or unusable; the message says what to install or set."""


def font_path(app=None) -> str:
    """The configured certificate font (``CERTIFICATE_FONT``), or the default path."""
    config = (app or current_app).config
    return config.get("CERTIFICATE_FONT") or DEFAULT_FONT_PATH


def check_font(path: str) -> str | None:
    """What is wrong with the font at ``path`` (None: it can be embedded)."""
    if not os.path.isfile(path):
        return (
            f"the certificate font {path} is missing: install the Debian package {FONT_PACKAGE} "
            "or set CERTIFICATE_FONT to a TrueType font (.ttf/.ttc) with Chinese glyphs"
        )
    try:
        TTFont("CertificateFontCheck", path, subfontIndex=0)
    except (TTFError, OSError) as exc:
        return f"the certificate font {path} cannot be embedded ({exc}); TrueType outlines are needed, not CFF"
    return None


def _font() -> str:
    """Register the configured font once per process (parsing a CJK font takes a while)."""
    path = font_path()
    with _font_lock:
        if getattr(_font, "path", None) != path:
            problem = check_font(path)
            if problem:
                raise CertificateFontError(problem)
            pdfmetrics.registerFont(TTFont(FONT, path, subfontIndex=0))
            _font.path = path
    return FONT


def _styles() -> dict[str, ParagraphStyle]:
    font = _font()
    base = ParagraphStyle("base", fontName=font, fontSize=10.5, leading=16, textColor=_INK, wordWrap="CJK")
    return {
        "title": ParagraphStyle("title", parent=base, fontSize=26, leading=34, alignment=TA_CENTER, spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=10, alignment=TA_CENTER, textColor=_RULE),
        "body": ParagraphStyle("body", parent=base, fontSize=12, leading=22, firstLineIndent=24),
        "label": ParagraphStyle("label", parent=base, textColor=colors.HexColor("#4b5563")),
        "value": base,
        "right": ParagraphStyle("right", parent=base, fontSize=12, leading=22, alignment=TA_RIGHT),
        "seal": ParagraphStyle("seal", parent=base, fontSize=11, leading=16, alignment=TA_CENTER),
        "cell": ParagraphStyle("cell", parent=base, fontSize=9, leading=12),
        "caption": ParagraphStyle("caption", parent=base, fontSize=8, leading=11, alignment=TA_CENTER),
        "small": ParagraphStyle("small", parent=base, fontSize=8, leading=11, textColor=colors.HexColor("#4b5563")),
        "heading": ParagraphStyle("heading", parent=base, fontSize=13, leading=20, spaceBefore=10, spaceAfter=6),
    }


def _text(value: object) -> str:
    """Text made safe for a Paragraph's markup."""
    return escape("" if value is None else str(value))


def _draw(canvas, x: float, y: float, text: str, size: float, right: bool = False) -> None:
    canvas.setFont(FONT, size)
    if right:
        canvas.drawRightString(x, y, text)
    else:
        canvas.drawString(x, y, text)


def _qr(url: str) -> Drawing:
    widget = QrCodeWidget(url, barLevel="M")
    left, bottom, right, top = widget.getBounds()
    drawing = Drawing(QR_SIZE, QR_SIZE, transform=[QR_SIZE / (right - left), 0, 0, QR_SIZE / (top - bottom), 0, 0])
    # The renderer would otherwise select Helvetica, a font the PDF does not embed.
    drawing.initialFontName = FONT
    drawing.add(widget)
    return drawing


def _day(value) -> str:
    """A date as the language writes it in full (2026年11月10日, November 10, 2026)."""
    return format_date(value, "long", locale=get_locale())


def _hours(value: float) -> str:
    return format_decimal(value, "0.0")


def _marked_up(text: str, underlined: dict[str, str]) -> str:
    """``text`` (holding ``\0name\0`` markers) as Paragraph markup, the marked values underlined."""
    parts = text.split("\0")
    return "".join(f"<u>{_text(underlined[part])}</u>" if i % 2 else _text(part) for i, part in enumerate(parts))


def service_content(certificate: Certificate) -> str:
    """What the service was (服务内容): the activities of the records, each once, in order."""
    activities = list(dict.fromkeys(record["activity"] for record in certificate.records if record.get("activity")))
    shown = pgettext("list separator", ", ").join(activities[:CONTENT_ACTIVITIES])
    if len(activities) > CONTENT_ACTIVITIES:
        shown = gettext("%(activities)s and %(more)s more", activities=shown, more=len(activities) - CONTENT_ACTIVITIES)
    return shown


def render_certificate_pdf(certificate: Certificate, verify_url: str) -> bytes:
    """The certificate as PDF bytes; ``verify_url`` is printed and drawn as a QR code."""
    styles = _styles()
    heading = gettext("Certificate of Volunteer Service")
    titled = gettext("Certificate of Volunteer Service %(number)s", number=certificate.number)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=20 * mm,
        title=titled,
        author=certificate.org_name,
        subject=heading,
        creator="甬·志愿",
        initialFontName=FONT,
    )
    width = doc.width
    credit, honor = hours(certificate.credit_minutes), hours(certificate.honor_minutes)
    issued_on = _day(local_date(certificate.issued_at))
    period = gettext("%(first)s to %(last)s", first=_day(certificate.period_from), last=_day(certificate.period_to))
    content = service_content(certificate)
    hours_of = lambda value: gettext("%(hours)s hours", hours=_hours(value))  # noqa: E731

    certified = gettext(
        "This is to certify that %(name)s (ID number %(id_number)s, volunteer no. %(volunteer_no)s) "
        "served as a volunteer with %(org)s from %(period)s: %(records)s service records, "
        "%(credit)s hours of volunteer service and %(honor)s honour hours in total.",
        name="\0name\0",
        org="\0org\0",
        id_number=certificate.id_masked,
        volunteer_no=certificate.volunteer_no,
        period=period,
        records=format_decimal(certificate.records_count),
        credit=_hours(credit),
        honor=_hours(honor),
    )
    story: list = [
        Paragraph(_text(heading), styles["title"]),
        Paragraph(_text(gettext("Certificate no.: %(number)s", number=certificate.number)), styles["subtitle"]),
        Spacer(1, 8 * mm),
        Paragraph(_marked_up(certified, {"name": certificate.real_name, "org": certificate.org_name}), styles["body"]),
        Paragraph(_text(gettext("Hereby certified.")), styles["body"]),
        Spacer(1, 6 * mm),
    ]

    facts = [
        (gettext("Name"), certificate.real_name),
        (gettext("ID number"), certificate.id_masked),
        (gettext("Volunteer no."), certificate.volunteer_no),
        (gettext("Issued by"), certificate.org_name),
        (gettext("Period"), period),
        (gettext("Service content"), content),
        (gettext("Volunteer service hours"), hours_of(credit)),
        (gettext("Honour hours"), hours_of(honor)),
        (gettext("Service records"), gettext("%(count)s records", count=format_decimal(certificate.records_count))),
        (gettext("Certificate no."), certificate.number),
        (gettext("Date of issue"), issued_on),
    ]
    fact_table = Table(
        [
            [Paragraph(_text(label), styles["label"]), Paragraph(_text(value), styles["value"])]
            for label, value in facts
        ],
        colWidths=[28 * mm, width - QR_SIZE - 36 * mm],
    )
    fact_table.setStyle(
        TableStyle(
            [
                _FONT_STYLE,
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
                ("LINEBELOW", (0, 0), (-1, -1), 0.25, _RULE),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    qr_block = Table(
        [[_qr(verify_url)], [Paragraph(_text(gettext("Scan to verify")), styles["caption"])]],
        colWidths=[QR_SIZE + 4 * mm],
    )
    qr_block.setStyle(
        TableStyle([_FONT_STYLE, ("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "TOP")])
    )
    summary = Table([[fact_table, qr_block]], colWidths=[width - QR_SIZE - 8 * mm, QR_SIZE + 8 * mm])
    summary.setStyle(
        TableStyle([_FONT_STYLE, ("VALIGN", (0, 0), (-1, -1), "TOP"), ("LEFTPADDING", (0, 0), (-1, -1), 0)])
    )
    story += [
        summary,
        Spacer(1, 3 * mm),
        Paragraph(_text(gettext("Verify at: %(url)s", url=verify_url)), styles["small"]),
        Paragraph(_text(gettext("Service records in detail")), styles["heading"]),
        _records_table(certificate, styles, width),
        Spacer(1, 10 * mm),
        # The sign-off stays in one piece at the end: the org's name where its seal goes.
        KeepTogether([_sign_off(certificate, issued_on, styles, width)]),
    ]

    void_mark = gettext("VOID")

    def decorate(canvas, page_doc) -> None:
        canvas.saveState()
        canvas.setFillColor(_RULE)
        _draw(canvas, 20 * mm, 10 * mm, titled, 8)
        _draw(canvas, A4[0] - 20 * mm, 10 * mm, gettext("Page %(page)d", page=page_doc.page), 8, right=True)
        if certificate.status == "void":
            canvas.setFillColor(_ACCENT)
            canvas.setFillAlpha(0.25)
            canvas.translate(A4[0] / 2, A4[1] / 2)
            canvas.rotate(35)
            canvas.setFont(FONT, 72)
            canvas.drawCentredString(0, 0, void_mark)
        canvas.restoreState()

    doc.build(story, onFirstPage=decorate, onLaterPages=decorate)
    return buffer.getvalue()


def _sign_off(certificate: Certificate, issued_on: str, styles: dict[str, ParagraphStyle], width: float) -> Table:
    """The note on the rules beside 出具组织（盖章）: the org's name inside the ring where
    its seal is pressed, the date of issue below it."""
    note = Paragraph(
        _text(
            gettext(
                "Issued under the Measures for Recording and Certifying Volunteer Service by the "
                "organisation that recorded the service above (whoever records it certifies it). "
                "The certificate is signed electronically: scan the QR code or open the address "
                "above to check that it is genuine and still valid."
            )
        ),
        styles["small"],
    )
    seal_width = SEAL_SIZE + 16 * mm
    seal = _SealRing(
        [
            [Paragraph(_text(gettext("Issued by (seal)")), styles["caption"])],
            [Paragraph(_text(certificate.org_name), styles["seal"])],
            [Paragraph(_text(issued_on), styles["seal"])],
        ],
        colWidths=[seal_width],
        rowHeights=[6 * mm, SEAL_SIZE, 8 * mm],
        style=TableStyle([_FONT_STYLE, ("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]),
    )
    return Table(
        [[note, seal]],
        colWidths=[width - seal_width - 10 * mm, seal_width + 10 * mm],
        style=TableStyle([_FONT_STYLE, ("VALIGN", (0, 0), (-1, -1), "BOTTOM"), ("ALIGN", (1, 0), (1, 0), "RIGHT")]),
    )


class _SealRing(Table):
    """The seal's table, with a thin dashed ring around its middle row, where the org's seal is pressed."""

    def draw(self) -> None:
        super().draw()
        canvas = self.canv
        canvas.saveState()
        canvas.setStrokeColor(_ACCENT)
        canvas.setStrokeAlpha(0.5)
        canvas.setDash(2, 2)
        canvas.setLineWidth(0.6)
        middle = self._rowpositions[1] - SEAL_SIZE / 2
        canvas.circle(self._width / 2, middle, SEAL_SIZE / 2)
        canvas.restoreState()


def _records_table(certificate: Certificate, styles: dict[str, ParagraphStyle], width: float) -> Table:
    """No., date, activity, place, hours, kind: one row per record, the header on every page.

    Cells are plain strings where they can be, several times cheaper to lay out
    than Paragraphs (a 2,000-record table is about 50 pages); an activity or a
    place that needs wrapping is a Paragraph. Places read as names (海曙区),
    never as a district's code."""
    cell = styles["cell"]
    widths = [12 * mm, 22 * mm, 0.0, 44 * mm, 24 * mm, 20 * mm]
    widths[2] = width - sum(widths)
    titles = (
        pgettext("certificate", "No."),
        pgettext("certificate", "Date"),
        pgettext("certificate", "Activity"),
        pgettext("certificate", "Place"),
        pgettext("certificate", "Hours"),
        pgettext("certificate", "Kind"),
    )
    header = [Paragraph(_text(text), cell) for text in titles]
    kinds = {"credit": pgettext("certificate", "credit"), "honor": pgettext("certificate", "honour")}
    locale = current_locale()
    rows = [header] + [
        [
            str(number),
            record["date"],
            _cell(record["activity"], cell, widths[2]),
            _cell(district_name(record["place"], locale) or "—", cell, widths[3]),
            _hours(hours(record["minutes"])),
            kinds.get(record["kind"], record["kind"]),
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
                ("FONT", (0, 0), (-1, -1), FONT, cell.fontSize, cell.leading),
                ("TEXTCOLOR", (0, 1), (-1, -1), _INK),
            ]
        )
    )
    return table


def _cell(text: str, style: ParagraphStyle, width: float) -> str | Paragraph:
    """Text that fits on one line as a plain string; anything longer as a Paragraph."""
    if pdfmetrics.stringWidth(text, FONT, style.fontSize) <= width - 2 * _CELL_PADDING:
        return text
    return Paragraph(_text(text), style)
