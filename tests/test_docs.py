"""Every Python snippet of the README and the documentation runs, and prints what the page says it prints.

**Running.** Each Markdown page (`README.md`, `docs/**/*.md`) is one test: its ```python blocks run in
order in one shared namespace, in a fresh temporary working directory, with one torch thread. Lines
`--8<-- "path"` (pymdownx.snippets includes) are expanded first, so included files are checked too. A
block is skipped only when the line before its fence is an explicit marker with a reason,
`<!-- skip: reason -->`; use it only for snippets that need a GPU, several processes (torchrun) or the
network.

**Printed values.** What a block prints is captured and compared with the output block that follows
it: the next fenced block of the page, written as

    ```text title="Output"
    0 {'sc_mse': 3.0419, 'r': 0.2, 'step': 0.0}
    ```

(on the site it renders as a box titled "Output"). The comparison splits both texts into numbers and
the text between them:

- the text between numbers must be equal, up to runs of whitespace (torch pads tensor columns to the
  width of their numbers);
- there must be as many numbers, and each printed number $a$ must match the page's number $b$ within
  $|a - b| \\le \\text{atol} + \\text{rtol}\\,|b|$, where by default $\\text{rtol} = 10^{-3}$ and atol is
  one unit of the last digit written on the page (so `0.0012` accepts 0.0011 to 0.0013, `300` accepts
  299 to 301). A page may state a wider tolerance for one output block, on the line before its fence:
  `<!-- tolerance: rtol=0.02 atol=0.01 -->` (either key may be left out); use it for values at the end
  of a training run, which move with the floating-point summation order of the machine, and say so in
  the prose.

A block that prints with no output block after it fails, and so does an output block that follows no
running Python block, so every printed value on the site is checked.

**Seeding.** A reader who copies a page must get the page's output, so every snippet seeds what it
draws: torch's global generator (which also initialises `nn.Module` weights) must be seeded with
`torch.manual_seed` on the page before anything draws from it; other draws go through seeded
`torch.Generator`s. The test fails when the global generator is used before the page seeds it.

**Figures.** A figure that a page draws with its own code is shown from `docs/assets/<page name>/`
(the tutorial: `docs/assets/tutorial/`); the page's code must write a file of the same name into its
working directory, so the picture on the site is the one the code on the page draws
(`python scripts/docs_outputs.py docs/tutorial.md --assets --write` redraws the committed files and
rewrites the output blocks). Figures and tables that a measurement script writes live in
`docs/assets/<script name>/` instead (`scripts/troubleshooting_runs.py`: `docs/assets/troubleshooting_runs/`).

**Width.** Code lines are at most 88 characters, the width that fits the content column at a 1280 px
window (`scripts/check_docs_browser.py` measures the rendered pages).

The file also checks that the API reference documents every public name of the package.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import soflow_toolkit

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MAX_CODE_COLUMNS = 88
DEFAULT_RTOL = 1e-3

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\s`]*)(?P<attrs>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<key>skip|tolerance):\s*(?P<value>.*?)\s*-->\s*$")
_INCLUDE = re.compile(r'^(?P<indent>[ \t]*)--8<--\s+"(?P<path>[^"]+)"\s*$')
_OUTPUT_TITLE = re.compile(r'\btitle="Output"')
# A number that is not part of a name (`float32`, `fm_mse`): digits with optional sign, decimals and
# exponent, or nan/inf as Python and torch print them.
_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])|(?<![\w.])-?(?:nan|inf)\b"
)
_TOLERANCE = re.compile(r"^(?:(?:rtol|atol)=[0-9.eE+-]+\s*)+$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence in the expanded page
    language: str
    code: str
    skip_reason: str | None
    is_output: bool = False  # a ```text title="Output" block
    tolerance: str | None = None  # the `<!-- tolerance: ... -->` marker before the fence


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
    """All fenced code blocks of a page, with their language, output flag and markers."""
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
            raise AssertionError(f"{page}:{i + 1}: unclosed code fence")
        body = [
            line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines[i + 1 : j]
        ]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = _MARKER.match(lines[k]) if k >= 0 else None
        language = info.lower().lstrip("{.").split("}")[0].split()[0] if info else ""
        blocks.append(
            Block(
                page,
                i + 1,
                language,
                "\n".join(body) + "\n",
                skip_reason=marker["value"] if marker is not None and marker["key"] == "skip" else None,
                is_output=language == "text" and _OUTPUT_TITLE.search(match["attrs"] or "") is not None,
                tolerance=marker["value"] if marker is not None and marker["key"] == "tolerance" else None,
            )
        )
        i = j + 1
    return blocks


def python_blocks(page: Path) -> list[Block]:
    return [b for b in extract_blocks(page) if b.language in ("python", "py")]


def expected_outputs(blocks: list[Block]) -> dict[int, Block]:
    """Map each Python block (by index) to the output block that follows it, checking the pairing."""
    pairs: dict[int, Block] = {}
    for index, block in enumerate(blocks):
        if not block.is_output:
            continue
        where = f"{block.page}:{block.line}"
        previous = blocks[index - 1] if index > 0 else None
        if previous is None or previous.language not in ("python", "py") or previous.skip_reason is not None:
            raise AssertionError(f"{where}: an output block must follow a Python block that runs")
        pairs[index - 1] = block
    return pairs


def _tolerance(marker: str | None, where: str) -> dict[str, float]:
    if marker is None:
        return {}
    if _TOLERANCE.match(marker) is None:
        raise AssertionError(f"{where}: write the tolerance as 'rtol=X atol=Y'; got {marker!r}")
    return {key: float(value) for key, value in re.findall(r"(rtol|atol)=(\S+)", marker)}


def _resolution(text: str) -> float:
    """One unit of the last digit written: 1 for `300`, 0.01 for `-0.74`, 1e-5 for `1.5e-4`."""
    if "nan" in text or "inf" in text:
        return 0.0
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return 10.0 ** (-decimals + (int(exponent) if exponent else 0))


def compare_output(
    printed: str, expected: str, *, rtol: float = DEFAULT_RTOL, atol: float | None = None
) -> list[str]:
    """Differences between a printed text and the page's output block (empty when they agree)."""

    def split(text: str) -> tuple[list[str], list[str]]:
        numbers = _NUMBER.findall(text)
        words = [" ".join(part.split()) for part in _NUMBER.split(text)]
        return numbers, words

    got_numbers, got_text = split(printed)
    want_numbers, want_text = split(expected)
    problems: list[str] = []
    if got_text != want_text or len(got_numbers) != len(want_numbers):
        problems.append(
            f"the text differs:\n--- printed\n{printed.rstrip()}\n--- the page\n{expected.rstrip()}"
        )
        return problems
    for got, want in zip(got_numbers, want_numbers, strict=True):
        a, b = float(got), float(want)
        if math.isnan(b):
            if not math.isnan(a):
                problems.append(f"printed {got}, the page says {want}")
            continue
        limit = (_resolution(want) if atol is None else max(atol, _resolution(want))) + rtol * abs(b)
        if not abs(a - b) <= limit:
            problems.append(f"printed {got}, the page says {want} (allowed difference {limit:.3g})")
    return problems


