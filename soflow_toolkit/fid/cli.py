"""The command line: `python -m soflow_toolkit.fid SAMPLES.npz REFERENCE.npz` prints the FID.

    python -m soflow_toolkit.fid samples.npz VIRTUAL_imagenet256_labeled.npz --device cuda

Each file is an `.npz` of uint8 images `arr_0` `(N, H, W, 3)` (the ADM sample layout) or one that
stores feature statistics `mu`, `sigma` (an ADM reference batch, or a file written with
`--save-stats`); stored statistics are used as the ADM evaluator uses them. Images go through the
PyTorch port of the TensorFlow Inception-v3 (torch-fidelity, the `fid` extra). The FID is printed to
standard output as `FID: <value>`; what was compared goes to standard error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from . import evaluate
from .frechet import frechet_distance
from .npz import npz_array_info, save_statistics

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m soflow_toolkit.fid",
        description="FID between two .npz files (ADM layout), with a PyTorch port of the TensorFlow Inception.",
    )
    p.add_argument("samples", type=Path, help=".npz of generated images (arr_0) or of statistics (mu, sigma)")
    p.add_argument("reference", type=Path, help="reference .npz, e.g. VIRTUAL_imagenet256_labeled.npz")
    p.add_argument("--inception-weights", type=Path, help="local Inception weights file (offline use)")
    p.add_argument("--batch-size", type=int, default=100, help="images per forward pass (default 100)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument("--recompute", action="store_true", help="compute statistics from arr_0 even if stored")
    p.add_argument("--save-stats", type=Path, help="also write the samples' statistics to this .npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _describe(path: Path, use_stored: bool) -> str:
    if use_stored and evaluate._stores_statistics(path):
        return f"{path.name}: stored statistics"
    shape, dtype = npz_array_info(path, "arr_0")
    return f"{path.name}: {shape[0]} images {shape[1]}x{shape[2]} ({dtype})"


def main(argv: list[str] | None = None) -> float:
    """Parse `argv` (default: `sys.argv[1:]`), print the FID and return it.

    Examples:
        >>> import tempfile, torch
        >>> from soflow_toolkit.fid import FeatureStatistics, save_statistics
        >>> folder = tempfile.mkdtemp()
        >>> save_statistics(folder + "/a.npz", FeatureStatistics(torch.zeros(2), torch.eye(2)))
        >>> save_statistics(folder + "/b.npz", FeatureStatistics(torch.ones(2), torch.eye(2)))
        >>> value = main([folder + "/a.npz", folder + "/b.npz"])
        FID: 2.0000
    """
    args = _parser().parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit(f"--batch-size must be >= 1; got {args.batch_size}")
    for path in (args.samples, args.reference):
        if not path.is_file():
            raise SystemExit(f"no such file: {path}")
    device = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    use_stored = not args.recompute
    print(
        f"{_describe(args.samples, use_stored)} vs {_describe(args.reference, use_stored)}", file=sys.stderr
    )
    paths = (args.samples, args.reference)
    extractor = evaluate._extractor_for(
        paths, None, use_stored=use_stored, weights=args.inception_weights, device=device
    )
    first, second = (
        evaluate.npz_statistics(
            path,
            extractor,
            use_stored=use_stored,
            batch_size=args.batch_size,
            device=device,
            progress=not args.no_progress,
        )
        for path in paths
    )
    if args.save_stats is not None:
        save_statistics(args.save_stats, first)
    fid = frechet_distance(first, second)
    print(f"FID: {fid:.4f}")
    return fid
