"""The docs a newcomer reads: the README stays short (at most 1,200 words as `wc -w` counts them, no prose
paragraph over 120 words), and every relative link or image in the README, docs/*.md, the H100 reference's
READMEs and notes, and containers/README.md points at a file or folder that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_WORDS = 1200
MAX_PARAGRAPH_WORDS = 120

# [text](target) and ![alt](target), the target up to the first space or ")" (an optional "title" may follow).
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [text]: target (reference-style definitions)
DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//|#)", re.I)


def linked_pages() -> list[Path]:
    pages = [README, REPO / "report/reference/h100/README.md", REPO / "containers/README.md",
             REPO / "report/reference/h100/NOTES.md", REPO / "report/reference/h100/reproducibility/README.md",
             REPO / "report/reference/h100/earlier/README.md", REPO / "report/reference/h100-generation/README.md"]
    pages += sorted((REPO / "docs").glob("*.md"))
    return [page for page in pages if page.exists()]


def without_code(text: str) -> str:
    """The text with fenced code blocks and inline code spans blanked (a link inside code is not a link)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M | re.S)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", text)


def relative_links(text: str) -> list[str]:
    text = without_code(text)
    targets = LINK.findall(text) + DEFINITION.findall(text)
    return [target for target in targets if not EXTERNAL.match(target)]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    return broken


def prose_paragraphs(text: str) -> list[str]:
    """Blocks separated by blank lines, without fenced code, indented code, tables and headings; a bullet list
    item counts as a paragraph of its own."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.M | re.S)
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line for line in block.splitlines()
                 if line.strip() and not line.startswith("    ") and not line.lstrip().startswith(("|", "#"))]
        item: list[str] = []
        for line in lines:
            if re.match(r"\s*(?:[-*+]|\d+\.)\s", line) and item:
                paragraphs.append(" ".join(item))
                item = []
            item.append(line)
        if item:
            paragraphs.append(" ".join(item))
    return paragraphs


def test_the_readme_is_short():
    words = len(README.read_text(encoding="utf-8").split())  # as `wc -w` counts them
    assert words <= MAX_WORDS, f"README.md has {words} words (at most {MAX_WORDS}): move detail to docs/"


def test_no_readme_paragraph_is_long():
    long = [(len(p.split()), p[:80]) for p in prose_paragraphs(README.read_text(encoding="utf-8"))
            if len(p.split()) > MAX_PARAGRAPH_WORDS]
    assert not long, f"README.md paragraphs over {MAX_PARAGRAPH_WORDS} words: {long}"


def test_the_readme_shows_the_answer_box_and_the_commands():
    text = README.read_text(encoding="utf-8")
    assert "](docs/answer-box.png)" in text and (REPO / "docs/answer-box.png").is_file()
    for command in ("make report", "make gpu-report", "make test", "download.pytorch.org/whl/cpu"):
        assert command in text, command


@pytest.mark.parametrize("page", linked_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page):
    assert not broken_links(page), f"{page.relative_to(REPO)}: broken links {broken_links(page)}"


def test_the_docs_pages_exist_and_are_linked_from_the_readme():
    text = README.read_text(encoding="utf-8")
    for name in ("methodology", "configuration", "reproducibility", "containers", "scale-out", "tensorrt",
                 "faults", "architecture"):
        assert (REPO / "docs" / f"{name}.md").is_file(), name
        assert f"](docs/{name}.md)" in text, name


def test_the_link_check_catches_a_broken_link(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    (tmp_path / "dir").mkdir()
    page.write_text("[ok](there.md#a) ![img](missing.png) [d](dir/) [web](https://example.com) [a](#top)\n"
                    "`[not](code.md)`\n```\n[nor](fenced.md)\n```\n[ref]: gone/away.md\n"
                    "[nested [brackets]](also-missing.md \"title\")\n")
    assert broken_links(page) == ["missing.png", "also-missing.md", "gone/away.md"]


def test_the_paragraph_rule_counts_prose_only():
    text = ("intro words here\n\n```\n" + "code " * 500 + "\n```\n\n| a | b |\n|---|---|\n| " + "cell " * 300
            + "|\n\n- item one\n- " + "long " * 130 + "\n")
    counts = [len(p.split()) for p in prose_paragraphs(text)]
    assert counts == [3, 3, 131]
