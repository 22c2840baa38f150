"""A report as a list of typed blocks, rendered to Markdown or to self-contained HTML.

The report stage and the bounds page build :data:`Block` lists; :func:`render_markdown` and
:func:`render_html` are the only places that know either format (figures are embedded in the
HTML as base64 PNGs, and linked relative to the run directory in the Markdown).

A page is a first screen (ordinary blocks) and then a list of :class:`Section`: each gets an
anchor and an entry in the table of contents (:class:`Contents`, wherever it is placed), and in
the HTML every table and code block inside it is collapsed (``<details>``) behind its one-line
``summary``, so a new section is one more entry in the list. :class:`Side` puts blocks side by
side in the HTML (one after another in the Markdown). Text may use inline Markdown (``**bold**``,
``*italic*``, backticks, ``[text](link)``): the Markdown keeps it, the HTML renders it.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    """``summary``: what the table shows in one line, visible while it is collapsed."""

    header: list[str]
    rows: list[list[str]]
    summary: str = ""


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


@dataclass(frozen=True)
class Code:
    text: str
    lang: str = ""
    summary: str = ""


@dataclass(frozen=True)
class Details:
    """Blocks shown on demand: collapsed behind ``summary`` in the HTML, a plain titled
    paragraph group in the Markdown."""

    summary: str
    blocks: list[Block]


@dataclass(frozen=True)
class Side:
    """Blocks side by side in the HTML (each a column, wrapping on a narrow window)."""

    columns: list[list[Block]]


@dataclass(frozen=True)
class Section:
    """A titled section with its anchor (``anchor``, else the title's as GitHub makes it, so
    report.md's contents links work there too) and contents entry."""

    title: str
    blocks: list[Block]
    anchor: str = field(default="")

    @property
    def id(self) -> str:
        return self.anchor or slug(self.title)


@dataclass(frozen=True)
class Contents:
    """The table of contents: every :class:`Section` of the page, linked to its anchor."""

    title: str = "Contents"


Block = Heading | Paragraph | Bullets | Table | Figure | Code | Details | Side | Section | Contents


def slug(text: str) -> str:
    """An anchor as GitHub makes it from a heading: lower case, punctuation dropped, spaces
    to hyphens (so the Markdown's contents links work there too)."""
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def sections(blocks: list[Block]) -> list[Section]:
    return [b for b in blocks if isinstance(b, Section)]


def as_sections(blocks: list[Block]) -> list[Block]:
    """A flat list of blocks with level-2 headings (as a page written before sections was)
    as one :class:`Section` per heading, holding the blocks up to the next; sections and the
    blocks before the first heading stay as they are."""
    out: list[Block] = []
    for block in blocks:
        if isinstance(block, Heading) and block.level == 2:
            out.append(Section(block.text, []))
        elif out and isinstance(out[-1], Section) and not isinstance(block, Section):
            out[-1].blocks.append(block)
        else:
            out.append(block)
    return out


def _table_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def _markdown(block: Block, root: Path | None, page: list[Block]) -> str:
    match block:
        case Heading(level, text):
            return "#" * level + " " + text
        case Paragraph(text):
            return text
        case Bullets(items):
            return "\n".join(f"- {item}" for item in items)
        case Table(header, rows, summary):
            return (f"*{summary}*\n\n" if summary else "") + _table_markdown(header, rows)
        case Figure(path, caption):
            link = Path(path).relative_to(root) if root else path
            return f"![{caption}]({link})\n\n*{caption}*"
        case Code(text, lang, _summary):
            return f"```{lang}\n{text.rstrip()}\n```"
        case Details(summary, inner):
            return "\n\n".join([f"**{summary}**", *(_markdown(b, root, page) for b in inner)])
        case Side(columns):
            return "\n\n".join(_markdown(b, root, page) for col in columns for b in col)
        case Section(title, inner):
            return "\n\n".join([f"## {title}", *(_markdown(b, root, page) for b in inner)])
        case Contents(title):
            links = [f"- [{s.title}](#{s.id})" for s in sections(page)]
            return "\n".join([f"**{title}**", "", *links])
    raise TypeError(f"block: expected one of {Block}, got {type(block).__name__}")


def render_markdown(blocks: list[Block], root: Path | None = None) -> str:
    """Markdown; figure links relative to ``root`` (the run directory) when given."""
    return "\n\n".join(_markdown(b, root, blocks) for b in blocks) + "\n"


STYLE = (
    "body{font-family:sans-serif;max-width:1300px;margin:1em auto;padding:0 1em;"
    "line-height:1.35}h1{margin:.3em 0}h2{margin-top:1.6em}"
    "table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:3px 7px;"
    "text-align:right;vertical-align:top}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}"
    "body>table:first-of-type{font-size:94%}"
    "img{max-width:100%}figure{margin:.5em 0}figcaption{font-size:90%;color:#333}"
    "pre{background:#f5f5f5;padding:1em;overflow:auto;white-space:pre-wrap}"
    "code{background:#f3f3f3;padding:0 .2em}"
    "details{margin:.5em 0}summary{cursor:pointer;color:#124;padding:.2em 0}"
    ".side{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}"
    ".side>div{flex:1 1 360px;min-width:0}.side>div:first-child{flex:0 1 auto}"
    ".side figure{display:table;margin:0}.side figcaption{display:table-caption;"
    "caption-side:bottom}"
    "nav.toc{border:1px solid #ddd;background:#fafafa;padding:.3em 1em;margin:1.5em 0}"
    "nav.toc ol{columns:2;margin:.3em 0}.first{font-size:95%}"
)

# Inline Markdown, in the order applied to escaped text: code first (nothing inside it is
# converted), then links, bold and italic.
_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])")


