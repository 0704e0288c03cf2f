"""MkDocs hook: the "edit" and "view source" buttons of a page that shows another file of the repository.

A page whose front matter has `source: PATH` (a path from the repository root, e.g.
`source: examples/imagenet/README.md` on a page that includes that file with pymdownx.snippets) links
its buttons to PATH instead of to the page's own file under docs/. The branch and action come from
`edit_uri` in mkdocs.yml (`edit/main/docs/` gives `edit/main/PATH`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    source = page.meta.get("source")
    if source and config.get("repo_url") and config.get("edit_uri"):
        action_and_branch = "/".join(config["edit_uri"].strip("/").split("/")[:2])  # e.g. "edit/main"
        page.edit_url = urljoin(config["repo_url"].rstrip("/") + "/", f"{action_and_branch}/{source}")
    return markdown
