"""The bodies of the per-paper DVC stages: prepare, train, evaluate.

Paths (all relative to the repo root, which is DVC's working directory):
    data/external/<paper>.json    locate: fingerprint of the external dataset files the paper reads
    data/<paper>/                 prepare: the prepared dataset + info.json
    artifacts/<paper>/            train: seed<k>/<variant>.pt (state dicts), runs.json (MLflow run ids)
    checkpoints/<paper>/          train: per-epoch checkpoints for resume (persisted across runs)
    reports/plots/<paper>/        train: loss and validation curves (CSV, DVC plots)
    reports/eval/<paper>/         evaluate: predictions, per-example scores, images (seed<k>/)
    reports/metrics/<paper>.json  evaluate: the paper's results, aggregated over seeds
"""

from __future__ import annotations

import csv
import json
import statistics
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import torch

from mmrepro.config import Params, dataset_settings, paper_config
from mmrepro.data.loader import LoaderSettings
from mmrepro.datasets import stat_fingerprint
from mmrepro.distributed import World, current_world, device_for, process_group
from mmrepro.environment import environment, fingerprint_dir, pick_device
from mmrepro.fileio import atomic_dir, write_json_atomic, write_text_atomic
from mmrepro.papers import get_paper
from mmrepro.papers.base import DataInfo, Result
from mmrepro.tracking import (MetricBuffer, copy_metrics, log_dataset_inputs, log_params, log_trained_model, metric_key,
                              open_run, run_tags, start_child_run, tracking_uri)
from mmrepro.train import CheckpointEvery, seed_everything, train_variant


def data_dir(name: str) -> Path:
    return Path("data") / name


def artifacts_dir(name: str) -> Path:
    return Path("artifacts") / name


def read_info(name: str) -> dict:
    path = data_dir(name) / "info.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the prepare stage first (dvc repro prepare@{name})")
    return json.loads(path.read_text())


def external_record(name: str) -> Path:
    return Path("data") / "external" / f"{name}.json"


def locate(params: Params, name: str) -> dict:
    """Fingerprint (relative path, size, mtime_ns of every file; nothing opened) the external dataset
    files the paper reads under the active profile into data/external/<paper>.json. The file is
    byte-identical when nothing changed, so DVC reruns prepare only after a change of the external copy;
    a profile that reads no external data writes a constant record."""
    settings = dataset_settings(params)
    paper, cfg = get_paper(name, settings), paper_config(params, name)
    paths = paper.external_paths(cfg)
    record: dict = {"paper": name, "profile": params.profile}
    if paths:
        record["root"] = str(settings.root.resolve())
        record["files"] = stat_fingerprint(settings.root, paths)
    else:
        record["files"] = None  # this profile reads no external dataset
    path = external_record(name)
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:  # unchanged: leave the file (and its mtime) alone
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    return record


def prepare(params: Params, name: str) -> DataInfo:
    paper, cfg = get_paper(name, dataset_settings(params)), paper_config(params, name)
    paper.params_key = f"papers.{name}.{params.profile}"
    with atomic_dir(data_dir(name)) as tmp:
        seed_everything(params.data_seed)
        info = paper.prepare(cfg, tmp, params.data_seed)
        record = {**asdict(info), "paper": name, "profile": params.profile, "data_seed": params.data_seed}
        record["fingerprint"] = fingerprint_dir(tmp)  # of the data files, before info.json exists
        write_json_atomic(tmp / "info.json", record)
    print(f"[{name}] prepared {info.dataset}: {info.splits} -> {data_dir(name)}")
    return info


