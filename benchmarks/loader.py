"""Does the DataLoader keep the full Conformer recipe fed? Loader samples/s with 0, 1 and 2 workers beside
the model's training-step rate on the full profile's batch.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/loader.py                 # ~5 min on 2 CPU cores
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/loader.py --quick         # seconds: wiring only

The corpus is written in the LibriSpeech layout's form (16 kHz 16-bit FLAC, noise + tones) at the
LibriSpeech 960 h mean utterance length (12.3 s; `--seconds`), with a NeMo manifest and character tokens.
The batches are the full profile's (`papers.conformer.full` in params.yaml: batch_size 16, SpecAugment
2 x F=27 + 10 x pS=0.05), planned and made exactly as training makes them (`SpeechPaper`'s variant batches ->
`PlannedBatches` -> DataLoader), timed over one pass. The step is forward + transducer loss + backward of
Conformer-L (the full profile's model, its 1024-piece joint: the character targets are valid ids of it)
on the first 1 and 2 utterances of one of those batches, extrapolated linearly to the recipe's 16 (the full
batch needs ~54 GB), on CPU (fp32, one thread; a GPU is far faster, so the ratio here is a lower bound on
the workers needed). The loader keeps up when its samples/s exceed the model's (batch_size / step time).

Writes `benchmarks/results/loader.json` and prints a table. Measured on a shared machine: quote the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from mmrepro.data.loader import LoaderSettings  # noqa: E402
from mmrepro.data.tokenizer import CharTokenizer  # noqa: E402
from mmrepro.data.tts_speech import write_manifest  # noqa: E402
from mmrepro.papers import get_paper  # noqa: E402

WORDS = "the of and to a in that he was it his i with as had for you but be her not she at on by".split()


def write_corpus(data_dir: Path, n: int, seconds: float, seed: int = 0) -> None:
    """`n` FLAC utterances of `seconds` (+-20%), their manifest and a character tokenizer."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        length = int(16000 * seconds * rng.uniform(0.8, 1.2))
        t = np.arange(length) / 16000
        audio = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.standard_normal(length)
        path = data_dir / "audio" / f"{k:05d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio.astype(np.float32), 16000, format="FLAC", subtype="PCM_16")
        text = " ".join(rng.choice(WORDS, size=int(2.7 * length / 16000)))  # ~2.7 words/s, as read speech
        rows.append({"audio_filepath": str(path), "duration": round(length / 16000, 4), "text": text,
                     "utt_id": f"{k:05d}", "speaker": str(k % 8)})
    write_manifest(data_dir / "train.jsonl", rows)
    CharTokenizer().save(data_dir / "tokenizer.json")


def loader_rate(planned, workers: int) -> float:
    """Samples/s of one pass over the planned batches."""
    started, samples = time.perf_counter(), 0
    for _, batch in planned.stream(lambda i: True, LoaderSettings(workers=workers)):
        samples += len(batch["feat_lens"])
    return samples / (time.perf_counter() - started)


def _first(batch: dict, n: int) -> dict:
    """The batch's first `n` utterances, padding trimmed."""
    frames, tokens = int(batch["feat_lens"][:n].max()), int(batch["target_lens"][:n].max())
    return {"feats": batch["feats"][:n, :frames], "feat_lens": batch["feat_lens"][:n],
            "targets": batch["targets"][:n, :tokens], "target_lens": batch["target_lens"][:n]}


def step_times(paper, cfg, data_dir: Path, batch: dict, sizes: list[int]) -> dict[int, float]:
    """Seconds of one forward + loss + backward of the full model on the batch's first n utterances, per n."""
    torch.manual_seed(0)
    model = paper.recognizer(cfg, "transducer", cfg.sp_vocab).train()  # the recipe's joint size
    warm = _first(batch, 1)
    warm["feats"], warm["feat_lens"] = warm["feats"][:, :200], warm["feat_lens"].clamp(max=200)
    model.loss(warm).backward()  # untimed: first-call allocations
    model.zero_grad(set_to_none=True)
    times = {}
    for n in sizes:
        started = time.perf_counter()
        model.loss(_first(batch, n)).backward()
        model.zero_grad(set_to_none=True)
        times[n] = time.perf_counter() - started
    return times


