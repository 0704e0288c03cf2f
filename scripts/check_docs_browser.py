#!/usr/bin/env python3
"""Check the built documentation site in a real browser: math renders, nothing loads from the network.

Serves `site/` on 127.0.0.1, drives Debian's headless Chromium through chromedriver's W3C HTTP
interface (no Python dependency beyond the standard library), and for the home page, the method page
and one API page checks that:

- every math element left by pymdownx.arithmatex was rendered by KaTeX, with no KaTeX error, no raw
  `\\(`, `\\[`, `$$` or `$...$` left in the visible text, and the KaTeX fonts loaded;
- every request the page made went to the local server (DevTools network log and Resource Timing), while
  Chromium's resolver maps every other host to nothing;
- the local server answered every request (no 404).

It also scans all built HTML and CSS for external scripts, stylesheets, fonts and images, and writes a
screenshot of each page (default `site-screenshots/NAME.png`).

Usage (Debian: `apt-get install -y chromium chromium-driver`):

    python scripts/check_docs_browser.py --build      # build with `mkdocs build --strict`, then check
    python scripts/check_docs_browser.py --site site  # check an existing build

Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parents[1]

# (name, candidate paths in the built site, minimum number of rendered math elements)
PAGES = [
    ("home", ["index.html"], 3),
    ("method", ["method.html", "method/index.html"], 30),
    ("api-model", ["api/model.html", "api/model/index.html"], 5),
]

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
    # Every host but the local server resolves to nothing: a page that needs the network fails visibly.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

# Runs in the page: counts math elements and looks for raw TeX left in the visible text.
PAGE_REPORT_JS = r"""
const all = document.querySelectorAll('.arithmatex');
const done = document.querySelectorAll('.arithmatex[data-katex="done"]');
const clone = document.querySelector('article') ? document.querySelector('article').cloneNode(true)
                                                 : document.body.cloneNode(true);
