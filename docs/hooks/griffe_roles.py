"""Griffe extension: adapt the package's docstrings to mkdocstrings (roles and example sections).

The package's docstrings are Markdown, but some of them name other objects with reStructuredText
roles such as :class:`~soflow_toolkit.NoisePath` or :func:`consistency_terms`. Markdown would show
those literally. This extension rewrites each role, once the package is loaded, into

- an autorefs link `` [`NoisePath`][soflow_toolkit.paths.NoisePath] `` when the name resolves to a
  public object of the package (so `mkdocs build --strict` fails if that object has no API entry), or
- plain code `` `name` `` when it does not resolve or names a private object.

Names resolve like Sphinx resolves them: a dotted path from the package root, or a name looked up in
the object's own scope, then in each enclosing scope up to the package.

It also renames the Google-style section title `Example:` to `Examples:`. Both are valid Google style,
but griffe parses only `Examples:` as an examples section, whose `>>>` lines become highlighted code;
under `Example:` the doctest lines would be read as Markdown block quotes.
"""

from __future__ import annotations

import re
from typing import Any, cast

import griffe

_EXAMPLE_TITLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.M)
_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|obj|exc|const):`(?P<tilde>~?)(?P<name>[\w.]+)`")


def _lookup(scope: griffe.Object | griffe.Alias, dotted: str) -> griffe.Object | griffe.Alias | None:
    current: Any = scope
    for part in dotted.split("."):
        try:
            current = current.members[part]
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return cast("griffe.Object | griffe.Alias", current)


def _final(obj: griffe.Object | griffe.Alias) -> griffe.Object | None:
    if not obj.is_alias:
        return obj  # type: ignore[return-value]
    try:
        return obj.final_target  # type: ignore[union-attr]
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _is_public(obj: griffe.Object) -> bool:
    current: Any = obj
    while current is not None:
        name: str = current.name
        if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
            return False
        current = current.parent
    return True


def _resolve(obj: griffe.Object, root: griffe.Module, name: str) -> griffe.Object | None:
    root_prefix = root.name + "."
    if name.startswith(root_prefix):
        found = _lookup(root, name[len(root_prefix) :])
        return None if found is None else _final(found)
    scope: Any = obj if obj.is_class or obj.is_module else obj.parent
    while scope is not None:
        found = _lookup(scope, name)
        if found is not None:
            return _final(found)
        scope = scope.parent
    return None


def convert_roles(text: str, obj: griffe.Object, root: griffe.Module) -> str:
    """Replace every Sphinx role in `text` by an autorefs link or plain code."""

    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        title = name.rsplit(".", 1)[-1] if match["tilde"] else name
        target = _resolve(obj, root, name)
        if target is None or not _is_public(target):
            return f"`{title}`"
        return f"[`{title}`][{target.path}]"

    return _ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of a package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None and ":" in obj.docstring.value:
                text = convert_roles(obj.docstring.value, obj, pkg)
                obj.docstring.value = _EXAMPLE_TITLE.sub(r"\g<indent>Examples:", text)
            stack.extend(cast("griffe.Object", m) for m in obj.members.values() if not m.is_alias)

    def on_package_loaded(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """The name of the same event in griffe releases before `on_package` (the rewrite is idempotent)."""
        self.on_package(pkg=pkg, **kwargs)
