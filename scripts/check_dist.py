#!/usr/bin/env python3
"""Check the built distributions: what they contain, and that each installs and works in a fresh venv.

Usage (after `python -m build --outdir dist .`; `make dist` runs both):

    python scripts/check_dist.py dist             # contents, then install each into a fresh venv
    python scripts/check_dist.py dist --no-install

Checks that `dist/` holds exactly one wheel and one sdist of the version in
`soflow_toolkit/__init__.py`; that the package files in both are exactly the package's files tracked
by git (nothing missing, no `__pycache__`); that the sdist holds nothing else but its metadata
(`PKG-INFO`, `pyproject.toml`, `README.md`, `LICENSE`, `CHANGELOG.md`, `.gitignore`): no tests
without what they import, no vendored files of the documentation; and the wheel's metadata (name,
version, licence, dependencies, extras). Then, for the wheel and for the sdist, it creates a fresh
virtual environment, installs the distribution there with `pip` (torch pinned by `constraints.txt`),
and from an empty folder imports the installed package, trains a tiny model for a few steps and
samples from it.

Exit status 0 when every check passes, 1 otherwise (each failure is printed).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "soflow_toolkit"
SDIST_METADATA = {"PKG-INFO", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", ".gitignore"}

SMOKE = """
import pathlib, sys
import torch
import soflow_toolkit as sf

assert sf.__version__ == sys.argv[1], (sf.__version__, sys.argv[1])
location = pathlib.Path(sf.__file__).resolve()
assert pathlib.Path(sys.prefix).resolve() in location.parents, f"imported from {location}"
assert (location.parent / "py.typed").is_file()

class Backbone(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.SiLU(), torch.nn.Linear(32, 2))

    def forward(self, x, t, s):
        return self.net(torch.cat([x, t[:, None], s[:, None]], dim=1))

torch.manual_seed(0)
model = sf.SolutionFlowWrapper(Backbone())
objective = sf.SoFlowLoss(sf.SoFlowConfig().with_total_steps(5))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
generator = torch.Generator().manual_seed(0)
for step in range(5):
    out = objective(model, torch.randn(64, 2, generator=generator), generator=generator)
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
samples = sf.sample(model, torch.randn(16, 2, generator=generator), steps=2)
assert samples.shape == (16, 2) and bool(torch.isfinite(samples).all())
print(f"soflow-toolkit {sf.__version__} from {location.parent}: 5 steps, loss {float(out.loss):.4f}")
"""


def package_version() -> str:
    text = (ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no __version__ in {PACKAGE}/__init__.py")
    return match[1]


def tracked_package_files() -> set[str]:
    """The package's files tracked by git (falls back to the files on disk outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", PACKAGE], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        files = {line for line in out.splitlines() if line}
    except (OSError, subprocess.CalledProcessError):
        files = set()
    if not files:
        files = {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / PACKAGE).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
    return files


