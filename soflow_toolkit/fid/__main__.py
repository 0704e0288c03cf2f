"""`python -m soflow_toolkit.fid SAMPLES.npz REFERENCE.npz`: print the FID (the command line of `soflow_toolkit.fid.cli`)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