PAGES = [p for p in markdown_pages() if p.is_file()]


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT)) if page.is_relative_to(ROOT) else page.name


class _SeedWatch:
    """Records whether torch's global generator is used before the page seeds it."""

    def __init__(self) -> None:
        self.original = torch.manual_seed
        self.initial = torch.get_rng_state()
        self.seeded = False
        self.unseeded_use = False

    def used(self) -> bool:
        return not torch.equal(torch.get_rng_state(), self.initial)

    def manual_seed(self, seed: int) -> torch.Generator:
        if not self.seeded and self.used():
            self.unseeded_use = True
        self.seeded = True
        return self.original(seed)


def run_page(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the page's Python blocks in order in one namespace; check outputs and seeding."""
    blocks = extract_blocks(page)
    outputs = expected_outputs(blocks)
    torch.manual_seed(0)
    watch = _SeedWatch()
    monkeypatch.setattr(torch, "manual_seed", watch.manual_seed)
    monkeypatch.setattr(torch.random, "manual_seed", watch.manual_seed)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for index, block in enumerate(blocks):
        if block.language not in ("python", "py") or block.skip_reason is not None:
            continue
        where = f"{_page_id(page)}:{block.line}"
        code = compile(block.code, where, "exec")
        stdout = io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout):
                exec(code, namespace)
        except Exception as error:
            raise AssertionError(f"the snippet at {where} failed: {type(error).__name__}: {error}") from error
        if watch.unseeded_use or (not watch.seeded and watch.used()):
            raise AssertionError(
                f"the snippet at {where} draws from torch's global random generator (random tensors "
                "without generator=, or nn.Module weights) before the page calls torch.manual_seed: a "
                "reader would get other numbers. Seed it on the page, or use a seeded torch.Generator."
            )
        printed = stdout.getvalue()
        expected = outputs.get(index)
        if expected is None:
            if printed:
                raise AssertionError(
                    f"the snippet at {where} prints, but no output block follows it; add\n"
                    f'```text title="Output"\n{printed.rstrip()}\n```'
                )
            continue
        tolerance = _tolerance(expected.tolerance, f"{_page_id(page)}:{expected.line}")
        problems = compare_output(
            printed, expected.code, rtol=tolerance.get("rtol", DEFAULT_RTOL), atol=tolerance.get("atol")
        )
        if problems:
            raise AssertionError(
                f"the snippet at {where} prints something else than its output block "
                f"(line {expected.line}):\n" + "\n".join(problems)
            )


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=_page_id)
def test_snippets_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the page's Python blocks in order, in one namespace, in a temporary directory."""
    monkeypatch.chdir(tmp_path)
    # The snippets train tiny models: one thread is faster than several, and much faster on a busy
    # machine; it also fixes the summation order, so printed values repeat exactly on this machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_page(page, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    # Pictures that a page draws with its own code live in docs/assets/<page name>/ and are redrawn by
    # `python scripts/docs_outputs.py PAGE --assets --write`: each must be written by the page's code.
    drawn = re.findall(
        rf"!\[[^\]]*\]\((?:\.\./)*assets/{re.escape(page.stem)}/([^)\s]+)\)", page.read_text("utf-8")
    )
    missing = [name for name in drawn if not (tmp_path / name).is_file()]
    assert not missing, f"{_page_id(page)} shows figures that its code does not write: {missing}"


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


