r"""How strong training-time guidance should be on small data: 1-NFE sample statistics per scale.

Trains class-conditional models with training-time classifier-free guidance at scales 1 (off), 1.5, 2
and 3, for a short and a longer run, on two problems, and compares 1-NFE samples with the data:

- the guidance guide's toy (four Gaussians of standard deviation 0.3 at distance 2 from the origin,
  the guide's `ConditionalMLP`, `SoFlowConfig.lowdim` and `SoFlowConfig.imagenet` with guidance drop
  0.1, mix 0.25, decay 0.8):
  the distance of each class's samples from the origin along its centre's direction (data: 2.0) and
  their spread (data: 0.3);
- the 8x8 digits in [-1, 1] (`soflow_toolkit.toy.MLPBackbone`, `SoFlowConfig.imagenet` with the same
  guidance settings): the class contrast (mean distance of the class-mean images from the overall mean
  image, over the data's; 1 = the data), the mean overshoot of the pixels beyond the data's range
  [-1, 1], $\operatorname{mean}\max(|x| - 1, 0)$ (data: 0), and the accuracy of a logistic-regression classifier of the real digits on the samples.

Two seeds each; the tables show the mean and the two values. Writes `docs/assets/guidance_strength/strength.json`
and the tables `strength_toy.md`, `strength_digits.md` that `docs/guides/guidance.md` includes. Usage:

    python scripts/guidance_strength.py --part toy      # about 25 minutes on one CPU core
    python scripts/guidance_strength.py --part digits   # about 15 minutes
    python scripts/guidance_strength.py --quick         # both parts, tiny budgets, into /tmp

A part replaces its own rows of an existing `strength.json` and keeps the other part's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docs_runs

import soflow_toolkit as sf
from soflow_toolkit.toy import MLPBackbone

SCALES = (1.0, 1.5, 2.0, 3.0)
SEEDS = (0, 1)


def guidance(scale: float) -> sf.GuidanceConfig:
    return sf.GuidanceConfig(scale=scale, drop_rate=0.1, mix_ratio=0.25, decay_time=0.8)


PRESETS = {"lowdim": sf.SoFlowConfig.lowdim, "imagenet": sf.SoFlowConfig.imagenet}


def toy_run(scale: float, steps: int, seed: int, preset: str) -> dict[str, float]:
    torch.manual_seed(seed)
    model = sf.SolutionFlowWrapper(docs_runs.ConditionalMLP())
    config = PRESETS[preset](total_steps=steps, guidance=guidance(scale))

    def batches(g: torch.Generator) -> docs_runs.Batch:
        labels = torch.randint(0, 4, (256,), generator=g)
        return docs_runs.four_gaussians(labels, g), labels

    model, _ = docs_runs.train(
        model, sf.SoFlowLoss(config), batches, steps=steps, lr=2e-3, seed=seed, null_cond=4, every=steps
    )
    g = torch.Generator().manual_seed(100 + seed)
    radius, spread = [], []
    for c in range(4):
        x = sf.sample(model, torch.randn(2000, 2, generator=g), cond=torch.full((2000,), c))
        direction = docs_runs.CENTRES[c] / 2.0
        radius.append(float((x @ direction).mean()))
        spread.append(float((x - x.mean(0)).pow(2).sum(1).div(2).mean().sqrt()))
    return {"radius": sum(radius) / 4, "spread": sum(spread) / 4}


def digits_run(
    scale: float,
    steps: int,
    seed: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    scorer: docs_runs.DigitScorer,
) -> dict[str, float]:
    torch.manual_seed(seed)
    model = sf.SolutionFlowWrapper(MLPBackbone(64, hidden=256, depth=3, num_classes=10))
    config = sf.SoFlowConfig.imagenet(total_steps=steps, guidance=guidance(scale))

    def batches(g: torch.Generator) -> docs_runs.Batch:
        index = torch.randint(images.shape[0], (128,), generator=g)
        return images[index], labels[index]

    model, _ = docs_runs.train(
        model, sf.SoFlowLoss(config), batches, steps=steps, lr=1e-3, seed=seed, null_cond=10, every=steps
    )
    g = torch.Generator().manual_seed(100 + seed)
    wanted = torch.arange(10).repeat_interleave(200)
    x = sf.sample(model, torch.randn(wanted.shape[0], 1, 8, 8, generator=g), cond=wanted)
    return {
        "contrast": docs_runs.class_contrast(x, wanted, images, labels),
        "overshoot": float((x.abs() - 1).clamp_min(0).mean()),
        "accuracy": scorer.accuracy(x, wanted),
    }


def _cell(values: list[float], digits: int, percent: bool = False) -> str:
    scale = 100.0 if percent else 1.0
    unit = " %" if percent else ""
    mean = sum(values) / len(values) * scale
    parts = ", ".join(f"{v * scale:.{digits}f}" for v in values)
    return f"{mean:.{digits}f}{unit} ({parts})"


HEADERS = {
    "toy": ("distance from the origin", "spread"),
    "digits": ("class contrast", "overshoot beyond [-1, 1]", "classifier accuracy"),
}
KEYS = {"toy": ("radius", "spread"), "digits": ("contrast", "overshoot", "accuracy")}


def table(result: dict[str, Any], problem: str) -> str:
    """The Markdown table of one problem: mean over seeds, each seed's value in brackets."""
    headers = HEADERS[problem]
    data = {
        "toy": ["2.00", "0.30"],
        "digits": ["1.00", "0.000", f"{result['digits_real_accuracy']:.2f} (real test digits)"],
    }[problem]
    lines = [
        "| preset | training steps | guidance scale | " + " | ".join(headers) + " |",
        "|---|---|---|" + "---|" * len(headers),
        "| the data | | | " + " | ".join(data) + " |",
    ]
    for row in result["rows"]:
        if row["problem"] == problem:
            cells = [_cell(row[k], 3 if k == "overshoot" else 2) for k in KEYS[problem]]
            lines.append(
                f"| `{row['preset']}` | {row['steps']} | {row['scale']:g} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=docs_runs.ASSETS / "guidance_strength")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, output to /tmp")
    parser.add_argument("--part", choices=("toy", "digits", "all"), default="all")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    budgets = {
        ("toy", "imagenet"): (300, 3000),
        ("toy", "lowdim"): (300, 3000),
        ("digits", "imagenet"): (500, 5000),
    }
    seeds = SEEDS
    if args.quick:
        budgets, seeds = (
            {("toy", "imagenet"): (20,), ("toy", "lowdim"): (20,), ("digits", "imagenet"): (20,)},
            (0,),
        )
        args.out = Path("/tmp/soflow-guidance-strength")
    budgets = {key: value for key, value in budgets.items() if args.part in ("all", key[0])}
    images, labels = docs_runs.load_digits()
    scorer = docs_runs.DigitScorer(images, labels)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for (problem, preset), steps_list in budgets.items():
        for steps in steps_list:
            for scale in SCALES:
                runs = [
                    toy_run(scale, steps, seed, preset)
                    if problem == "toy"
                    else digits_run(scale, steps, seed, images, labels, scorer)
                    for seed in seeds
                ]
                row: dict[str, Any] = {"problem": problem, "preset": preset, "steps": steps, "scale": scale}
                for key in runs[0]:
                    row[key] = [r[key] for r in runs]
                rows.append(row)
                print(
                    problem, steps, scale, {k: v for k, v in row.items() if isinstance(v, list)}, flush=True
                )
    command = "python scripts/guidance_strength.py" + (" --quick" if args.quick else f" --part {args.part}")
    previous_path = args.out / "strength.json"
    previous = json.loads(previous_path.read_text(encoding="utf-8")) if previous_path.is_file() else {}
    parts = {problem for problem, _ in budgets}
    kept = [row for row in previous.get("rows", []) if row["problem"] not in parts]
    runs_info = {k: v for k, v in previous.get("parts", {}).items() if k not in parts}
    for problem in parts:
        runs_info[problem] = {"command": command, "seconds": round(time.perf_counter() - start)}
    rows = [row for problem in ("toy", "digits") for row in kept + rows if row["problem"] == problem]
    result = {
        "parts": dict(sorted(runs_info.items())),
        "torch": torch.__version__,
        "seeds": list(seeds),
        "guidance_strength": dataclasses.asdict(guidance(3.0)) | {"scale": list(SCALES)},
        "digits_real_accuracy": scorer.real_accuracy,
        "rows": rows,
    }
    docs_runs.write_json(args.out / "strength.json", result)
    for problem in HEADERS:
        (args.out / f"strength_{problem}.md").write_text(table(result, problem), encoding="utf-8")
    print(f"wrote {args.out}/strength.json, strength_toy.md, strength_digits.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