clone.querySelectorAll('pre, code, script, style, .katex').forEach(e => e.remove());
const text = clone.textContent;
const raw = [];
for (const re of [/\\\(/g, /\\\[/g, /\$\$/g, /\$[^$\s][^$\n]*?\$/g]) {
  const m = text.match(re);
  if (m) raw.push(...m.slice(0, 3));
}
let fontsOk = true;
try { fontsOk = document.fonts.check('16px KaTeX_Main') && document.fonts.check('italic 16px KaTeX_Math'); }
catch (e) { fontsOk = false; }
return {
  title: document.title,
  ready: document.readyState,
  arithmatex: all.length,
  rendered: done.length,
  katex: document.querySelectorAll('.katex').length,
  errors: Array.from(document.querySelectorAll('.katex-error')).slice(0, 3).map(e => e.textContent),
  raw: raw,
  fontsStatus: document.fonts.status,
  fontsOk: fontsOk,
  resources: performance.getEntriesByType('resource').map(e => e.name),
};
"""

WAIT_JS = r"""
const all = document.querySelectorAll('.arithmatex').length;
const done = document.querySelectorAll('.arithmatex[data-katex="done"]').length;
return document.readyState === 'complete' && all === done && document.fonts.status === 'loaded';
"""


class _ExternalRefs(HTMLParser):
    """Collects URLs that the browser would fetch by itself (scripts, styles, fonts, images, frames)."""

    FETCHING: ClassVar[set[tuple[str, str]]] = {
        ("script", "src"),
        ("img", "src"),
        ("iframe", "src"),
        ("source", "src"),
        ("video", "src"),
        ("audio", "src"),
        ("embed", "src"),
        ("object", "data"),
    }
    LINK_RELS: ClassVar[set[str]] = {
        "stylesheet",
        "preload",
        "modulepreload",
        "icon",
        "manifest",
        "prefetch",
        "preconnect",
    }

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        for t, attr in self.FETCHING:
            if tag == t and attr in values:
                self.urls.append(values[attr])
        if tag == "link" and set(values.get("rel", "").split()) & self.LINK_RELS:
            self.urls.append(values.get("href", ""))


def _is_external(url: str) -> bool:
    url = url.strip()
    if url.startswith("//"):
        return True
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*):", url)
    if not match:
        return False
    if match.group(1).lower() in {
        "data",
        "blob",
        "about",
        "javascript",
        "chrome",
        "chrome-extension",
        "devtools",
    }:
        return False
    return re.match(r"^https?://(127\.0\.0\.1|localhost)(:\d+)?(/|$)", url) is None


def static_scan(site: Path) -> list[str]:
    """External URLs fetched by any built HTML page or CSS file."""
    problems: list[str] = []
    for html in sorted(site.rglob("*.html")):
        parser = _ExternalRefs()
        parser.feed(html.read_text(encoding="utf-8", errors="replace"))
        problems += [f"{html.relative_to(site)}: {u}" for u in parser.urls if _is_external(u)]
    for css in sorted(site.rglob("*.css")):
        text = css.read_text(encoding="utf-8", errors="replace")
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", text) + re.findall(
            r"@import\s+['\"]([^'\"]+)", text
        ):
            if _is_external(url):
                problems.append(f"{css.relative_to(site)}: {url}")
    return problems


class _Handler(SimpleHTTPRequestHandler):
    log: ClassVar[list[tuple[str, int]]] = []

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self.log.append((self.path, int(code) if str(code).isdigit() else 0))

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WebDriver:
    """The few W3C WebDriver commands this check needs, over chromedriver's HTTP interface."""

    def __init__(self, chromedriver: str, chromium: str, profile: Path) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [chromedriver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if self._request("GET", "/status").get("value", {}).get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("chromedriver did not start within 20 s")
            time.sleep(0.2)
        capabilities = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"],
            },
            "goog:loggingPrefs": {"performance": "ALL"},
        }
        value = self._request("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}})["value"]
        self.session = f"/session/{value['sessionId']}"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                result: dict[str, Any] = json.loads(response.read() or b"{}")
                return result
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"WebDriver {method} {path}: {error.read().decode(errors='replace')}"
            ) from None

    def get(self, url: str) -> None:
        self._request("POST", f"{self.session}/url", {"url": url})

    def execute(self, script: str) -> Any:
        return self._request("POST", f"{self.session}/execute/sync", {"script": script, "args": []})["value"]

    def screenshot(self, path: Path) -> None:
        png = base64.b64decode(self._request("GET", f"{self.session}/screenshot")["value"])
        path.write_bytes(png)

    def network_log(self) -> list[str]:
        """URLs of the requests Chromium sent since the last call (DevTools performance log)."""
        for endpoint in ("se/log", "log"):
            try:
                entries = self._request("POST", f"{self.session}/{endpoint}", {"type": "performance"})[
                    "value"
                ]
                break
            except RuntimeError:
                continue
        else:
            return []
        urls = []
        for entry in entries:
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def quit(self) -> None:
        try:
            self._request("DELETE", self.session)
        finally:
            self.process.terminate()
            self.process.wait(timeout=10)


def _wait(driver: WebDriver, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute(WAIT_JS):
            return True
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "site", help="the built site (default: site/)")
    parser.add_argument("--build", action="store_true", help="run `mkdocs build --strict` first")
    parser.add_argument("--out", type=Path, default=ROOT / "site-screenshots", help="where to write PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each page")
    parser.add_argument(
        "--also", nargs="*", default=[], metavar="PAGE", help="more pages to check, e.g. api/training.html"
    )
    parser.add_argument("--all", action="store_true", help="check every page of the site as well")
    args = parser.parse_args(argv)
    also = list(args.also)
    if args.all:
        main_pages = {c for _, candidates, _ in PAGES for c in candidates}
        also += [
            p.relative_to(args.site.resolve()).as_posix()
            for p in sorted(args.site.resolve().rglob("*.html"))
            if p.name != "404.html" and p.relative_to(args.site.resolve()).as_posix() not in main_pages
        ]
    pages = PAGES + [(Path(p).with_suffix("").as_posix().replace("/", "-"), [p], 0) for p in also]

    if args.build:
        subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(args.site)],
            cwd=ROOT,
            check=True,
        )
    site = args.site.resolve()
    for tool in (args.chromium, args.chromedriver):
        if not Path(tool).exists():
            print(f"error: {tool} not found; on Debian: apt-get install -y chromium chromium-driver")
            return 1
    if not (site / "index.html").is_file():
        print(f"error: no built site at {site} (run with --build)")
        return 1

    failures: list[str] = []
    external = static_scan(site)
    failures += [f"external resource in the built site: {item}" for item in external]
    print(f"static scan: {len(list(site.rglob('*.html')))} HTML files, {len(external)} external resources")

    handler = functools.partial(_Handler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="soflow-docs-chromium-") as profile:
        driver = WebDriver(args.chromedriver, args.chromium, Path(profile))
        driver.network_log()  # drop what the browser requested at start-up, before any page
        try:
            for name, candidates, minimum in pages:
                rel = next((c for c in candidates if (site / c).is_file()), None)
                if rel is None:
                    failures.append(f"{name}: none of {candidates} exists in the site")
                    continue
                _Handler.log.clear()
                driver.get(f"{origin}/{rel}")
                settled = _wait(driver, args.timeout)
                report = driver.execute(PAGE_REPORT_JS)
                requested = set(driver.network_log()) | set(report["resources"])
                shot = args.out / f"{name}.png"
                driver.screenshot(shot)
                print(
                    f"{name} ({rel}): {report['rendered']}/{report['arithmatex']} math elements rendered, "
                    f"{report['katex']} KaTeX nodes, fonts {report['fontsStatus']}, "
                    f"{len(requested)} requests; screenshot {shot}"
                )
                if not settled:
                    failures.append(f"{name}: the page did not finish rendering within {args.timeout} s")
                if report["rendered"] < minimum or report["rendered"] != report["arithmatex"]:
                    failures.append(
                        f"{name}: {report['rendered']} of {report['arithmatex']} math elements rendered "
                        f"(expected all, at least {minimum})"
                    )
                if report["errors"]:
                    failures.append(f"{name}: KaTeX errors: {report['errors']}")
                if report["raw"]:
                    failures.append(f"{name}: raw TeX left in the text: {report['raw']}")
                if report["katex"] and not report["fontsOk"]:
                    failures.append(f"{name}: the KaTeX fonts are not available")
                outside = sorted(
                    u
                    for u in requested
                    if not u.startswith(origin) and _is_external(u) and u != "about:blank"
                )
                if outside:
                    failures.append(f"{name}: requests outside the local server: {outside[:5]}")
                missing = sorted({path for path, code in _Handler.log if code >= 400})
                if missing:
                    failures.append(f"{name}: the local server answered >= 400 for {missing[:5]}")
        finally:
            driver.quit()
            server.shutdown()

    if failures:
        print("\nFAILED:")
        for failure in failures:
            print(f"  - {failure}")
        return 1
    print("all browser checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