def _write_curves(plots: Path, variant: str, seed: int, history) -> None:
    with (plots / f"train_loss_{variant}_seed{seed}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "loss"])
        writer.writerows(history.losses)
    if history.validation:
        keys = list(history.validation[0])
        with (plots / f"val_{variant}_seed{seed}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(history.validation)


def _curve_png(path: Path, title: str, histories: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for variant, history in histories.items():
        if history.losses:
            steps, losses = zip(*history.losses, strict=True)
            ax.plot(steps, losses, label=f"{variant} train loss", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _loop_settings(params: Params, device: torch.device) -> dict:
    """train_variant's keyword arguments from params.yaml's `train:` section."""
    return {"checkpoint_every": CheckpointEvery(params.train.checkpoint_steps, params.train.checkpoint_minutes),
            "loader": LoaderSettings(params.train.loader_workers, pin_memory=device.type == "cuda")}


def train(params: Params, name: str) -> dict[int, str]:
    """Train every variant for every seed; returns {seed: MLflow run id}. Under torchrun (train.nproc > 1)
    every rank trains and rank 0 alone logs and writes the outputs."""
    world = current_world()
    with process_group(world, device_for(world)):
        if not world.is_main:
            _train_follower(params, name, world)
            return {}
        return _train_main(params, name, world)


def _train_follower(params: Params, name: str, world: World) -> None:
    """A rank > 0: the same training calls as rank 0, without MLflow, checkpoints or outputs."""
    paper, cfg = get_paper(name, dataset_settings(params)), paper_config(params, name)
    info = read_info(name)
    for seed in params.seeds:
        ckpt_dir = Path("checkpoints") / name / f"seed{seed}"
        for variant in paper.variants(cfg):
            train_variant(paper, cfg, data_dir(name), variant, seed, ckpt_dir / f"{variant}.pt", info["fingerprint"],
                          device=device_for(world), world=world, **_loop_settings(params, device_for(world)))


def _train_main(params: Params, name: str, world: World) -> dict[int, str]:
    import mlflow  # here, not at the top: locate and prepare never log (see mmrepro.tracking)

    paper, cfg = get_paper(name, dataset_settings(params)), paper_config(params, name)
    info = read_info(name)
    device = device_for(world) if world.distributed else pick_device()
    runs: dict[int, str] = {}
    training: dict[str, dict] = {}  # "seed<k>/<variant>" -> how far training went (for the verdict)
    with atomic_dir(artifacts_dir(name)) as out, atomic_dir(Path("reports/plots") / name) as plots:
        for seed in params.seeds:
            ckpt_dir = Path("checkpoints") / name / f"seed{seed}"
            run_id_file = ckpt_dir / "mlflow_run_id"
            # A crashed run is continued (same run id) when its checkpoints are resumed.
            previous = run_id_file.read_text().strip() if run_id_file.is_file() else None
            run_name = f"{name}-{params.profile}-seed{seed}"
            tags = run_tags("train", {"paper": name, "profile": params.profile, "seed": str(seed),
                                      "data_fingerprint": info["fingerprint"], "dataset": info["dataset"]})
            with ExitStack() as stack:
                try:
                    run = stack.enter_context(open_run(params.mlflow.experiment, run_name, previous, tags))
                except mlflow.exceptions.MlflowException:  # that run is not in this store: start a new one
                    run = stack.enter_context(open_run(params.mlflow.experiment, run_name, None, tags))
                run_id = run.info.run_id
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                run_id_file.write_text(run_id)
                if previous != run_id:
                    log_params({"paper": name, "profile": params.profile, "seed": seed,
                                "data_seed": params.data_seed, "variants": ",".join(paper.variants(cfg)),
                                "dataset": info["dataset"], "cfg": cfg.model_dump(mode="json")})
                    log_dataset_inputs(info, data_dir(name), ("training", "validation"))
                buffer = MetricBuffer(run_id)
                histories = {}
                for variant in paper.variants(cfg):
                    model, history = train_variant(
                        paper, cfg, data_dir(name), variant, seed, ckpt_dir / f"{variant}.pt",
                        info["fingerprint"], metrics=buffer, device=device,
                        world=world, **_loop_settings(params, device),
                    )
                    buffer.flush()
                    histories[variant] = history
                    training[f"seed{seed}/{variant}"] = {"completed": history.completed, "epochs": history.epochs_done,
                                                         "optimizer_steps": history.optimizer_steps}
                    (out / f"seed{seed}").mkdir(exist_ok=True)
                    weights = out / f"seed{seed}" / f"{variant}.pt"
                    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
                    _write_curves(plots, variant, seed, history)
                    n_params = sum(p.numel() for p in model.parameters())
                    log_trained_model(model, f"{variant}-seed{seed}")
                    mlflow.log_metric(metric_key(variant if variant != "main" else "", "n_parameters"), n_params)
                png = plots / f"curves_seed{seed}.png"
                _curve_png(png, f"{name} ({params.profile}, seed {seed})", histories)
                mlflow.log_artifact(str(png), artifact_path="plots")
                runs[seed] = run_id
        write_json_atomic(out / "runs.json", {"tracking_uri": tracking_uri(), "runs": {str(k): v for k, v in runs.items()},
                                              "training": training})
    return runs


def _aggregate(per_seed: dict[int, list[Result]]) -> list[dict]:
    """One row per (variant, metric, dataset, split): mean, sample std and the per-seed values."""
    groups: dict[tuple, list[tuple[int, Result]]] = {}
    for seed, results in per_seed.items():
        for r in results:
            groups.setdefault((r.variant, r.metric, r.dataset, r.split), []).append((seed, r))
    rows = []
    for (variant, metric, dataset, split), items in groups.items():
        values = [r.value for _, r in items]
        measured = all(v is not None for v in values)
        first = items[0][1]
        rows.append({
            "variant": variant, "metric": metric, "dataset": dataset, "split": split,
            "value": statistics.fmean(values) if measured else None,
            "std": statistics.stdev(values) if measured and len(values) > 1 else None,
            "n_seeds": len(values), "per_seed": {str(s): r.value for s, r in items},
            "n_samples": first.n_samples, "scale": first.scale,
            "higher_is_better": first.higher_is_better, "details": first.details,
        })
    return rows


def evaluate(params: Params, name: str) -> dict:
    import mlflow

    paper, cfg = get_paper(name, dataset_settings(params)), paper_config(params, name)
    info = read_info(name)
    trained = json.loads((artifacts_dir(name) / "runs.json").read_text())
    runs = trained["runs"]
    paper.training_completed = all(t.get("completed", False) for t in trained.get("training", {}).values())
    device = pick_device()
    per_seed: dict[int, list[Result]] = {}
    eval_runs: dict[int, str] = {}  # seed -> the MLflow run of this evaluation (a child of the training run)
    metrics_path = Path("reports/metrics") / f"{name}.json"
    with atomic_dir(Path("reports/eval") / name) as out:
        for seed in params.seeds:
            seed_everything(seed)
            models = {}
            for variant in paper.variants(cfg):
                model = paper.build_model(cfg, data_dir(name), variant)
                state = torch.load(artifacts_dir(name) / f"seed{seed}" / f"{variant}.pt", map_location="cpu",
                                   weights_only=True)
                model.load_state_dict(state)
                models[variant] = model.to(device).eval()
            seed_out = out / f"seed{seed}"
            seed_out.mkdir()
            with torch.no_grad():
                results = paper.evaluate(models, cfg, data_dir(name), seed_out, seed)
            per_seed[seed] = results
            test_metrics = {
                metric_key("test", r.variant if r.variant != "main" else "", r.dataset, r.split, r.metric): r.value
                for r in results if r.value is not None
            }
            tags = run_tags("evaluate", {"paper": name, "profile": params.profile, "seed": str(seed)})
            with start_child_run(params.mlflow.experiment, runs[str(seed)], f"{name}-{params.profile}-seed{seed}-evaluate",
                                 tags) as eval_run:
                log_dataset_inputs(info, data_dir(name), ("evaluation",))
                mlflow.log_metrics(test_metrics)
                mlflow.log_artifacts(str(seed_out), artifact_path="evaluation")
                eval_runs[seed] = eval_run.info.run_id
            copy_metrics(runs[str(seed)], test_metrics)  # beside the training run's params in the runs table
        env = environment()
        rows = _aggregate(per_seed)
        record = {
            "paper": name, "title": paper.title, "profile": params.profile, "seeds": params.seeds,
            "dataset": info["dataset"], "splits": info["splits"], "data_fingerprint": info["fingerprint"],
            # what the report's verdict checks: the test sets' identity, the recipe, how far training went
            "identity": info.get("identity", {}), "config": cfg.model_dump(mode="json"),
            "departures": paper.departures(cfg), "training": trained.get("training", {}),
            **{k: env[k] for k in ("git_sha", "git_dirty", "python", "torch", "cuda", "device", "packages")},
            "mlflow_runs": runs,
            # flat view for `dvc metrics show`
            "summary": {metric_key(r["variant"] if r["variant"] != "main" else "", r["dataset"], r["split"], r["metric"])
                        .replace("/", "."): round(r["value"], 4) for r in rows if r["value"] is not None},
            "results": rows,
        }
    write_json_atomic(metrics_path, record)
    for seed in params.seeds:
        mlflow.MlflowClient(tracking_uri()).log_artifact(eval_runs[seed], str(metrics_path), artifact_path="metrics")
    return record
