"""Start SoFlow from a pretrained flow-matching model: fine-tuning against SoFlow from scratch.

For each dataset (three 2-D toys; class-conditional 8×8 digits), a flow-matching model is pretrained
for N steps on the shared `MLPBackbone` (uniform times, plain MSE; digits with 10 % of the labels
dropped to the null class, as flow-matching models with classifier-free guidance are trained, and no
guided target). Its EMA weights become the start of a SoFlow run of M steps: the backbone's input of
the gap t - s only ever saw t - s = 0, so its weights are folded into the bias at gap 0 and set to zero
(`fold_gap_input`), which makes F(x, t, s) = F_FM(x, t) for every s: the velocity read-out is the
pretrained velocity and f(x, t, s) one Euler step of the pretrained flow (the DiT loader of
`soflow_toolkit.sit` does the same with the t - s embedder). Compared with SoFlow from scratch at equal
total steps (N + M) and at equal fine-tuning steps (M).

Protocol (`benchmarks/common.py`): same backbone, data stream, batch, Adam with a cosine decay to 0
over each run, EMA with warm-up (fresh at the start of fine-tuning); time-embedding scale and EMA decay
at the shared start settings. With `--search-stages k` the same staged search (learning rate, then the
curriculum start `r_init`, then `fm_fraction`) tunes every arm on seed 100; the default budget has no
search (every arm at the shared start). The tables report seeds 0-2. Scores: energy distance of the 1-NFE sample (toys), Fréchet distance in the features of the
classifier of `benchmarks/digits.py` (digits).

    python benchmarks/finetune.py                 # search (seed 100), reported runs (seeds 0-2), tables
    python benchmarks/finetune.py --part render   # rewrite finetune.md from the committed JSON
    python benchmarks/finetune.py --quick         # CI smoke run (into outputs/)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import digits, toys  # noqa: E402
from benchmarks.baselines import euler_fm_sample  # noqa: E402
from benchmarks.common import (  # noqa: E402
    START,
    Budget,
    StagedSearch,
    Trainer,
    markdown_table,
    pm,
    run_search,
    run_tasks,
    seed_ratios,
    settings_text,
    write_markdown,
)
from soflow_toolkit import EMA, GuidanceConfig, SoFlowConfig, SoFlowLoss, flow_matching_loss, sample  # noqa: E402
from soflow_toolkit.toy import MLPBackbone, timestep_embedding  # noqa: E402

TOYS = ("checkerboard", "eight_gaussians", "spiral")
ARMS = ("fine-tuned", "scratch, equal total steps", "scratch, equal fine-tuning steps")
SAMPLE_LABELS = ("SoFlow 1 NFE", "SoFlow 2 NFE")
DROP_RATE = 0.1  # label dropping of the pretraining and of SoFlow's guidance (benchmarks/common.py)
FULL: dict[str, Any] = {
    # sized for a shared, busy 2-core CPU (about 30 minutes with two workers): short runs and no search
    # (every arm at the shared start settings); `--search-stages 1` tunes the learning rate (`lr`), 2 and 3
    # add the curriculum start and the batch split
    "toy": {"budget": Budget(steps=1200, batch=256, hidden=128), "pretrain": 800, "finetune": 400},
    "digits": {
        "budget": Budget(steps=1200, batch=256, hidden=256, dim=64, num_classes=10),
        "pretrain": 800,
        "finetune": 400,
    },
    "datasets": (*TOYS, "digits"),
    "eval_points": 10_000,
    "classifier_steps": 3000,
    "selection_seeds": (100,),
    "report_seeds": (0, 1, 2),
    "search_stages": 0,
    "lr": [1e-3, 3e-3],
}
QUICK: dict[str, Any] = {
    "toy": {"budget": Budget(steps=40, batch=64, hidden=32, depth=2), "pretrain": 30, "finetune": 10},
    "digits": {
        "budget": Budget(steps=30, batch=32, hidden=32, depth=2, dim=64, num_classes=10),
        "pretrain": 20,
        "finetune": 10,
    },
    "datasets": ("checkerboard", "digits"),
    "eval_points": 1000,
    "classifier_steps": 60,
    "selection_seeds": (100,),
    "report_seeds": (0,),
    "search_stages": 1,
    "lr": [1e-3],
}


def start_settings(dataset: str) -> dict[str, dict[str, Any]]:
    """The FM pretraining settings and the start of every SoFlow arm's search (the shared starts)."""
    if dataset == "digits":
        fm = {k: v for k, v in digits.START_DIGITS["FM"].items() if k != "guidance_scale"}
        soflow = {**digits.START_DIGITS["SoFlow"]}
    else:
        fm, soflow = dict(START["FM"]), dict(START["SoFlow"])
    lowdim = SoFlowConfig.lowdim()
    return {
        "FM": fm,
        "SoFlow": {**soflow, "r_init": lowdim.curriculum.r_init, "fm_fraction": lowdim.fm_fraction},
    }


