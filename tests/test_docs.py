"""The docs keep up with the code: every command explains itself with an example and is
written up, every link in the docs leads somewhere, and the wire contract's topics, settings and
HTTP endpoints are all named in the docs.

Checked files: README.md and docs/*.md. A failure names what to write and where.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

import fleetloop.cli
from protocol import config as config_codec
from protocol import topics

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"


# -- the command tree -----------------------------------------------------------------------

def _walk(command: Any, name: str) -> Iterator[tuple[str, Any]]:
    """(full name, command) for `command` and everything under it, hidden commands left out.

    Groups are found by their `commands` mapping rather than by class: typer ships its own
    copy of click, so isinstance checks against `click.Group` do not hold.
    """
    if getattr(command, "hidden", False):
        return
    yield name, command
    for sub_name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _walk(sub, f"{name} {sub_name}")


COMMANDS = dict(_walk(typer.main.get_command(fleetloop.cli.app), "fleetloop"))
LEAVES = [name for name, cmd in COMMANDS.items() if not getattr(cmd, "commands", None)]


def _docs_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in DOC_FILES)


def test_the_tree_was_walked() -> None:
    # Guards the walk itself: an empty or flat tree would make the tests below pass vacuously.
    assert {"fleetloop cloud serve", "fleetloop gateway diag", "fleetloop fw keygen"} <= set(LEAVES)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_help_has_an_example(name: str) -> None:
    help_text = COMMANDS[name].help or ""
    assert help_text.strip(), f"`{name}` has no help text"
    assert "Example:" in help_text, (
        f"`{name} --help` shows no example: add a line 'Example: {name} ...' to its help "
        "(the docstring, or help= of its typer.Typer for a group)"
    )


@pytest.mark.parametrize("name", LEAVES)
def test_command_is_documented(name: str) -> None:
    pattern = re.compile(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])")
    assert pattern.search(_docs_text()), (
        f"`{name}` is named in neither README.md nor docs/*.md: document it "
        "(operations.md for running things, factory.md for fw commands)"
    )


# -- links ------------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REF_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\S.*)?$", re.M)
_HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*["']([^"']+)["']""", re.I)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")


def _prose(text: str) -> str:
    """Markdown without fenced code blocks and code spans (their brackets are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _relative_links(path: Path) -> list[str]:
    text = _prose(path.read_text(encoding="utf-8"))
    targets = [m.group(1) for rx in (_INLINE_LINK, _REF_LINK, _HTML_LINK) for m in rx.finditer(text)]
    return [t for t in targets if not _SCHEME.match(t)]


def _resolve(source: Path, target: str) -> tuple[Path, str]:
    """(file the link points at, its #fragment or '')."""
    file_part, _, fragment = target.partition("#")
    file_part = file_part.split("?", 1)[0]
    if not file_part:
        return source, fragment
    base = ROOT if file_part.startswith("/") else source.parent
    return (base / file_part.lstrip("/")).resolve(), fragment


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    kept = "".join(
        ch for ch in text
        if ch in " -_" or unicodedata.category(ch)[0] in "LNM"
    )
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = _slug(match.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files(doc: Path) -> None:
    missing = []
    for target in _relative_links(doc):
        path, _ = _resolve(doc, target)
        if not path.exists():
            missing.append(target)
    assert not missing, f"{doc.relative_to(ROOT)} links to missing files: {missing}"


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_into_markdown_name_existing_headings(doc: Path) -> None:
    broken = []
    for target in _relative_links(doc):
        path, fragment = _resolve(doc, target)
        if fragment and path.suffix == ".md" and path.is_file() and fragment not in _anchors(path):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to headings that do not exist: {broken}"


def test_link_finder_sees_links_and_skips_code(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text(
        "See [ops](docs/operations.md#the-cloud) and ![img](a.png \"t\").\n"
        "[ref]: ../other.md\n"
        "Not a link: `[x](nope.md)`, nor [web](https://example.com) nor [here](#top).\n"
        "```\n[y](alsonope.md)\n```\n"
    )
    assert sorted(_relative_links(doc)) == [
        "#top", "../other.md", "a.png", "docs/operations.md#the-cloud"]
    assert _slug("`fleetloop gateway diag`: what each line means") == (
        "fleetloop-gateway-diag-what-each-line-means"
    )


# -- the wire contract in docs/protocol.md ------------------------------------------------------

@pytest.mark.parametrize("kind", [*topics.UPLINK, *topics.DOWNLINK])
def test_every_topic_is_in_the_protocol_doc(kind: str) -> None:
    name = f"{topics.PREFIX}/<id>/{kind}"
    assert name in PROTOCOL_DOC.read_text(encoding="utf-8"), (
        f"topic `{name}` (protocol.topics) is not in docs/protocol.md"
    )


def _number_pattern(value: int) -> str:
    """`3600000` as written in prose: 3600000, 3,600,000 or 3 600 000."""
    digits = str(value)
    groups: list[str] = []
    while digits:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    return r"(?<![\d,])" + r"[, \u202f]?".join(groups) + r"(?![\d,])"


@pytest.mark.parametrize("setting", sorted(config_codec.SETTINGS))
def test_every_setting_and_its_range_is_in_the_protocol_doc(setting: str) -> None:
    low, high = config_codec.SETTINGS[setting]
    lines = [line for line in PROTOCOL_DOC.read_text(encoding="utf-8").splitlines()
             if f"`{setting}`" in line]
    assert lines, f"setting `{setting}` (protocol.config.SETTINGS) is not in docs/protocol.md"
    assert any(re.search(_number_pattern(low), line) and re.search(_number_pattern(high), line)
               for line in lines), (
        f"docs/protocol.md names `{setting}` but not on a line with its range {low}..{high}"
    )


# -- the cloud's HTTP API ----------------------------------------------------------------------

def _cloud_endpoints(tmp_path: Path) -> list[str]:
    from cloud.main import create_app
    from cloud.settings import Settings

    app = create_app(Settings.load(home=tmp_path, dev=True, env={}))
    spec = app.openapi()
    return [f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops]


def test_every_cloud_endpoint_is_documented(tmp_path: Path) -> None:
    text = _docs_text()
    missing = [e for e in _cloud_endpoints(tmp_path)
               if not re.search(re.escape(e) + r"(?![\w/{])", text)]
    assert not missing, (
        f"cloud endpoints named in neither README.md nor docs/*.md (as 'METHOD /path'): {missing}"
    )
