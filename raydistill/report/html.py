"""The report as one self-contained HTML file: the Markdown rendered by markdown-it-py, every
figure it shows embedded as a ``data:`` URI, so the file can be mailed or attached alone."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from urllib.parse import unquote

from markdown_it import MarkdownIt

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""
IMAGE_SOURCE = re.compile(r'<img src="([^"]+)"')


def link_target(path: str) -> str:
    """``path`` as a Markdown link destination: in angle brackets when it holds spaces or
    parentheses (a class folder such as ``air drumming``), which end a bare destination."""
    return f"<{path}>" if re.search(r"[\s()<>]", path) else path


def report_html(markdown: str, read_figure: Callable[[str], bytes | None], title: str) -> str:
    """HTML of the report's ``markdown`` with every image inlined whose PNG ``read_figure``
    returns (given its path relative to the report, as the Markdown names it); an image it
    cannot read keeps its link."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)

    def inline(match: re.Match) -> str:
        data = read_figure(unquote(html.unescape(match.group(1))))
        if data is None:
            return match.group(0)
        return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}"'

    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{IMAGE_SOURCE.sub(inline, body)}</body>\n</html>\n")