def search_stages(config: dict[str, Any], dataset: str) -> list[dict[str, list[Any]]]:
    """The same stages for every arm: learning rate, then curriculum start, then batch split.

    The first `config["search_stages"]` of them; the learning rates `config["lr"]` if given.
    """
    lr = [3e-4, 1e-3, 3e-3] if dataset == "digits" else [1e-3, 3e-3, 1e-2]  # around the start (middle)
    stages = [{"lr": config.get("lr") or lr}, {"r_init": [0.05, 0.5]}, {"fm_fraction": [0.25, 0.75]}]
    return stages[: config["search_stages"]]


def fold_gap_input(backbone: MLPBackbone) -> None:
    r"""Make $F(x, t, s) = F(x, t, t)$ for every $s$: the gap features at $t - s = 0$ go into the bias.

    The first layer sees $[x, \phi(t), \phi(t - s)]$; a flow-matching model only ever saw
    $\phi(0)$ there. Adding $W_{gap}\,\phi(0)$ to the bias and zeroing $W_{gap}$ leaves $F(x, t, t)$
    unchanged and removes the dependence on $s$, like a zero-initialised embedder of $t - s$.
    """
    d, f = backbone.dim, backbone.frequencies
    with torch.no_grad():
        gap_weight = backbone.inp.weight[:, d + f :]
        zero_gap = timestep_embedding(torch.zeros(1, dtype=gap_weight.dtype), f, scale=backbone.time_scale)[0]
        backbone.inp.bias.add_(gap_weight @ zero_gap)
        gap_weight.zero_()


class Run(Trainer):
    """`Trainer` with this benchmark's losses: FM pretraining, or SoFlow from given weights."""

    def __init__(
        self,
        settings: dict[str, Any],
        budget: Budget,
        steps: int,
        batches: Any,
        seed: int,
        *,
        pretrain: bool = False,
        init: Path | None = None,
    ) -> None:
        shared = {k: settings[k] for k in ("lr", "time_scale", "ema")}
        super().__init__("FM" if pretrain else "SoFlow", shared, budget, steps, batches, seed)
        null = budget.num_classes
        if pretrain:
            self.loss = fm_pretraining_loss(null)
        else:
            self.loss = soflow_loss(settings, steps, null)
        if init is not None:
            self.model.load_state_dict(torch.load(init, weights_only=True))
            self.ema = EMA(self.model, decay=float(settings["ema"]), warmup=True)


def fm_pretraining_loss(null: int | None) -> Any:
    def loss(model: Any, data: Tensor, labels: Tensor | None, g: torch.Generator, _: Any) -> Tensor:
        noise = torch.randn(data.shape, generator=g)
        t = torch.rand(data.shape[0], generator=g)
        drop = None if labels is None else torch.rand(data.shape[0], generator=g) < DROP_RATE
        out = flow_matching_loss(model, data, noise, t, cond=labels, p=0.0, drop_mask=drop, null_cond=null)
        return out.loss

    return loss


