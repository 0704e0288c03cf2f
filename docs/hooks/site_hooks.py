"""MkDocs hooks of the documentation site (listed under `hooks:` in mkdocs.yml).

- Results of the benchmarks live in `benchmarks/results/` and are pulled into the pages of
  `docs/benchmarks/` with pymdownx.snippets (`--8<-- "benchmarks/results/NAME.md"`), so they are written once. A results
  file that has not been produced yet is replaced by a note naming the command that writes it, so the
  site builds before the first benchmark run; every other include must exist (`check_paths: true`).
  Figures in `benchmarks/results/` (PNG, SVG) are published at the site root and in `benchmarks/` under their own names, so
  a results file can show them with a link relative to itself (`![...](NAME.png)`) that works both on
  the repository page and in the site.
- `docs/examples.md` gets tables of the example scripts in `examples/` and its subfolders, built from
  each file's module docstring (first paragraph; first indented line = the command), in place of the
  marker `<!-- examples-index -->`.
- `docs/api/index.md` gets a table of every documented name with the first line of its docstring,
  page by page, in place of the marker `<!-- api-index -->`, built from the `:::` lines of the pages
  listed under "API reference" in the navigation.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
EXAMPLES = ROOT / "examples"

_OPTIONAL_INCLUDE = re.compile(r'^(?P<indent>[ \t]*)--8<--\s+"(?P<path>benchmarks/results/[^"]+)"\s*$', re.M)
_EXAMPLES_MARKER = "<!-- examples-index -->"
_API_MARKER = "<!-- api-index -->"


def on_files(files: Files, config: Any, **kwargs: Any) -> Files:
    """Publish the benchmark figures at the site root and in `benchmarks/`, beside the benchmark pages."""
    if RESULTS.is_dir():
        for figure in sorted(RESULTS.iterdir()):
            if figure.suffix.lower() not in {".png", ".svg"}:
                continue
            # at the site root (pages at the top level) and beside the benchmark pages in benchmarks/
            for uri in (figure.name, f"benchmarks/{figure.name}"):
                if files.get_file_from_path(uri) is None:
                    files.append(File.generated(config, uri, abs_src_path=str(figure)))
    return files


def _missing_results(match: re.Match[str]) -> str:
    rel = match["path"]
    if (ROOT / rel).is_file():
        return match[0]
    script = Path(rel).stem
    indent = match["indent"]
    return (
        f'{indent}!!! note "Not generated yet"\n\n'
        f"{indent}    `{rel}` is written by `python benchmarks/{script}.py` (see the command above); "
        "it has not been produced in this checkout.\n"
    )


def _first_paragraph(docstring: str | None) -> str:
    if not docstring:
        return ""
    paragraph = docstring.strip().split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines())


def _usage(docstring: str | None) -> str:
    """The first indented line of a module docstring: its usage command, by this project's convention."""
    for line in (docstring or "").splitlines():
        if line.startswith("    ") and line.strip():
            return line.strip()
    return ""


def _example_rows(folder: Path) -> tuple[list[str], list[str]]:
    scripts: list[str] = []
    modules: list[str] = []
    order = {"train": 0, "sample": 1}
    for path in sorted(folder.glob("*.py"), key=lambda p: (order.get(p.stem, 2), p.name)):
        if path.name.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        docstring = ast.get_docstring(ast.parse(source))
        rel = path.relative_to(ROOT).as_posix()
        summary = _first_paragraph(docstring).replace("|", "\\|") or "(no description)"
        if 'if __name__ == "__main__"' in source:
            command = _usage(docstring).replace("|", "\\|")
            scripts.append(f"| `{path.name}` | {summary} | {f'`{command}`' if command else ''} |")
        else:
            modules.append(f"`{rel}`: {summary}")
    return scripts, modules


def examples_index() -> str:
    """Markdown tables of the example scripts, folder by folder, from their module docstrings."""
    if not EXAMPLES.is_dir():
        return "_No examples are present in this checkout._\n"
    subfolders = sorted(p for p in EXAMPLES.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    folders = [EXAMPLES, *subfolders]
    out: list[str] = []
    for folder in folders:
        scripts, modules = _example_rows(folder)
        if not scripts and not modules:
            continue
        title = "examples/" if folder == EXAMPLES else f"examples/{folder.name}/"
        out += [f"### `{title}`", ""]
        if scripts:
            out += ["| Script | What it does | Command (from its folder) |", "|---|---|---|", *scripts, ""]
        if modules:
            out += ["Supporting modules:", "", *[f"- {m}" for m in modules], ""]
    return "\n".join(out) + "\n" if out else "_No examples are present in this checkout._\n"


def _resolve(identifier: str) -> Any:
    module_name, _, attr = identifier.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return importlib.import_module(identifier)


def _summary(obj: Any) -> str:
    return _first_paragraph(inspect.getdoc(obj)).replace("|", "\\|")


def _api_pages(nav: Any) -> list[tuple[str, str]]:
    """(title, docs path) of the pages under "API reference" in the `nav` of mkdocs.yml."""
    for item in nav or []:
        if isinstance(item, dict) and "API reference" in item:
            pages = []
            for entry in item["API reference"]:
                if isinstance(entry, dict):
                    pages += [(str(title), str(path)) for title, path in entry.items()]
            return pages
    return []


def api_index(nav: Any, docs_dir: Path) -> str:
    """A Markdown table per API page: each documented name, linked, with its docstring's first line."""
    out: list[str] = []
    for title, src_uri in _api_pages(nav):
        text = (docs_dir / src_uri).read_text(encoding="utf-8")
        rows: list[str] = []
        for identifier in re.findall(r"^:::\s+(\S+)", text, re.M):
            obj = _resolve(identifier)
            if inspect.ismodule(obj):
                for name in getattr(obj, "__all__", []):
                    member = getattr(obj, name)
                    if inspect.getdoc(member) and not isinstance(member, (int, float, str)):
                        rows.append(f"| [`{name}`][{identifier}.{name}] | {_summary(member)} |")
            else:
                rows.append(f"| [`{identifier.rsplit('.', 1)[-1]}`][{identifier}] | {_summary(obj)} |")
        link = Path(src_uri).relative_to("api").as_posix()
        out += [f"## [{title}]({link})", "", "| Name | Summary |", "|---|---|", *rows, ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Fill the generated tables and replace includes of results that do not exist yet."""
    if page.file.src_uri == "api/index.md" and _API_MARKER in markdown:
        markdown = markdown.replace(_API_MARKER, api_index(config["nav"], Path(config["docs_dir"])))
    if page.file.src_uri == "benchmarks.md" or page.file.src_uri.startswith("benchmarks/"):
        markdown = _OPTIONAL_INCLUDE.sub(_missing_results, markdown)
    if page.file.src_uri == "examples.md" and _EXAMPLES_MARKER in markdown:
        markdown = markdown.replace(_EXAMPLES_MARKER, examples_index())
    return markdown