def inline(text: str) -> str:
    """``text`` as HTML: escaped, its inline Markdown rendered."""
    codes: list[str] = []

    def keep(m: re.Match) -> str:
        codes.append(f"<code>{m[1]}</code>")
        return f"\0{len(codes) - 1}\0"

    out = _CODE.sub(keep, html.escape(str(text), quote=False))
    out = _LINK.sub(lambda m: f"<a href='{m[2]}'>{m[1]}</a>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _ITALIC.sub(r"<em>\1</em>", out)
    return re.sub("\0(\\d+)\0", lambda m: codes[int(m[1])], out)


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{inline(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _collapsed(summary: str, inner: str) -> str:
    return f"<details><summary>{inline(summary)}</summary>{inner}</details>"


def _html(block: Block, page: list[Block], collapse: bool = False, within: str = "") -> str:
    """One block; ``collapse``: inside a section, tables and code are collapsed; ``within``:
    the section's anchor, which prefixes its headings' (unique on the page)."""
    match block:
        case Heading(level, text):
            anchor = f"{within}-{slug(text)}" if within else slug(text)
            return f"<h{level} id='{anchor}'>{inline(text)}</h{level}>"
        case Paragraph(text):
            return f"<p>{inline(text)}</p>"
        case Bullets(items):
            return "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in items) + "</ul>"
        case Table(header, rows, summary):
            table = _table_html(header, rows)
            if not collapse:
                return (f"<p><em>{inline(summary)}</em></p>" if summary else "") + table
            return _collapsed(summary or f"Table: {', '.join(header)} ({len(rows)} rows)", table)
        case Figure(path, caption):
            data = base64.b64encode(Path(path).read_bytes()).decode()
            return (
                f"<figure><img src='data:image/png;base64,{data}' "
                f"alt='{html.escape(caption)}'><figcaption>{inline(caption)}</figcaption></figure>"
            )
        case Code(text, _lang, summary):
            pre = f"<pre>{html.escape(text)}</pre>"
            return _collapsed(summary or "Code", pre) if collapse else pre
        case Details(summary, inner):
            return _collapsed(summary, "".join(_html(b, page, within=within) for b in inner))
        case Side(columns):
            cols = ["<div>" + "".join(_html(b, page, collapse, within) for b in c) + "</div>"
                    for c in columns]  # fmt: skip
            return "<div class='side'>" + "".join(cols) + "</div>"
        case Section(title, inner):
            body = "".join(_html(b, page, collapse=True, within=block.id) for b in inner)
            return f"<section id='{block.id}'><h2>{inline(title)}</h2>{body}</section>"
        case Contents(title):
            links = "".join(
                f"<li><a href='#{s.id}'>{inline(s.title)}</a></li>" for s in sections(page)
            )
            return f"<nav class='toc'><strong>{inline(title)}</strong><ol>{links}</ol></nav>"
    raise TypeError(f"block: expected one of {Block}, got {type(block).__name__}")


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: figures embedded, no external files."""
    head = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<link rel='icon' href='data:,'>"  # no icon: a self-contained page asks for no file
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
    )
    return "\n".join([head, *(_html(b, blocks) for b in blocks), "</body></html>"]) + "\n"
