"""The Markdown documentation's links, and the docs build's strictness.

Sphinx (``make docs``, part of CI) checks the pages under docs/ as it builds them; it never sees
README.md, config/README.md or bench/README.md, nor how GitHub renders a page. These tests read every
relative link of those files as GitHub does: the target file must exist, and a ``#section`` must be the
slug of one of its headings.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import REPO_ROOT

MARKDOWN_FILES = sorted(
    {
        REPO_ROOT / "README.md",
        *REPO_ROOT.glob("config/*.md"),
        *REPO_ROOT.glob("bench/*.md"),
        *(path for path in REPO_ROOT.glob("docs/**/*.md") if "_build" not in path.relative_to(REPO_ROOT).parts),
    }
)

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"""<a\s+(?:id|name)=["']([^"']+)["']""")
INCLUDE = re.compile(r"^ {0,3}(?:`{3,}|~{3,}|:{3,})\{include\}\s+(\S+)", re.MULTILINE)
MYST_TARGET = re.compile(r"^\(([\w.:-]+)\)=\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target), with an optional "title"; the text may hold `code` and brackets
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.MULTILINE)  # [label]: target
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every line outside fenced code blocks (and MyST directives' fences)."""
    lines, fence = [], None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(1)
            else:
                lines.append((number, line))
        elif match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
            if not line.strip()[len(match.group(1)) :]:  # a closing fence has nothing after it
                fence = None
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading (MyST's ``myst_heading_anchors`` makes the same ones)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = INLINE_CODE.sub(lambda m: m.group(2), text)
    text = re.sub(r"<[^>]+>", "", text)
    text = unicodedata.normalize("NFC", text).strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every ``#anchor`` of a Markdown file: heading slugs (repeats get -1, -2, ...), HTML and MyST targets.

    A file a page includes (MyST's ``{include}``, as docs/guide/workflow.md includes config/README.md)
    lends the page its anchors, as in the built site.
    """
    found: set[str] = set()
    for included in INCLUDE.findall(path.read_text(encoding="utf-8")):
        if (path.parent / included).is_file():
            found |= anchors((path.parent / included).resolve())
    seen: dict[str, int] = {}
    for _, line in prose_lines(path):
        if heading := HEADING.match(line):
            slug = github_slug(heading.group(2))
            found.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
        found.update(HTML_ANCHOR.findall(line))
        if target := MYST_TARGET.match(line):
            found.add(target.group(1))
    return found


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code; a link's text may wrap lines."""
    numbered = dict(prose_lines(path))
    total = len(path.read_text(encoding="utf-8").splitlines())
    text = "\n".join(numbered.get(number, "") for number in range(1, total + 1))
    text = INLINE_CODE.sub(lambda m: " " * len(m.group(0)), text)  # same length: line numbers hold
    matches = sorted([*LINK.finditer(text), *DEFINITION.finditer(text)], key=lambda match: match.start())
    return [
        (text.count("\n", 0, match.start()) + 1, unquote(match.group(1)))
        for match in matches
        if not EXTERNAL.match(match.group(1))
    ]


def broken_links(path: Path) -> list[str]:
    problems = []
    for number, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        where = f"{path.relative_to(REPO_ROOT)}:{number}: {target}"
        linked = path if not file_part else (path.parent / file_part).resolve()
        if file_part and not linked.exists():
            problems.append(f"{where}: no such file")
        elif anchor and linked.suffix == ".md" and linked.is_file() and anchor not in anchors(linked):
            problems.append(f"{where}: no heading with anchor #{anchor} in {linked.name}")
    return problems


def test_the_markdown_files_are_found():
    names = {path.relative_to(REPO_ROOT).as_posix() for path in MARKDOWN_FILES}
    assert {"README.md", "docs/index.md", "docs/api/index.md", "docs/guide/command.md"} <= names


@pytest.mark.parametrize("path", MARKDOWN_FILES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_link_check_sees_a_broken_file_and_a_broken_anchor(tmp_path, monkeypatch):
    monkeypatch.setitem(globals(), "REPO_ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Other page\n\n## Step 2: `make docs`\n\n## Step 2: `make docs`\n")
    (tmp_path / "included.md").write_text("# Keys\n")
    (tmp_path / "including.md").write_text("# Including\n\n```{include} included.md\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n"
        "[ok](other.md#step-2-make-docs) [ok](other.md#step-2-make-docs-1) [ok](#title) [ok](https://x.org/a.md)\n"
        "[ok](including.md#keys) ![ok](other.md)\n"
        "[missing](nowhere.md) [bad anchor](other.md#step-3) [bad here](#nothing) ![missing](image.png)\n\n"
        "```bash\n[not a link](inside-code.md)\n```\n\n"
        "`[not a link](inline-code.md)`\n"
        "[a link whose text\nwraps](wrapped.md) [a reference][label]\n\n[label]: defined.md\n"
    )
    problems = broken_links(page)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "nowhere.md: no such file",
        "other.md#step-3: no heading with anchor #step-3 in other.md",
        "#nothing: no heading with anchor #nothing in page.md",
        "image.png: no such file",
        "wrapped.md: no such file",
        "defined.md: no such file",
    ]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_docs_treats_warnings_as_errors():
    commands = subprocess.run(
        ["make", "-n", "-C", str(REPO_ROOT), "docs"], capture_output=True, text=True, check=True
    ).stdout
    build = [line for line in commands.splitlines() if "sphinx-build" in line]
    assert build, commands
    assert " -W" in build[-1] and " docs " in f"{build[-1]} "