def soflow_config(settings: dict[str, Any], steps: int) -> SoFlowConfig:
    """`SoFlowConfig.lowdim` with the arm's `r_init`, `fm_fraction` (and the digits' guidance)."""
    config = SoFlowConfig.lowdim(total_steps=steps, fm_fraction=float(settings["fm_fraction"]))
    config = replace(config, curriculum=replace(config.curriculum, r_init=float(settings["r_init"])))
    if "guidance_scale" in settings:
        guidance = GuidanceConfig(
            scale=settings["guidance_scale"], drop_rate=DROP_RATE, mix_ratio=0.5, decay_time=0.8
        )
        config = replace(config, guidance=guidance)
    return config


def soflow_loss(settings: dict[str, Any], steps: int, null: int | None) -> Any:
    objective = SoFlowLoss(soflow_config(settings, steps))

    def loss(model: Any, data: Tensor, labels: Tensor | None, g: torch.Generator, _: Any) -> Tensor:
        return objective(
            model, data, labels, null_cond=null if labels is not None else None, generator=g
        ).loss

    return loss


# ------------------------------------------------------------------------------------------------
# Runs (worker processes)


def dataset_batches(dataset: str, budget: Budget) -> Any:
    if dataset != "digits":
        return toys.batches(dataset, budget.batch)
    images, labels = digits.load_digits()

    def batches(g: torch.Generator) -> tuple[Tensor, Tensor]:
        index = torch.randint(images.shape[0], (budget.batch,), generator=g)
        return images[index], labels[index]

    return batches


def evaluation(dataset: str, seed: int, eval_points: int) -> tuple[Tensor, Tensor | None]:
    """The sampling noise and labels of a seed (toys: the noise of `toys.eval_data`)."""
    if dataset != "digits":
        return toys.eval_data(dataset, seed, eval_points)[2], None
    wanted = digits.load_digits()[1][digits.split()["other"]]
    return torch.randn(wanted.shape[0], 64, generator=torch.Generator().manual_seed(seed + 7)), wanted


def train_and_sample(
    dataset: str,
    settings: dict[str, Any],
    budget: Budget,
    steps: int,
    seed: int,
    eval_points: int,
    init: str | None = None,
    pretrain_to: str | None = None,
) -> dict[str, Any]:
    """One run; its samples. With `pretrain_to`: FM pretraining, whose folded EMA weights are saved there."""
    pretrain = pretrain_to is not None
    run = Run(
        settings,
        budget,
        steps,
        dataset_batches(dataset, budget),
        seed,
        pretrain=pretrain,
        init=init and Path(init),
    )
    model, seconds = run.run()
    noise, labels = evaluation(dataset, seed, eval_points)
    out: dict[str, Any] = {"s_per_step": seconds, "samples": {}}
    if pretrain:
        for nfe in (1, 100):
            out["samples"][f"FM Euler {nfe} NFE"] = euler_fm_sample(
                model.backbone, noise, steps=nfe, cond=labels
            )
        folded = copy.deepcopy(model)
        fold_gap_input(folded.backbone)
        torch.save(folded.state_dict(), Path(pretrain_to))  # type: ignore[arg-type]
    else:
        for label, nfe in zip(SAMPLE_LABELS, (1, 2), strict=True):
            g = torch.Generator().manual_seed(seed + 11)
            out["samples"][label] = sample(model, noise, steps=nfe, cond=labels, generator=g)
    if dataset == "digits":
        out["samples"] = {k: v.clamp(-1, 1) for k, v in out["samples"].items()}
    return out


