"""How closely this package reproduces the official networks and augmentation, from the test vectors.

    python parity_report.py --out parity_report.json

Reads the committed outputs of the official code (`tests/data/official_networks.pt`: tiny official
DiTs and UNet with random weights; `tests/data/edm_augment_official.pt`: the official augmentation;
see `tests/data/README.md`) and reports, in float32 on CPU:

- for each official network: the relative error $\\max|\\hat y - y| / \\max|y|$ of
  `soflow_toolkit.models` (weights loaded through the conversion map) against the official
  `solution_operator` and `predict_velocity`;
- for each augmentation case: whether the 6 labels are bit-identical, and the largest absolute
  difference of the transformed images (values in [-1, 1]).

The tests (`tests/test_pretrained.py`, `tests/test_augment.py`) assert bounds on the same numbers;
this script records the values.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from soflow_toolkit import SolutionFlowWrapper
from soflow_toolkit.augment import AugmentPipe
from soflow_toolkit.models import DiT, DiTConfig, UNet, UNetConfig
from soflow_toolkit.pretrained import from_official_state_dict

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
PATHS = {"Linear": "linear", "Trig": "trig"}
PARAMETRIZATIONS = {"Euler": "euler", "Trig": "trig"}


def relative_error(actual: Tensor, expected: Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max())


def backbone(case: dict[str, Any]) -> DiT | UNet:
    """The toolkit's DiT or UNet for the constructor arguments of an official network (`case["kwargs"]`)."""
    kw = case["kwargs"]
    if case["kind"] == "dit":
        return DiT(
            DiTConfig(
                input_size=kw["input_size"],
                in_channels=kw["in_channels"],
                patch_size=kw["patch_size"],
                hidden_size=kw["hidden_size"],
                depth=kw["depth"],
                num_heads=kw["num_heads"],
                mlp_ratio=float(kw["mlp_ratio"]),
                num_classes=kw["num_classes"],
                null_class=kw["class_dropout_prob"] > 0,
            )
        )
    unsupported = {
        "embedding_type": (kw["embedding_type"], "positional"),
        "encoder_type": (kw["encoder_type"], "standard"),
        "decoder_type": (kw["decoder_type"], "standard"),
        "label_dim": (kw["label_dim"], 0),
    }
    for name, (value, expected) in unsupported.items():
        if value != expected:
            raise ValueError(f"the official UNet's {name}={value!r} is not supported (only {expected!r})")
    return UNet(
        UNetConfig(
            image_size=kw["img_resolution"],
            in_channels=kw["in_channels"],
            model_channels=kw["model_channels"],
            channel_mult=tuple(kw["channel_mult"]),
            channel_mult_emb=kw["channel_mult_emb"],
            channel_mult_noise=kw["channel_mult_noise"],
            num_blocks=kw["num_blocks"],
            attn_resolutions=tuple(kw["attn_resolutions"]),
            dropout=kw["dropout"],
            resample_filter=tuple(kw["resample_filter"]),
            augment_dim=kw["augment_dim"],
        )
    )


def network_parity() -> list[dict[str, Any]]:
    rows = []
    for case in torch.load(DATA / "official_networks.pt", weights_only=True)["cases"]:
        net = backbone(case)
        net.load_state_dict(from_official_state_dict(case["state_dict"], net))
        model = SolutionFlowWrapper(
            net, path=PATHS[case["noising"]], parametrization=PARAMETRIZATIONS[case["coefficient"]]
        ).eval()
        x, t, s, labels = case["x"], case["t"], case["s"], case["labels"]
        with torch.no_grad():
            solution = relative_error(model(x, t, s, labels), case["solution"])
            velocity = relative_error(model.velocity(x, t, labels), case["velocity"])
        rows.append(
            {
                "case": case["name"],
                "network": case["kind"],
                "noising_type": case["noising"],
                "coefficient_type": case["coefficient"],
                "solution_relative_error": solution,
                "velocity_relative_error": velocity,
            }
        )
    return rows


def augment_parity() -> list[dict[str, Any]]:
    rows = []
    for case in torch.load(DATA / "edm_augment_official.pt", weights_only=True)["cases"]:
        dtype = getattr(torch, case["dtype"])
        seed = case["seed"]
        generator = torch.Generator().manual_seed(1000 + seed)
        images = torch.randn(*case["shape"], generator=generator, dtype=dtype).clamp(-1, 1)
        config = {{"translate_frac": "translate"}.get(k, k): v for k, v in case["config"].items()}
        pipe = AugmentPipe(**config)
        out = pipe(images, generator=torch.Generator().manual_seed(seed))
        enabled = [pipe.xflip, pipe.scale, pipe.aniso, pipe.aniso, pipe.translate, pipe.translate]
        columns = [i for i, multiplier in enumerate(enabled) if multiplier > 0]
        geometric = (out.labels[:, 1:] != 0).any(dim=1)
        rows.append(
            {
                "case": case["name"],
                "dtype": case["dtype"],
                "labels_bit_identical": bool(torch.equal(out.labels[:, columns].float(), case["labels"])),
                "transformed_images": int(geometric.sum()),
                "max_abs_image_difference": float(
                    (out.images[geometric] - case["images"][geometric]).abs().max()
                ),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="JSON file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = {"networks": network_parity(), "augmentation": augment_parity(), "torch": torch.__version__}
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    for row in result["networks"]:
        print(
            f"{row['case']:28} solution {row['solution_relative_error']:.2e}  "
            f"velocity {row['velocity_relative_error']:.2e}"
        )
    for row in result["augmentation"]:
        print(
            f"{row['case']:28} {row['dtype']:8} labels identical: {row['labels_bit_identical']}  "
            f"images: max |diff| {row['max_abs_image_difference']:.2e} ({row['transformed_images']} transformed)"
        )


if __name__ == "__main__":
    main()