def autogroup() -> bool:
    """Linux autogroup scheduling on: all processes of this session share one CPU share, so on a busy machine
    worker processes add no CPU time (they still overlap decoding with the GPU's step)."""
    path = Path("/proc/sys/kernel/sched_autogroup_enabled")
    return path.is_file() and path.read_text().strip() == "1"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--utterances", type=int, default=256, help="corpus size (16 batches of 16)")
    ap.add_argument("--seconds", type=float, default=12.3, help="mean utterance length")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--step-batches", type=int, nargs=2, default=[1, 2],
                    help="the step is timed at these two batch sizes and extrapolated linearly to the recipe's "
                         "(the transducer step at 16 x 12 s needs ~54 GB: benchmarks/full_memory.py)")
    ap.add_argument("--quick", action="store_true", help="a tiny corpus and model: wiring only")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "loader.json")
    args = ap.parse_args()
    full = yaml.safe_load((ROOT / "configs" / "conformer.yaml").read_text())["full"]
    paper = get_paper("conformer")
    overrides = {"dataset": "tts-speech", "tokens": "char"}  # the corpus above stands in for LibriSpeech
    if args.quick:
        args.utterances, args.seconds = 8, 1.0
        overrides.update(batch_size=4, size="tiny", d_model=16, num_layers=1, num_heads=2, subsampling_channels=4)
        args.step_batches = [1, 2]
    cfg = paper.Config.model_validate({**full, **overrides})
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        write_corpus(data_dir, args.utterances, args.seconds)
        planned = paper.build(cfg, data_dir).variant("transducer").batches(0, 0)
        rates = {w: loader_rate(planned, w) for w in args.workers}
        _, batch = next(planned.stream(lambda i: i == 0))
        times = step_times(paper, cfg, data_dir, batch, args.step_batches)
    (b1, t1), (b2, t2) = times.items()
    step = t1 + (t2 - t1) / (b2 - b1) * (cfg.batch_size - b1)  # linear in the batch
    fed = cfg.batch_size / step
    record = {"batch_size": cfg.batch_size, "utterance_s": args.seconds, "utterances": args.utterances,
              "model": "tiny (quick)" if args.quick else f"Conformer-{cfg.size} transducer, joint {cfg.sp_vocab}",
              "device": "cpu", "torch_threads": torch.get_num_threads(), "cpu_cores": os.cpu_count(),
              "loader_samples_per_s": {str(w): round(r, 2) for w, r in rates.items()},
              "step_s_measured": {str(b): round(t, 3) for b, t in times.items()},
              "step_s": round(step, 3), "model_samples_per_s": round(fed, 3),
              "sched_autogroup": autogroup(), "load_average": os.getloadavg()[0],
              "note": "shared machine: ratios only"}
    print(f"batch {cfg.batch_size} x {args.seconds} s utterances, {args.utterances} utterances; "
          f"{torch.get_num_threads()} torch thread(s), {os.cpu_count()} cores (shared machine, load average "
          f"{record['load_average']:.1f}{'; autogroup: the workers share this session CPU share' if autogroup() else ''})")
    print("| loader workers | samples/s | x model's samples/s |")
    print("|---:|---:|---:|")
    for w, r in rates.items():
        print(f"| {w} | {r:.2f} | {r / fed:.2f} |")
    measured = ", ".join(f"{t:.2f} s at {b}" for b, t in times.items())
    print(f"model step (forward + loss + backward, {record['model']}, CPU fp32): {measured}; "
          f"at {cfg.batch_size} (linear): {step:.2f} s = {fed:.2f} samples/s")
    if not args.quick:
        tmp_out = args.out.with_suffix(".tmp")
        tmp_out.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp_out, args.out)


if __name__ == "__main__":
    main()