# Benchmark pages quote the commands and tables that the benchmark scripts write.
_WIDTH_EXEMPT = re.compile(r"^docs/benchmarks")


@pytest.mark.parametrize("page", [p for p in PAGES if not _WIDTH_EXEMPT.match(_page_id(p))], ids=_page_id)
def test_code_lines_fit_the_column(page: Path) -> None:
    """Code lines are at most 88 characters, so that no code block scrolls sideways at 1280 px."""
    long = [
        f"{_page_id(page)}, the block at line {block.line} (includes expanded): {len(line)} characters: "
        f"{line.strip()[:60]}"
        for block in extract_blocks(page)
        for n, line in enumerate(block.code.splitlines())
        if len(line) > MAX_CODE_COLUMNS
    ]
    assert not long, f"code lines longer than {MAX_CODE_COLUMNS} characters:\n" + "\n".join(long)


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


def _write_page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def test_output_blocks_are_compared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A printed value that differs from its output block fails; one within tolerance passes."""
    monkeypatch.chdir(tmp_path)
    code = "```python\nimport torch\nprint(torch.tensor([1.25, -3.5]), 'r', 0.002)\n```\n\n"
    good = _write_page(tmp_path, code + '```text title="Output"\ntensor([ 1.2500, -3.5000]) r 0.002\n```\n')
    assert extract_blocks(good)[1].is_output
    run_page(good, monkeypatch)
    changed = _write_page(
        tmp_path, code + '```text title="Output"\ntensor([ 1.2600, -3.5000]) r 0.002\n```\n'
    )
    with pytest.raises(AssertionError, match=r"printed 1\.2500, the page says 1\.2600"):
        run_page(changed, monkeypatch)
    loose = _write_page(
        tmp_path,
        code + '<!-- tolerance: rtol=0.01 -->\n```text title="Output"\ntensor([1.26, -3.5]) r 0.002\n```\n',
    )
    run_page(loose, monkeypatch)
    words = _write_page(tmp_path, code + '```text title="Output"\ntensor([1.25, -3.5]) s 0.002\n```\n')
    with pytest.raises(AssertionError, match="the text differs"):
        run_page(words, monkeypatch)


def test_compare_output_rules() -> None:
    """Numbers within one unit of the last digit (plus rtol) match; names with digits are text."""
    assert compare_output("0.00115\n", "0.0012\n") == []
    assert compare_output("0.00135\n", "0.0012\n") != []
    assert compare_output("300\n", "301\n") == []
    assert compare_output("303\n", "301\n") != []
    assert compare_output("torch.float32 1e-3\n", "torch.float32   0.001\n") == []
    assert compare_output("torch.float64\n", "torch.float32\n") != []
    assert compare_output("{'fm_mse': 1.5}\n", "{'sc_mse': 1.5}\n") != []
    assert compare_output("nan\n", "nan\n") == []
    assert compare_output("1.0\n", "nan\n") != []
    assert compare_output("1 2\n", "1 2 3\n") != []


def test_prints_need_an_output_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A block that prints with no output block after it fails, and so does an orphan output block."""
    monkeypatch.chdir(tmp_path)
    page = _write_page(tmp_path, "```python\nprint(1)\n```\n")
    with pytest.raises(AssertionError, match="no output block follows"):
        run_page(page, monkeypatch)
    orphan = _write_page(tmp_path, 'Text\n\n```text title="Output"\n1\n```\n')
    with pytest.raises(AssertionError, match="must follow a Python block"):
        run_page(orphan, monkeypatch)


