"""A small document model written out as Markdown and as self-contained HTML.

The run report and the comparison build one list of blocks and render both files from it, so
the two never disagree. Pictures and links are paths relative to the document's folder, so the
folder can be moved, zipped or opened from disk without a server. `format_table` renders the
same kind of table as plain text for the terminal.
"""

import html
from dataclasses import dataclass, field
from urllib.parse import quote


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    """A paragraph of plain text."""

    text: str


@dataclass(frozen=True)
class Table:
    """Cells are strings; every column but the first is right-aligned (numbers)."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figure:
    src: str  # relative path
    alt: str


@dataclass(frozen=True)
class Gallery:
    """Figures side by side, wrapping to the page width."""

    figures: list[Figure]


@dataclass(frozen=True)
class Links:
    items: list[tuple[str, str]]  # (relative path, text)


@dataclass(frozen=True)
class Code:
    text: str
    lang: str = ""


@dataclass(frozen=True)
class Details:
    """Blocks shown collapsed under a one-line summary (long tables, the configuration)."""

    summary: str
    blocks: list = field(default_factory=list)


Block = Heading | Text | Table | Figure | Gallery | Links | Code | Details

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f4f4f4}
img{max-width:100%;border:1px solid #eee;margin:.3em 0}pre{background:#f6f6f6;padding:.8em;
overflow:auto}summary{cursor:pointer;margin:.6em 0}.gallery{display:flex;flex-wrap:wrap;gap:.5em}
.gallery img{max-width:540px}
""".replace("\n", "")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_block(block: Block) -> str:
    match block:
        case Heading(text, level):
            return "#" * level + " " + text
        case Text(text):
            return text
        case Table(header, rows):
            rule = "|---|" + "--:|" * (len(header) - 1)
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |", rule]
            return "\n".join(lines + ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows])
        case Figure(src, alt):
            return f"![{alt}]({quote(src)})"
        case Gallery(figures):
            return " ".join(_markdown_block(f) for f in figures)
        case Links(items):
            return " · ".join(f"[{text}]({quote(src)})" for src, text in items)
        case Code(text, lang):
            return f"```{lang}\n{text.rstrip()}\n```"
        case Details(summary, blocks):
            inner = "\n\n".join(_markdown_block(b) for b in blocks)
            return f"<details><summary>{html.escape(summary)}</summary>\n\n{inner}\n\n</details>"
    raise TypeError(f"not a document block: {block!r}")


def _html_block(block: Block) -> str:
    e = html.escape
    match block:
        case Heading(text, level):
            return f"<h{level}>{e(text)}</h{level}>"
        case Text(text):
            return f"<p>{e(text)}</p>"
        case Table(header, rows):
            head = "".join(f"<th>{e(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows)
            return f"<table><tr>{head}</tr>{body}</table>"
        case Figure(src, alt):
            return f'<p><img src="{e(quote(src))}" alt="{e(alt)}" loading="eager"></p>'
        case Gallery(figures):
            images = (_html_block(f).removeprefix("<p>").removesuffix("</p>") for f in figures)
            return f'<div class="gallery">{"".join(images)}</div>'
        case Links(items):
            links = " · ".join(f'<a href="{e(quote(src))}">{e(text)}</a>' for src, text in items)
            return f"<p>{links}</p>"
        case Code(text, _):
            return f"<pre>{e(text.rstrip())}</pre>"
        case Details(summary, blocks):
            inner = "\n".join(_html_block(b) for b in blocks)
            return f"<details><summary>{e(summary)}</summary>\n{inner}\n</details>"
    raise TypeError(f"not a document block: {block!r}")


def to_markdown(title: str, blocks: list[Block]) -> str:
    return "\n\n".join([f"# {title}", *map(_markdown_block, blocks)]) + "\n"


def to_html(title: str, blocks: list[Block]) -> str:
    body = "\n".join(_html_block(b) for b in blocks)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n"
        f"<body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def format_table(header: list[str], rows: list[list], *, left: tuple[int, ...] = (0,)) -> str:
    """A plain-text table: the columns in `left` left-aligned (text), the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            str(c).ljust(w) if i in left else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
