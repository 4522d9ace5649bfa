"""Third-party HTML reports made safe against script breakout by the data they show.

evidently (0.7) writes a report's data as JSON inside a ``<script>`` element
(``var metric_... = {...};``) with ``json.dumps``, which leaves ``<`` and ``/`` as they are. A
category value ``</script><img src=x onerror=...>`` from the source data or from anonymous
scoring rows therefore ends the script element early and the rest of the value runs as HTML in
the page; a value holding ``<!--<script`` puts the parser in a state where the real end tag no
longer closes the element. `safe_report_html` post-processes the finished page, so it covers
every value path (category values, column names, labels, anything evidently might embed):

- it walks the page's real script elements (it skips comments between them and, inside a
  script, takes the extent of each ``var NAME = <JSON>`` statement from Python's JSON parser, so a
  ``</script`` inside a JSON string is not mistaken for the element's end) and writes every ``<``
  inside those JSON values as ``\\u003c``: the same value to JavaScript, but no ``</script``,
  ``<!--`` or ``<script`` can appear in the element's text any more;
- it adds a Content-Security-Policy (``<meta http-equiv>``) that lets only those script elements
  run (by their SHA-256) and no inline event handler, ``javascript:`` URL or plugin: should a
  value reach the DOM as markup some other way (evidently's own JavaScript rendering it as HTML),
  an ``onerror=`` in it still does not run.

It relies on the page's data sitting in such JSON statements, as evidently writes it (a value
written into a script any other way could not be told from the script's own text, and its
breakout would look like one of the page's scripts to the policy too); the page's own scripts
must be inline (the policy blocks ``<script src>``: evidently's single-file report has none).
Applying it twice changes nothing. Pages embedding a third-party report put it in an ``iframe``
with ``sandbox="allow-scripts"`` (never with ``allow-same-origin``), so its scripts cannot reach
the embedding page either.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re

_TOP = re.compile(r"<!--|<script\b[^>]*>", re.IGNORECASE)  # outside scripts: comments and script start tags
_END = re.compile(r"</script[\t\n\f\r />]", re.IGNORECASE)  # what ends a script element (HTML's rule)
# A data statement: ``var NAME = `` (or let / const / window.NAME) at the start of a line, then JSON.
_DATA = re.compile(r"^[ \t]*(?:(?:var|let|const)\s+[\w$]+|window\.[\w$]+)\s*=\s*(?=[\[{\"])", re.MULTILINE)
_JSON_TYPES = ("application/json", "application/ld+json", "importmap")
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
_TYPE = re.compile(r"(?<![\w-])type\s*=\s*[\"']?([^\"'\s>]+)", re.IGNORECASE)
_SPACE = re.compile(r"\s*")
_JSON = json.JSONDecoder()


def _escape_body(page: str, start: int, whole_json: bool) -> tuple[str, int]:
    """The text of the script element starting at ``start`` with ``<`` escaped inside its JSON
    values, and where its end tag starts (``len(page)`` when it has none)."""
    out, pos = [], start
    while True:
        end = _END.search(page, pos)
        stop = end.start() if end else len(page)
        if whole_json:  # a JSON data block: its text is one JSON value
            found = _SPACE.match(page, pos) if pos == start else None
        else:
            found = _DATA.search(page, pos, stop)
        if found is None:
            out.append(page[pos:stop])
            return "".join(out), stop
        out.append(page[pos:found.end()])
        pos = found.end()
        try:
            _, value_end = _JSON.raw_decode(page, pos)
        except ValueError:  # not JSON after all: go on after the assignment
            continue
        out.append(page[pos:value_end].replace("<", "\\u003c"))  # JSON has "<" only inside strings
        pos = value_end


def safe_report_html(page: str) -> str:
    """``page`` (a third-party HTML report, e.g. evidently's) with no data able to end a script
    element early, and a Content-Security-Policy that runs only the page's own script elements."""
    out, hashes, pos, scan, first_script = [], [], 0, 0, None
    while (tag := _TOP.search(page, scan)) is not None:
        if tag.group(0) == "<!--":  # a comment: no element starts inside it
            close = page.find("-->", tag.end())
            scan = len(page) if close < 0 else close + 3
            continue
        first_script = tag.start() if first_script is None else first_script
        kind = _TYPE.search(tag.group(0))
        whole_json = bool(kind) and kind.group(1).lower() in _JSON_TYPES
        body, stop = _escape_body(page, tag.end(), whole_json)
        out += [page[pos:tag.end()], body]
        if not whole_json:
            text = body.replace("\r\n", "\n").replace("\r", "\n")  # as the browser's parser hands it on
            hashes.append(base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode())
        pos = scan = stop
    out.append(page[pos:])
    safe = "".join(out)
    sources = " ".join(f"'sha256-{h}'" for h in dict.fromkeys(hashes)) or "'none'"
    policy = (f'<meta http-equiv="Content-Security-Policy" content="script-src {sources}; '
              "object-src 'none'; base-uri 'none'\">")
    before_scripts = len(safe) if first_script is None else first_script
    if policy in safe[:before_scripts]:  # already made safe (the validation report embeds a safe page)
        return safe
    head = _HEAD.search(safe, 0, before_scripts)
    return safe[:head.end()] + policy + safe[head.end():] if head else policy + safe
