"""Every Python snippet of the README and the documentation runs, so the docs cannot rot.

Each Markdown page (`README.md`, `docs/**/*.md`) is one test: its ```python blocks run in order in one
shared namespace, in a fresh temporary working directory. Lines `--8<-- "path"` (pymdownx.snippets
includes) are expanded first, so included files are checked too. A block is skipped only when the
line before its fence is an explicit marker with a reason, `<!-- skip: reason -->`; use it only for
snippets that need a GPU, several processes (torchrun) or the network.

The file also checks that the API reference documents every public name of the package.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import soflow_toolkit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)[^`]*$")
_SKIP = re.compile(r"^\s*<!--\s*skip:\s*(?P<reason>.*?)\s*-->\s*$")
_INCLUDE = re.compile(r'^(?P<indent>[ \t]*)--8<--\s+"(?P<path>[^"]+)"\s*$')


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence in the expanded page
    language: str
    code: str
    skip_reason: str | None


def markdown_pages() -> list[Path]:
    """README.md and every Markdown file under docs/, in a stable order."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def expand_includes(text: str, root: Path = ROOT, depth: int = 0) -> str:
    """Expand pymdownx.snippets single-line includes (paths relative to the repository root).

    Includes of files that do not exist are dropped, as the site does for benchmark results that have
    not been produced yet.
    """
    if depth > 4:
        raise RecursionError("snippet includes nest more than 4 levels deep")
    out: list[str] = []
    for line in text.splitlines():
        match = _INCLUDE.match(line)
        if match is None:
            out.append(line)
            continue
        path = root / match["path"]
        if path.is_file():
            included = expand_includes(path.read_text(encoding="utf-8"), root, depth + 1)
            out.extend(textwrap.indent(included, match["indent"]).splitlines())
    return "\n".join(out)


def extract_blocks(page: Path, root: Path = ROOT) -> list[Block]:
    """All fenced code blocks of a page, with their language and skip marker."""
    lines = expand_includes(page.read_text(encoding="utf-8"), root).splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"]
        close = re.compile(rf"^{re.escape(indent)}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and close.match(lines[j]) is None:
            j += 1
        if j == len(lines):
            raise AssertionError(f"{page.relative_to(ROOT)}:{i + 1}: unclosed code fence")
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : j]
        ]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        skip = _SKIP.match(lines[k]) if k >= 0 else None
        language = info.lower().lstrip("{.").split("}")[0].split()[0] if info else ""
        blocks.append(
            Block(page, i + 1, language, "\n".join(body) + "\n", None if skip is None else skip["reason"])
        )
        i = j + 1
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [b for b in extract_blocks(page) if b.language in ("python", "py")]


PAGES = [p for p in markdown_pages() if p.is_file()]


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=_page_id)
def test_snippets_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the page's Python blocks in order, in one namespace, in a temporary directory."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    # The snippets train tiny models: one thread is faster than several, and much faster on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    try:
        for block in python_blocks(page):
            if block.skip_reason is not None:
                continue
            where = f"{_page_id(page)}:{block.line}"
            code = compile(block.code, where, "exec")
            try:
                exec(code, namespace)
            except Exception as error:
                raise AssertionError(
                    f"the snippet at {where} failed: {type(error).__name__}: {error}"
                ) from error
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_skips_give_a_reason(page: Path) -> None:
    """A skipped block must say why (GPU, torchrun or network), and only Python blocks are skipped."""
    for block in extract_blocks(page):
        if block.skip_reason is None:
            continue
        where = f"{_page_id(page)}:{block.line}"
        assert block.language in ("python", "py"), (
            f"{where}: only Python blocks run, so only they may be skipped"
        )
        assert len(block.skip_reason.split()) >= 2, f"{where}: the skip marker needs a reason"


def test_extraction_finds_known_blocks(tmp_path: Path) -> None:
    """The extractor finds indented blocks, skip markers and includes (a check of the checker)."""
    included = tmp_path / "included.md"
    included.write_text("```python\nc = 3\n```\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "Text\n\n```python\na = 1\n```\n\n<!-- skip: needs a GPU -->\n```python\nb = 2\n```\n\n"
        "!!! note\n\n    ```python\n    d = 4\n    ```\n\n```bash\necho no\n```\n"
        '--8<-- "included.md"\n--8<-- "not-there.md"\n',
        encoding="utf-8",
    )
    blocks = extract_blocks(page, root=tmp_path)
    python = [b for b in blocks if b.language == "python"]
    assert [b.code for b in python] == ["a = 1\n", "b = 2\n", "d = 4\n", "c = 3\n"]
    assert [b.skip_reason for b in python] == [None, "needs a GPU", None, None]
    assert [b.language for b in blocks].count("bash") == 1


def _documented_identifiers() -> set[str]:
    identifiers: set[str] = set()
    for page in (DOCS / "api").rglob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            match = re.match(r"^:::\s+(\S+)", line)
            if match:
                identifiers.add(match.group(1))
    return identifiers


def test_api_reference_covers_every_public_name() -> None:
    """Each name of `soflow_toolkit.__all__` has an API entry: its own `:::` or its module's."""
    documented = _documented_identifiers()
    covered = {name.removeprefix("soflow_toolkit.") for name in documented}
    for identifier in documented:
        module = identifier.removeprefix("soflow_toolkit.")
        obj = getattr(soflow_toolkit, module, None)
        if obj is not None and type(obj).__name__ == "module":
            covered.update(getattr(obj, "__all__", []))
    missing = sorted(set(soflow_toolkit.__all__) - covered - {"__version__"})
    assert not missing, f"public names without an entry in docs/api/*.md: {missing}"