def test_unseeded_snippets_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Drawing from the global generator (module weights included) before torch.manual_seed fails."""
    monkeypatch.chdir(tmp_path)
    for code in (
        "x = torch.randn(3)",
        "layer = torch.nn.Linear(2, 2)",
        "x = torch.randn(3)\ntorch.manual_seed(0)",
    ):
        page = _write_page(tmp_path, f"```python\nimport torch\n{code}\n```\n")
        with pytest.raises(AssertionError, match=r"before the page calls torch\.manual_seed"):
            run_page(page, monkeypatch)
    seeded = _write_page(
        tmp_path,
        "```python\nimport torch\ntorch.manual_seed(0)\nlayer = torch.nn.Linear(2, 2)\n"
        "g = torch.Generator().manual_seed(1)\nx = torch.randn(3, generator=g)\n```\n",
    )
    run_page(seeded, monkeypatch)


def test_docs_extra_formats_signatures() -> None:
    """mkdocstrings formats API signatures only when ruff or black is installed with the docs extra."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    docs_extra = re.search(r"^docs\s*=\s*\[(?P<items>[^\]]*)\]", pyproject, re.M)
    assert docs_extra is not None, "pyproject.toml has no docs extra"
    requirements = re.findall(r'"([^"]+)"', docs_extra["items"])
    names = {re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0].lower() for requirement in requirements}
    assert names & {"ruff", "black"}, f"the docs extra needs ruff or black to format signatures; has {names}"


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
