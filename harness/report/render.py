"""A report as a list of blocks, rendered to markdown and to one self-contained HTML page.

Blocks: ("h1"|"h2"|"h3", text), ("p", text), ("ul", [items]), ("table", DataFrame),
("figure", png path relative to the report folder, caption). The HTML embeds every image as
base64 and uses no external script or stylesheet, so it opens offline.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

Block = tuple[Any, ...]
FLOAT = "{:.6g}".format

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #ccc}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:1em 0;display:block;overflow-x:auto;max-width:100%}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:13px;color:#555}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em}
"""


def cell(value: Any) -> str:
    """One table cell: blank for missing values, 6 significant digits for floats."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return FLOAT(value) if isinstance(value, float) else str(value)


def _markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(empty)_"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v).replace("|", "\\|") for v in values) + " |" for values in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            out.append(_markdown_table(block[1]))
        elif kind == "figure":
            out.append(f"![{block[2]}]({block[1]})\n\n*{block[2]}*")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[Block], root: Path, title: str) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            css = ' class="note"' if block[1].startswith("**Note") else ""
            body.append(f"<p{css}>{html.escape(block[1]).replace('**', '')}</p>")
        elif kind == "ul":
            items = "".join(f"<li>{html.escape(str(i))}</li>" for i in block[1])
            body.append(f"<ul>{items}</ul>")
        elif kind == "table":
            frame = block[1]
            body.append(frame.map(cell).to_html(index=False, border=0) if not frame.empty else "<p><em>(empty)</em></p>")
        elif kind == "figure":
            data = base64.b64encode((root / block[1]).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}"><figcaption>{html.escape(block[2])}</figcaption></figure>')
    return (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
