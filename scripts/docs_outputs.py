"""Run a documentation page's Python blocks as the docs tests do, and write what they print into the page.

`tests/test_docs.py` compares what each block prints with the ```` ```text title="Output" ```` block
after it. When a snippet changes on purpose, this script reruns the page the same way (one torch
thread, `torch.manual_seed(0)` before the page, blocks in order in one namespace) and, with
`--write`, replaces the text of every output block by what its Python block printed now (add an
empty output block after a block that starts printing). Without `--write` it shows the differences.

With `--assets`, the page runs in `docs/assets/<page name>/`, so the figures its code saves land where
the page shows them from (the tutorial: `docs/assets/tutorial/`); otherwise in a temporary folder.

Usage:

    python scripts/docs_outputs.py docs/tutorial.md --assets --write
    python scripts/docs_outputs.py README.md docs/index.md          # only compare
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_docs import _FENCE_OPEN, _OUTPUT_TITLE, compare_output, expected_outputs, extract_blocks  # noqa: E402


def run(page: Path, workdir: Path) -> list[tuple[int, str]]:
    """(index of the Python block among the page's blocks, what it printed) for each block that ran."""
    blocks = extract_blocks(page)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    printed: list[tuple[int, str]] = []
    cwd = Path.cwd()
    os.chdir(workdir)
    try:
        for index, block in enumerate(blocks):
            if block.language not in ("python", "py") or block.skip_reason is not None:
                continue
            stdout = io.StringIO()
            start = time.process_time()
            with contextlib.redirect_stdout(stdout):
                exec(compile(block.code, f"{page.name}:{block.line}", "exec"), namespace)
            print(f"  {page.name}:{block.line}: {time.process_time() - start:.1f} s of CPU", file=sys.stderr)
            printed.append((index, stdout.getvalue()))
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return printed


def rewrite(page: Path, printed: list[tuple[int, str]]) -> str:
    """The page's source with each output block replaced by what its Python block printed."""
    blocks = extract_blocks(page)
    outputs = expected_outputs(blocks)
    by_index = dict(printed)
    lines = page.read_text(encoding="utf-8").splitlines()
    # Output blocks of the source in order; included files hold none, so the k-th one of the source is
    # the k-th one of the expanded page.
    source_outputs: list[tuple[int, int]] = []
    python_ends: list[int] = []
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if match is None:
            i += 1
            continue
        close = re.compile(
            rf"^{re.escape(match['indent'])}{re.escape(match['fence'][0])}{{{len(match['fence'])},}}\s*$"
        )
        j = i + 1
        while j < len(lines) and close.match(lines[j]) is None:
            j += 1
        if match["info"].lower() == "text" and _OUTPUT_TITLE.search(match["attrs"] or ""):
            source_outputs.append((i, j))
        elif match["info"].lower() in ("python", "py"):
            python_ends.append(j)
        i = j + 1
    expanded_outputs = sorted(outputs.items())
    if len(expanded_outputs) != len(source_outputs):
        raise SystemExit(f"{page}: output blocks inside included files are not supported")
    replacements = {}
    for (python_index, _), (start, end) in zip(expanded_outputs, source_outputs, strict=True):
        text = by_index.get(python_index, "").rstrip("\n")
        replacements[start] = (end, text.splitlines())
    out: list[str] = []
    i = 0
    while i < len(lines):
        if i in replacements:
            end, body = replacements[i]
            out += [lines[i], *body, lines[end]]
            i = end + 1
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="+", type=Path)
    parser.add_argument("--write", action="store_true", help="write the printed text into the pages")
    parser.add_argument("--assets", action="store_true", help="run in docs/assets/<page name>/")
    args = parser.parse_args(argv)
    status = 0
    for page in args.pages:
        page = page.resolve()
        print(f"{page.relative_to(ROOT)}", file=sys.stderr)
        if args.assets:
            workdir = ROOT / "docs" / "assets" / page.stem
            workdir.mkdir(parents=True, exist_ok=True)
            printed = run(page, workdir)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                printed = run(page, Path(tmp))
        outputs = expected_outputs(extract_blocks(page))
        for index, text in printed:
            expected = outputs.get(index)
            if expected is None:
                if text:
                    print(f"  a block prints but has no output block:\n{text}")
                    status = 1
                continue
            problems = compare_output(text, expected.code)
            if problems:
                status = 1
                print(f"  line {expected.line}: " + "\n".join(problems))
        if args.write:
            page.write_text(rewrite(page, printed), encoding="utf-8")
            print(f"  wrote the output blocks of {page.relative_to(ROOT)}", file=sys.stderr)
            status = 0
    return status


if __name__ == "__main__":
    sys.exit(main())
