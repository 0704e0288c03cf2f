"""One docstring convention for everything the API reference renders.

mkdocstrings renders the docstrings as Markdown with Google-style sections: cross-references are
autorefs links (`` [`NoisePath`][soflow_toolkit.NoisePath] ``), never reStructuredText roles
(``:class:`...` ``, which Markdown shows literally), and examples sit under `Examples:` (griffe reads
`Example:` as an admonition, so the doctest lines would render as block quotes). Every documented
object carries an example.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "api"
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|obj|exc|const):`")
_SINGULAR_EXAMPLE = re.compile(r"^\s*Example:\s*$", re.M)


def _documented() -> list[str]:
    identifiers: list[str] = []
    for page in sorted(API.glob("*.md")):
        identifiers += re.findall(r"^:::\s+(\S+)", page.read_text(encoding="utf-8"), re.M)
    return identifiers


def _resolve(identifier: str) -> Any:
    """The object an identifier names: a module (`soflow_toolkit.fid`) or a name in a module."""
    try:
        return importlib.import_module(identifier)
    except ModuleNotFoundError:
        module, _, name = identifier.rpartition(".")
        return getattr(importlib.import_module(module), name)


def _docstrings(obj: Any) -> list[tuple[str, str]]:
    """The object's docstring and those of its public members defined in the package."""
    found = [("", inspect.getdoc(obj) or "")]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_") and name != "__call__":
                continue
            target = member.fget if isinstance(member, property) else member
            if callable(target) or isinstance(member, property):
                found.append((name, inspect.getdoc(target) or ""))
    return found


DOCUMENTED = _documented()


def test_the_api_reference_documents_objects() -> None:
    assert len(DOCUMENTED) > 30


def _objects(identifier: str) -> list[tuple[str, Any]]:
    """The documented object, or for a documented module its docstring and each name of `__all__`."""
    obj = _resolve(identifier)
    if not inspect.ismodule(obj):
        return [(identifier, obj)]
    members = [(f"{identifier}.{name}", getattr(obj, name)) for name in getattr(obj, "__all__", [])]
    return [(identifier, obj)] + [(n, m) for n, m in members if inspect.isclass(m) or inspect.isfunction(m)]


@pytest.mark.parametrize("identifier", DOCUMENTED)
def test_docstrings_follow_the_convention(identifier: str) -> None:
    for name, obj in _objects(identifier):
        for member, doc in _docstrings(obj):
            where = f"{name}.{member}" if member else name
            assert not _ROLE.search(doc), f"{where}: use an autorefs link instead of a role"
            assert not _SINGULAR_EXAMPLE.search(doc), f"{where}: name the section 'Examples:'"
        if not inspect.ismodule(obj):
            assert "Examples:" in (inspect.getdoc(obj) or ""), f"{name} has no example"
