"""A report as a list of typed blocks, rendered to Markdown or to self-contained HTML.

The report stage and the bounds page build :data:`Block` lists; :func:`render_markdown` and
:func:`render_html` are the only places that know either format (figures are embedded in the
HTML as base64 PNGs, and linked relative to the run directory in the Markdown).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
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
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


@dataclass(frozen=True)
class Code:
    text: str
    lang: str = ""


Block = Heading | Paragraph | Bullets | Table | Figure | Code


def _markdown(block: Block, root: Path | None) -> str:
    match block:
        case Heading(level, text):
            return "#" * level + " " + text
        case Paragraph(text):
            return text
        case Bullets(items):
            return "\n".join(f"- {item}" for item in items)
        case Table(header, rows):
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])
        case Figure(path, caption):
            link = Path(path).relative_to(root) if root else path
            return f"![{caption}]({link})\n\n*{caption}*"
        case Code(text, lang):
            return f"```{lang}\n{text.rstrip()}\n```"
    raise TypeError(f"block: expected one of {Block}, got {type(block).__name__}")


def render_markdown(blocks: list[Block], root: Path | None = None) -> str:
    """Markdown; figure links relative to ``root`` (the run directory) when given."""
    return "\n\n".join(_markdown(b, root) for b in blocks) + "\n"


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;"
    "text-align:right}img{max-width:100%}pre{background:#f5f5f5;padding:1em;overflow:auto}"
)


def _html(block: Block) -> str:
    esc = html.escape
    match block:
        case Heading(level, text):
            return f"<h{level}>{esc(text)}</h{level}>"
        case Paragraph(text):
            return f"<p>{esc(text)}</p>"
        case Bullets(items):
            return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"
        case Table(header, rows):
            head = "".join(f"<th>{esc(h)}</th>" for h in header)
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows
            )
            return f"<table><tr>{head}</tr>{body}</table>"
        case Figure(path, caption):
            data = base64.b64encode(Path(path).read_bytes()).decode()
            return (
                f"<figure><img src='data:image/png;base64,{data}' alt='{esc(caption)}'>"
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
        case Code(text, _lang):
            return f"<pre>{esc(text)}</pre>"
    raise TypeError(f"block: expected one of {Block}, got {type(block).__name__}")


def render_html(blocks: list[Block], title: str) -> str:
    """One self-contained page: figures embedded, no external files."""
    head = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
    )
    return "\n".join([head, *map(_html, blocks), "</body></html>"]) + "\n"