class Scorer:
    """Scores of samples: energy distance and the toy metrics, or the digits classifier's scores."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.eval_points = config["eval_points"]
        self.classifier = (
            digits.train_classifier(config["classifier_steps"]) if "digits" in config["datasets"] else None
        )

    def __call__(self, dataset: str, seed: int, samples: Tensor) -> dict[str, float]:
        if dataset == "digits":
            assert self.classifier is not None
            return digits.score(self.classifier, samples)
        return toys.metrics(dataset, samples, toys.eval_data(dataset, seed, self.eval_points)[0])

    @staticmethod
    def key(dataset: str) -> str:
        return "frechet" if dataset == "digits" else "energy"


# ------------------------------------------------------------------------------------------------
# Parts


def budgets(config: dict[str, Any], dataset: str) -> tuple[Budget, dict[str, int], int]:
    """The budget, the steps of every arm, and the pretraining steps."""
    part = config["digits" if dataset == "digits" else "toy"]
    n, m = part["pretrain"], part["finetune"]
    return part["budget"], dict(zip(ARMS, (m, n + m, m), strict=True)), n


def pretrain_all(
    config: dict[str, Any], seeds: tuple[int, ...], work: Path, jobs: int, progress: Any, cache: Path | None
) -> dict[tuple[str, int], tuple[str, dict[str, Any]]]:
    """FM pretraining of every dataset and seed: `{(dataset, seed): (weights file, result)}`."""
    work.mkdir(parents=True, exist_ok=True)
    tasks, keys = [], []
    for dataset in config["datasets"]:
        budget, _, n = budgets(config, dataset)
        for seed in seeds:
            path = str(work / f"fm-{dataset}-{n}-{seed}.pt")
            tasks.append(
                (dataset, start_settings(dataset)["FM"], budget, n, seed, config["eval_points"], None, path)
            )
            keys.append((dataset, seed))
    progress.set_description("FM pretraining")
    # the weights file is written by the run itself: a cached result needs its file too
    results = run_tasks(
        train_and_sample,
        tasks,
        jobs,
        progress,
        cache if cache and all(Path(t[-1]).exists() for t in tasks) else None,
    )
    return {key: (task[-1], result) for key, task, result in zip(keys, tasks, results, strict=True)}


def arm_task(
    config: dict[str, Any], dataset: str, arm: str, settings: dict[str, Any], seed: int, init: str
) -> tuple[Any, ...]:
    budget, steps, _ = budgets(config, dataset)
    return (
        dataset,
        settings,
        budget,
        steps[arm],
        seed,
        config["eval_points"],
        init if arm == ARMS[0] else None,
        None,
    )


def part_select(
    config: dict[str, Any], scorer: Scorer, work: Path, jobs: int, progress: Any, cache: Path | None
) -> dict[str, Any]:
    seeds = config["selection_seeds"]
    if not config["search_stages"]:  # no search: every arm at the start settings
        starts = {d: start_settings(d)["SoFlow"] for d in config["datasets"]}
        return {
            "seeds": [],
            "criterion": {},
            "stages": {d: [] for d in config["datasets"]},
            "searches": {
                d: {arm: {"best": starts[d], "log": []} for arm in ARMS} for d in config["datasets"]
            },
        }
    pretrained = pretrain_all(config, seeds, work, jobs, progress, cache)
    searches = {
        (dataset, arm): StagedSearch(start_settings(dataset)["SoFlow"], search_stages(config, dataset))
        for dataset in config["datasets"]
        for arm in ARMS
    }

    def task(key: tuple[str, str], settings: dict[str, Any], seed: int) -> tuple[Any, ...]:
        dataset, arm = key
        return arm_task(config, dataset, arm, settings, seed, pretrained[(dataset, seed)][0])

    def score(key: tuple[str, str], result: dict[str, Any]) -> float:
        dataset = key[0]
        return scorer(dataset, seeds[0], result["samples"]["SoFlow 1 NFE"])[Scorer.key(dataset)]

    run_search(searches, task, train_and_sample, score, seeds, jobs, progress, cache)
    return {
        "seeds": list(seeds),
        "criterion": {d: f"{Scorer.key(d)} of the 1-NFE sample" for d in config["datasets"]},
        "stages": {d: search_stages(config, d) for d in config["datasets"]},
        "searches": {
            d: {arm: {"best": searches[(d, arm)].best, "log": searches[(d, arm)].log} for arm in ARMS}
            for d in config["datasets"]
        },
    }


def part_report(
    config: dict[str, Any],
    selection: dict[str, Any],
    scorer: Scorer,
    work: Path,
    jobs: int,
    progress: Any,
    cache: Path | None,
) -> dict[str, Any]:
    seeds = config["report_seeds"]
    pretrained = pretrain_all(config, seeds, work, jobs, progress, cache)
    tasks, keys = [], []
    for dataset in config["datasets"]:
        for arm in ARMS:
            settings = selection["searches"][dataset][arm]["best"]
            for seed in seeds:
                tasks.append(arm_task(config, dataset, arm, settings, seed, pretrained[(dataset, seed)][0]))
                keys.append((dataset, arm, seed))
    progress.set_description("reported runs")
    results = run_tasks(train_and_sample, tasks, jobs, progress, cache)
    out: dict[str, Any] = {"seeds": list(seeds), "datasets": {}}
    for dataset in config["datasets"]:
        budget, steps, n = budgets(config, dataset)
        out["datasets"][dataset] = {
            "budget": asdict(budget),
            "pretrain_steps": n,
            "steps": steps,
            "settings": {
                "FM pretraining": start_settings(dataset)["FM"],
                **{a: selection["searches"][dataset][a]["best"] for a in ARMS},
            },
            "runs": {"FM pretrained": []},
        }
        for seed in seeds:
            result = pretrained[(dataset, seed)][1]
            scores = {label: scorer(dataset, seed, s) for label, s in result["samples"].items()}
            out["datasets"][dataset]["runs"]["FM pretrained"].append(
                {"seed": seed, "s_per_step": result["s_per_step"], **scores}
            )
    for (dataset, arm, seed), result in zip(keys, results, strict=True):
        scores = {label: scorer(dataset, seed, s) for label, s in result["samples"].items()}
        out["datasets"][dataset]["runs"].setdefault(arm, []).append(
            {"seed": seed, "s_per_step": result["s_per_step"], **scores}
        )
    return out


# ------------------------------------------------------------------------------------------------
# Rendering

COLUMNS = {
    "toy": (("energy", "energy distance × 1000", 2, 1000.0), ("sw2", "sliced W2 × 1000", 2, 1000.0),
            ("precision", "precision", 3, 1.0), ("recall", "recall", 3, 1.0)),
    "digits": (("accuracy", "classifier accuracy", 3, 1.0), ("frechet", "Fréchet distance", 2, 1.0),
               ("precision", "precision", 3, 1.0), ("recall", "recall", 3, 1.0)),
}  # fmt: skip


def values(runs: list[dict[str, Any]], label: str, key: str) -> list[float]:
    return [run[label][key] for run in sorted(runs, key=lambda run: run["seed"])]


def headline(result: dict[str, Any]) -> str:
    rows = []
    for dataset, entry in result["datasets"].items():
        key = Scorer.key(dataset)
        tuned = values(entry["runs"][ARMS[0]], "SoFlow 1 NFE", key)
        cells = [dataset]
        for arm in ARMS[1:]:
            ratios = seed_ratios(tuned, values(entry["runs"][arm], "SoFlow 1 NFE", key))
            cells += [pm(ratios, 2), f"{sum(r < 1 for r in ratios)} of {len(ratios)}"]
        rows.append(cells)
    header = [
        "dataset",
        "fine-tuned / scratch, equal total steps",
        "seeds lower",
        "fine-tuned / scratch, equal fine-tuning steps",
        "seeds lower",
    ]
    return (
        "**Fine-tuned against scratch at 1 NFE**: energy distance (toys) or Fréchet distance (digits) of the "
        "fine-tuned model over the scratch model's, per seed (both share the seed's evaluation data and "
        "noise), mean ± std over the seeds; below 1 the fine-tuned model is closer to the data.\n\n"
        + markdown_table(header, rows)
    )


def dataset_table(dataset: str, entry: dict[str, Any]) -> str:
    columns = COLUMNS["digits" if dataset == "digits" else "toy"]
    n, steps = entry["pretrain_steps"], entry["steps"]
    names = {
        "FM pretrained": f"FM pretrained ({n} steps)",
        ARMS[0]: f"fine-tuned ({n} FM + {steps[ARMS[0]]} SoFlow steps)",
        ARMS[1]: f"scratch ({steps[ARMS[1]]} steps)",
        ARMS[2]: f"scratch ({steps[ARMS[2]]} steps)",
    }
    rows = []
    for arm, runs in entry["runs"].items():
        for label in runs[0]:
            if label in ("seed", "s_per_step"):
                continue
            cells = [pm(values(runs, label, key), digits, scale=scale) for key, _, digits, scale in columns]
            rows.append([f"{names[arm]}, {label.replace('SoFlow ', '').replace('FM ', '')}", *cells])
    return f"**{dataset}**\n\n" + markdown_table(
        ["model, sample", *(name for _, name, _, _ in columns)], rows
    )


def render(selection: dict[str, Any], result: dict[str, Any], out: Path) -> str:
    settings_rows = [
        [dataset, arm, settings_text(settings)]
        for dataset, entry in result["datasets"].items()
        for arm, settings in entry["settings"].items()
    ]
    stages = "; ".join(
        f"{d}: "
        + " → ".join("×".join(f"{k} {v}" for k, v in stage.items()) for stage in selection["stages"][d])
        for d in result["datasets"]
        if selection["stages"][d]
    )
    if stages:
        search = (
            "every arm gets the same staged search on seed "
            f"{', '.join(map(str, selection['seeds']))}, scored by the 1-NFE sample (toys: energy distance; "
            f"digits: Fréchet distance); stages: {stages}."
        )
    else:
        search = (
            "no search: every arm runs the shared start settings (the same learning rate for pretraining, "
            "fine-tuning and scratch), so the comparison is at equal settings, not at each arm's best."
        )
    sections = [
        f"Command: `{result['command']}` (torch {result['torch']}, one torch thread per worker process).",
        "**Protocol.** A flow-matching model is pretrained on the shared `MLPBackbone` (uniform times, "
        "plain MSE; digits with 10 % of the labels dropped, no guided target); its EMA weights, with the "
        "input of the gap t − s folded to zero, start a SoFlow run (fresh Adam with a cosine decay to 0, "
        "fresh EMA with warm-up). SoFlow from scratch runs the same backbone, data, batch and schedule for "
        "the total steps of both phases and for the fine-tuning steps. The curriculum start `r_init` and "
        "`fm_fraction` are the `lowdim` preset's; "
        + search
        + f" The tables report seeds {', '.join(map(str, result['seeds']))}.",
        "## Summary",
        headline(result),
        "## All samples",
        *(dataset_table(d, entry) for d, entry in result["datasets"].items()),
        "## Selected settings",
        markdown_table(["dataset", "arm", "settings"], settings_rows),
    ]
    write_markdown(out / "finetune.md", sections)
    return "\n\n".join(sections)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny budgets, one seed")
    parts = ["select", "report", "render"]
    parser.add_argument("--part", nargs="+", default=parts, choices=parts)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument(
        "--search-stages",
        type=int,
        default=None,
        choices=(0, 1, 2, 3),
        help="stages of the search (default: the budget's)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="worker processes, one torch thread each")
    parser.add_argument("--cache", type=Path, default=None, help="keep every run's result here (resume)")
    parser.add_argument(
        "--work", type=Path, default=None, help="pretrained weights (default outputs/finetune)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(1)
    config = QUICK if args.quick else FULL
    if args.search_stages is not None:
        config = {**config, "search_stages": args.search_stages}
    out = args.out or (ROOT / "outputs" / "bench-quick" if args.quick else ROOT / "benchmarks" / "results")
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or ROOT / "outputs" / ("finetune-quick" if args.quick else "finetune")
    command = " ".join(["python benchmarks/finetune.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"command": command, "torch": torch.__version__, "cpu_count": os.cpu_count()}
    names = {"select": "finetune_selection", "report": "finetune"}

    def load(part: str) -> dict[str, Any]:
        return json.loads((out / f"{names[part]}.json").read_text())

    def save(part: str, result: dict[str, Any]) -> None:
        (out / f"{names[part]}.json").write_text(json.dumps({**meta, **result}, indent=1) + "\n")

    scorer = Scorer(config) if {"select", "report"} & set(args.part) else None
    with tqdm(unit="run", dynamic_ncols=True) as progress:
        if "select" in args.part and scorer is not None:
            save("select", part_select(config, scorer, work, args.jobs, progress, args.cache))
        if "report" in args.part and scorer is not None:
            save("report", part_report(config, load("select"), scorer, work, args.jobs, progress, args.cache))
    if "render" in args.part:
        print(render(load("select"), load("report"), out))


if __name__ == "__main__":
    main()