def check_contents(dist: Path, version: str) -> tuple[list[str], Path | None, Path | None]:
    errors: list[str] = []
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    stem = f"{PACKAGE}-{version}"
    if [w.name for w in wheels] != [f"{stem}-py3-none-any.whl"]:
        errors.append(
            f"expected one wheel {stem}-py3-none-any.whl in {dist}; found {[w.name for w in wheels]}"
        )
    if [s.name for s in sdists] != [f"{stem}.tar.gz"]:
        errors.append(f"expected one sdist {stem}.tar.gz in {dist}; found {[s.name for s in sdists]}")
    expected = tracked_package_files()

    sdist = sdists[0] if len(sdists) == 1 else None
    if sdist is not None:
        with tarfile.open(sdist) as tar:
            names = {m.name for m in tar.getmembers() if m.isfile()}
        prefix = f"{stem}/"
        outside = sorted(n for n in names if not n.startswith(prefix))
        if outside:
            errors.append(f"sdist: files outside {prefix}: {outside}")
        members = {n[len(prefix) :] for n in names if n.startswith(prefix)}
        package = {m for m in members if m.startswith(f"{PACKAGE}/")}
        other = members - package
        if other != SDIST_METADATA:
            errors.append(
                f"sdist: unexpected files {sorted(other - SDIST_METADATA)}, "
                f"missing {sorted(SDIST_METADATA - other)}"
            )
        if package != expected:
            errors.append(
                f"sdist: package files not tracked by git {sorted(package - expected)}, "
                f"tracked files missing {sorted(expected - package)}"
            )
        print(f"{sdist.name}: {len(members)} files ({len(package)} in {PACKAGE}/)")

    wheel = wheels[0] if len(wheels) == 1 else None
    if wheel is not None:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            metadata_name = f"{stem}.dist-info/METADATA"
            metadata = Parser().parsestr(zf.read(metadata_name).decode()) if metadata_name in names else None
        package = {n for n in names if n.startswith(f"{PACKAGE}/")}
        other = {n for n in names - package if not n.startswith(f"{stem}.dist-info/")}
        if other:
            errors.append(f"wheel: files outside {PACKAGE}/ and its dist-info: {sorted(other)}")
        if package != expected:
            errors.append(
                f"wheel: package files not tracked by git {sorted(package - expected)}, "
                f"tracked files missing {sorted(expected - package)}"
            )
        if metadata is None:
            errors.append(f"wheel: no {metadata_name}")
        else:
            found = {
                "Name": metadata["Name"],
                "Version": metadata["Version"],
                "License-Expression": metadata["License-Expression"],
            }
            wanted = {"Name": "soflow-toolkit", "Version": version, "License-Expression": "Apache-2.0"}
            if found != wanted:
                errors.append(f"wheel metadata: expected {wanted}; got {found}")
            requires = metadata.get_all("Requires-Dist") or []
            if not any(r.startswith("torch") for r in requires):
                errors.append(f"wheel metadata: torch is not a dependency: {requires}")
            extras = set(metadata.get_all("Provides-Extra") or [])
            if not {"test", "examples", "docs", "dev"} <= extras:
                errors.append(f"wheel metadata: extras {sorted(extras)}")
        print(f"{wheel.name}: {len(names)} files ({len(package)} in {PACKAGE}/)")
    return errors, wheel, sdist


def install_and_smoke(artifact: Path, version: str) -> list[str]:
    """Install `artifact` into a fresh venv and run the smoke script there, from an empty folder."""
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="soflow-dist-") as tmp:
        env_dir, work = Path(tmp) / "venv", Path(tmp) / "work"
        work.mkdir()
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        if not python.exists():  # Windows layout
            python = env_dir / "Scripts" / "python.exe"
        install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        install += ["-c", str(ROOT / "constraints.txt"), str(artifact.resolve())]
        steps = [
            ("install", install),
            ("pip check", [str(python), "-m", "pip", "check"]),
            ("smoke", [str(python), "-c", SMOKE, version]),
        ]
        for name, command in steps:
            done = subprocess.run(command, cwd=work, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                return [
                    f"{artifact.name}: {name} failed ({done.returncode}): {' '.join(command[:6])} ...\n"
                    f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
                ]
            if name == "smoke":
                print(f"{artifact.name} in a fresh venv: {done.stdout.strip()} "
                      f"({time.perf_counter() - began:.0f} s)")  # fmt: skip
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dist", type=Path, nargs="?", default=ROOT / "dist")
    parser.add_argument("--no-install", action="store_true", help="check the contents only")
    args = parser.parse_args(argv)
    version = package_version()
    errors, wheel, sdist = check_contents(args.dist, version)
    if not args.no_install:
        for artifact in (wheel, sdist):
            if artifact is not None:
                errors += install_and_smoke(artifact, version)
    for error in errors:
        print(f"FAIL: {error}", file=sys.stderr)
    print("check_dist: " + ("ok" if not errors else f"{len(errors)} failure(s)"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
