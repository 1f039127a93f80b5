"""Text that came off the wire, made safe to store and show.

JSON can carry lone surrogates ("\\ud800"), which are no Unicode text: SQLite, PostgreSQL and
every UTF-8 response would fail on them; and PostgreSQL's text refuses NUL. Both are kept
visible as their escape instead (a NUL as the four characters `\\x00`).
"""

from __future__ import annotations


def safe_text(text: str) -> str:
    """`text` with anything UTF-8 cannot encode, and NUL, replaced by its backslash escape."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` - 3 characters and '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
