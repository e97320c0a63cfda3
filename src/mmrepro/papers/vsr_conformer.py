"""Chang et al. 2023, "Conformers are All You Need for Visual Speech Recognition" (ICASSP 2024).

Claim: a linear-projection (LP) front end on raw 64x64 mouth crops feeding a Conformer encoder
reads lips as well as (or better than) the usual 3D-conv + ResNet-18 front end at equal encoder
size; the LP-Conformer reaches 12.8% WER on LRS3 test (visual only, RNN-T, no LM).

Variants: `lp` (the paper's model) and `conv` (the baseline front end), same encoder and head.
Data: `synthetic-lips` (smoke, cpu: viseme-driven parametric mouths, test speakers unseen) or
`lrs3` (full: the real LRS3 layout read with PyAV; mouth crops from the pre-cropped face tracks
or a landmark file, see `mmrepro.data.lrs3`). Both are stored in the same on-disk form:
`<split>.npy` (all frames of the split) + `<split>.jsonl`, or per-clip `.npy` for LRS3.

Results: WER and CER (normalisation of `mmrepro.metrics.wer`) on the unseen-speaker test split
per variant, decoded greedily or, with `beam_size` > 1 and the transducer head, by RNN-T beam search
(`TransducerHead.beam_search`; the paper decodes with beam 8; per-epoch validation stays greedy),
the LP - conv WER difference as the row of the paper's own claim, and a sample video (GIF) of mouth
frames with reference and hypothesis per variant in the evaluate out_dir. Batching (length buckets),
decoding and the WER evaluation (rows, hypotheses, RESULTS.md) are the speech family's
(`papers.common.speech`); this module adds the clips, their augmentation and the claim.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from mmrepro.data.synthetic_lips import LipsSpec, paired_sentences, write_corpus
from mmrepro.data.tokenizer import CharTokenizer
from mmrepro.metrics.wer import paired_bootstrap, score
from mmrepro.models.vsr_frontends import VisualConformer, VSRConfig
from mmrepro.datasets import DatasetError, DatasetSettings
from mmrepro.papers.base import DataInfo, EpochBatches, Paper, Result, TrainConfig, Variant
from mmrepro.papers.common.speech import pad_targets, planned_buckets, score_test_sets, transcribe

CLAIM = ("LP front end reads lips as well as or better than the 3D-conv + ResNet-18 front end at equal "
         "encoder size (Chang et al. 2023)")


class Config(TrainConfig):
    decode_keys: ClassVar[frozenset[str]] = frozenset({"beam_size", "sample_videos"})
    dataset: Literal["synthetic-lips", "lrs3"] = "synthetic-lips"
    variants: list[Literal["lp", "conv"]] = Field(default_factory=lambda: ["lp", "conv"], min_length=1)
    # synthetic-lips sizes (speakers are disjoint across splits)
    train_speakers: int = Field(default=40, gt=0)
    dev_speakers: int = Field(default=2, gt=0)
    test_speakers: int = Field(default=8, gt=0)
    clips_per_speaker: int = Field(default=50, gt=0, description="train clips per train speaker")
    eval_clips_per_speaker: int = Field(default=25, gt=0, description="clips per dev/test speaker")
    sentences: dict[str, int] = Field(default_factory=lambda: {"train": 2000, "dev": 100, "test": 300},
                                      description="sentence pool per split (shared list, paired with tts-speech)")
    # lrs3 (full)
    # read from <datasets root>/LRS3/{trainval,test} (params datasets.root, $MMREPRO_DATASETS)
    lrs3_splits: list[Literal["pretrain", "trainval"]] = Field(
        default=["trainval"], min_length=1, description="LRS3 splits to train on (the paper: pretrain + trainval)")
    lrs3_crop: Literal["center", "landmarks"] = "center"
    lrs3_dev_speakers: int = Field(default=20, ge=1, description="trainval speakers held out for validation")
    # model (equal encoder for both variants)
    image_size: int = Field(default=64, gt=0)
    d_model: int = Field(default=144, gt=0)
    num_layers: int = Field(default=4, gt=0)
    num_heads: int = Field(default=4, gt=0)
    ff_mult: int = Field(default=4, gt=0)
    conv_kernel: int = Field(default=15, gt=0)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    resnet_width: int = Field(default=64, gt=0, description="conv front end: first-stage channels (ResNet-18: 64)")
    pixel_norm: Literal["fixed", "clip"] = "fixed"  # see mmrepro.models.vsr_frontends._normalise
    head: Literal["ctc", "transducer"] = "ctc"
    pred_dim: int = Field(default=320, gt=0)
    joint_dim: int = Field(default=0, ge=0)
    embed_dim: int = Field(default=0, ge=0)
    beam_size: int = Field(default=1, ge=1, description="test decoding: 1 = greedy; > 1 = RNN-T beam search "
                                                        "(transducer head only; the paper: 8)")
    # training
    augment: bool = True  # random horizontal flip and +-max_shift pixel translation per clip
    max_shift: int = Field(default=4, ge=0)
    val_clips: int = Field(default=50, gt=0, description="dev clips decoded per epoch")
    sample_videos: int = Field(default=2, ge=0, description="test clips written as GIF per variant")

    @model_validator(mode="after")
    def _beam_needs_transducer(self) -> Config:
        if self.beam_size > 1 and self.head != "transducer":
            raise ValueError(f"beam_size {self.beam_size} needs head: transducer (beam search is implemented for "
                             f"the RNN-T head only; the CTC head decodes greedily, beam_size 1)")
        return self

    def decoding(self) -> str:
        """How the test set is decoded, as reported: "beam 8 transducer" or "greedy ctc"."""
        return f"beam {self.beam_size} {self.head}" if self.beam_size > 1 else f"greedy {self.head}"


# ---------------------------------------------------------------------------------------------- data
def _read_records(data_dir: Path, split: str) -> list[dict]:
    with open(data_dir / f"{split}.jsonl") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class _Split:
    """Clips of one split: frames from the split's `.npy` (memory-mapped) or per-clip files. Read by the speech
    family's `transcribe` / `score_test_sets` as an utterance set: `lengths`, `texts`, `ids`, `speakers`,
    `batch(indices) -> (frames (B, T, H*W) uint8, lengths (B,))`."""

    def __init__(self, data_dir: Path, split: str) -> None:
        self.records = _read_records(data_dir, split)
        path = data_dir / f"{split}.npy"
        self.frames = np.load(path, mmap_mode="r") if path.is_file() else None
        self.data_dir = data_dir
        self.lengths = torch.tensor([r["n_frames"] for r in self.records], dtype=torch.long)
        self.texts = [r["text"] for r in self.records]
        self.ids = [r["id"] for r in self.records]
        self.speakers = [r.get("speaker") for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def clip(self, i: int) -> np.ndarray:
        r = self.records[i]
        if "path" in r:
            return np.load(self.data_dir / r["path"])
        return np.asarray(self.frames[r["offset"] : r["offset"] + r["n_frames"]])

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return _pad_clips([self.clip(i) for i in idx])


def _pad_clips(clips: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (T_i, H, W) uint8 -> (frames (B, T_max, H*W) uint8, zero-padded; lengths (B,))."""
    t_max = max(c.shape[0] for c in clips)
    h, w = clips[0].shape[1:]
    frames = np.zeros((len(clips), t_max, h * w), np.uint8)
    for k, c in enumerate(clips):
        frames[k, : c.shape[0]] = c.reshape(c.shape[0], -1)
    return torch.from_numpy(frames), torch.tensor([c.shape[0] for c in clips], dtype=torch.long)


def _augment(clip: np.ndarray, rng: np.random.Generator, max_shift: int) -> np.ndarray:
    if rng.random() < 0.5:
        clip = clip[:, :, ::-1]
    if max_shift:
        dy, dx = rng.integers(-max_shift, max_shift + 1, size=2)
        clip = np.roll(clip, (int(dy), int(dx)), axis=(1, 2))
    return np.ascontiguousarray(clip)


class _ClipBatch:
    """plan (indices, seed) -> training batch in whichever process runs it: reads the clips (array or files),
    augments them with a generator seeded by the plan alone (so any number of workers agrees), collates."""

    def __init__(self, cfg: Config, data_dir: Path, tokenizer: CharTokenizer) -> None:
        self.augment, self.max_shift, self.data_dir, self.tokenizer = cfg.augment, cfg.max_shift, data_dir, tokenizer
        self._split: _Split | None = None  # read once per process

    def __call__(self, plan: tuple[list[int], int]) -> dict[str, torch.Tensor]:
        idx, batch_seed = plan
        if self._split is None:
            self._split = _Split(self.data_dir, "train")
        split = self._split
        clips = [split.clip(i) for i in idx]
        if self.augment:
            rng = np.random.default_rng(batch_seed)
            clips = [_augment(c, rng, self.max_shift) for c in clips]
        frames, lengths = _pad_clips(clips)
        targets, target_lengths = pad_targets([self.tokenizer.encode(split.texts[i]) for i in idx])
        return {"frames": frames, "lengths": lengths, "targets": targets, "target_lengths": target_lengths}


def _prepare_lrs3(cfg: Config, data_dir: Path, seed: int, settings: DatasetSettings, key: str) -> DataInfo:
    """The training splits (`lrs3_splits`: count) and test (count + fingerprint of clip id + transcript) are
    checked against references/datasets.yaml from the transcripts alone, before any mp4 is decoded. Dev is a
    set of trainval speakers held out; train is the rest of trainval plus pretrain when asked for."""
    from mmrepro.data import lrs3

    root = settings.folder("LRS3")
    read = {}
    for split in dict.fromkeys(["trainval", *cfg.lrs3_splits, "test"]):
        if not (root / split).is_dir():
            raise settings.missing("lrs3", key, root / split)
        read[split] = lrs3.list_clips(root, split)
        settings.check("lrs3", split, lrs3.split_identity_of(read[split]), key, counts_only=split != "test")
    trainval, test = read["trainval"], read["test"]
    speakers = sorted({c.speaker for c in trainval})
    if len(speakers) < 2:
        raise DatasetError(f"lrs3: {root / 'trainval'} has {len(speakers)} speaker(s); dev holds speakers out "
                           f"(params {key})")
    rng = np.random.default_rng(seed)
    dev_spk = set(rng.choice(speakers, size=min(cfg.lrs3_dev_speakers, len(speakers) - 1), replace=False).tolist())
    pretrain = read.get("pretrain", [])
    splits = {"train": pretrain + [c for c in trainval if c.speaker not in dev_spk],
              "dev": [c for c in trainval if c.speaker in dev_spk], "test": test}
    for split, clips in splits.items():
        (data_dir / split).mkdir(parents=True, exist_ok=True)
        with open(data_dir / f"{split}.jsonl", "w") as fh:
            for c in clips:
                crops = lrs3.load_clip(c, crop=cfg.lrs3_crop, size=cfg.image_size)
                rel = f"{split}/{c.id.replace('/', '__')}.npy"
                np.save(data_dir / rel, crops)
                fh.write(json.dumps({"id": c.id, "speaker": c.speaker, "text": c.text, "path": rel,
                                     "n_frames": int(crops.shape[0])}) + "\n")
    return DataInfo(dataset="lrs3", splits={k: len(v) for k, v in splits.items()},
                    details={"crop": cfg.lrs3_crop, "image_size": cfg.image_size, "root": str(root.resolve()),
                             "dev": f"{len(dev_spk)} trainval speakers held out",
                             "train_splits": [s for s in cfg.lrs3_splits if s == "pretrain"] + ["trainval"]},
                    identity={"lrs3/test": lrs3.split_identity_of(test)})


# ---------------------------------------------------------------------------------------------- paper
class VsrConformer(Paper):
    name = "vsr_conformer"
    title = "Chang et al. 2023, Conformers are All You Need for Visual Speech Recognition (LP-Conformer)"
    Config = Config

    tokenizer = CharTokenizer()

    def external_paths(self, cfg: Config) -> list[Path]:
        if cfg.dataset != "lrs3":
            return []
        return [self.datasets.folder("LRS3") / s for s in dict.fromkeys(["trainval", *cfg.lrs3_splits, "test"])]

    def prepare(self, cfg: Config, data_dir: Path, seed: int) -> DataInfo:
        if cfg.dataset == "lrs3":
            return _prepare_lrs3(cfg, data_dir, seed, self.datasets, f"{self.params_key}.dataset")
        sents = paired_sentences(cfg.sentences, seed)
        spec = LipsSpec(
            speakers={"train": cfg.train_speakers, "dev": cfg.dev_speakers, "test": cfg.test_speakers},
            clips_per_speaker={"train": cfg.clips_per_speaker, "dev": cfg.eval_clips_per_speaker,
                               "test": cfg.eval_clips_per_speaker},
            size=cfg.image_size,
        )
        counts = write_corpus(data_dir, sents, spec, seed)
        train_texts = {r["text"] for r in _read_records(data_dir, "train")}
        test_recs = _read_records(data_dir, "test")
        frames = {s: int(sum(r["n_frames"] for r in _read_records(data_dir, s))) for s in counts}
        return DataInfo(dataset="synthetic-lips", splits=counts, details={
            "speakers": spec.speakers, "frames": frames, "fps": 25, "image_size": cfg.image_size,
            "test_sentences_seen_in_train": sum(r["text"] in train_texts for r in test_recs),
            "pairing": "sentence_id == tts-speech utt_id for the same data_seed (mmrepro.data.synthetic_lips)",
        })

    def departures(self, cfg: Config) -> list[str]:
        out = ["the paper pre-trains on ~100k h of YouTube video, which is not public (its 12.8% WER includes it)"]
        if cfg.beam_size != 8 or cfg.head != "transducer":
            out.append(f"{cfg.decoding()} decoding (the paper: RNN-T, beam 8)")
        if "pretrain" not in cfg.lrs3_splits:
            out.append("trained without LRS3 pretrain (the paper: pretrain + trainval)")
        return out

    def model_config(self, cfg: Config, frontend: str) -> VSRConfig:
        return VSRConfig(
            frontend=frontend, image_size=cfg.image_size, d_model=cfg.d_model, num_layers=cfg.num_layers,
            num_heads=cfg.num_heads, ff_mult=cfg.ff_mult, conv_kernel=cfg.conv_kernel, dropout=cfg.dropout,
            resnet_width=cfg.resnet_width, pixel_norm=cfg.pixel_norm, head=cfg.head, vocab_size=self.tokenizer.vocab_size,
            pred_dim=cfg.pred_dim, joint_dim=cfg.joint_dim, embed_dim=cfg.embed_dim,
        )

    def make_variants(self, cfg: Config, data_dir: Path) -> list[Variant]:
        """One model per front end (`lp`, `conv`): the same encoder, head and recipe keys."""
        splits: dict[str, _Split] = {}  # read once, on first use

        def split(name: str) -> _Split:
            if name not in splits:
                splits[name] = _Split(Path(data_dir), name)
            return splits[name]

        def variant(frontend: str) -> Variant:
            recipe = cfg.recipe_for(frontend)

            def batches(epoch: int, seed: int):
                train = split("train")
                planned = planned_buckets(train.lengths.tolist(), recipe.batch_size, epoch, seed,
                                          _ClipBatch(recipe, Path(data_dir), self.tokenizer))
                if train.frames is None:  # LRS3: a file per clip, read and augmented in DataLoader workers
                    return planned
                # synthetic-lips: one memory-mapped array, where a worker would only copy; the same batches
                # made here (120 conv steps with validation: 27.4 s in-process against 28.7 s with 4 workers, medians of 3)
                return EpochBatches(len(planned), planned)  # PlannedBatches' own iteration: no workers

            def validate(model: VisualConformer) -> dict[str, float]:
                dev = split("dev")
                n = min(cfg.val_clips, len(dev))
                res = score(dev.texts[:n], transcribe(model, dev, self.tokenizer, limit=n))  # greedy (cheap)
                # process CPU seconds so far (all variants of this train stage): the per-variant compute
                # budget is read from it, as wall time on a shared machine says little
                return {"wer": 100 * res.wer, "cer": 100 * res.cer, "process_cpu_s": time.process_time()}

            return Variant(self.name, frontend, recipe, lambda: VisualConformer(self.model_config(cfg, frontend)),
                           batches, lambda model, b: model.loss(b["frames"], b["lengths"], b["targets"], b["target_lengths"]),
                           validate)

        return [variant(frontend) for frontend in cfg.variants]

    def evaluate(self, models, cfg: Config, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        split = _Split(data_dir, "test")
        dataset = cfg.dataset
        about = f"{self.name}, seed {seed}, {cfg.head} head, decoding: {cfg.decoding()}"
        results, scored = score_test_sets(
            models, [(split, dataset, "test")], self.tokenizer, lambda v: (cfg.decoding(), cfg.beam_size),
            {"speakers": "unseen in training"}, out_dir, about)
        for variant in models:
            hyps = [u["hyp"] for u in scored[(variant, dataset, "test")].utterances]
            for k in range(min(cfg.sample_videos, len(split))):
                _write_sample_gif(out_dir / f"sample_{variant}_{k}.gif", split.clip(k), split.texts[k], hyps[k],
                                  f"{variant}: {split.ids[k]}")
        if "lp" in models and "conv" in models:
            lp, conv = scored[("lp", dataset, "test")], scored[("conv", dataset, "test")]
            # the claim holds unless LP is worse beyond chance: the paired bootstrap's 95% interval of
            # WER(lp) - WER(conv) over the same test clips lies above 0
            boot = paired_bootstrap(lp, conv)
            results.append(Result(
                "wer_lp_minus_conv", boot["difference"], dataset=dataset, split="test", n_samples=len(split),
                scale="x100", variant="lp-vs-conv", higher_is_better=False,
                details={"claim": CLAIM, "wer_lp": 100 * lp.wer, "wer_conv": 100 * conv.wer,
                         "ci95": boot["ci95"], "p_conv_better": boot["p_b_better"],
                         "interval": f"paired bootstrap over the test clips, {boot['resamples']} resamples "
                                     "(Bisani & Ney 2004)",
                         # never judged from unfinished training
                         "agrees_with_claim": bool(boot["ci95"][0] <= 0.0) if self.training_completed else None,
                         "agreement_rule": "LP not worse than conv beyond the 95% interval (its lower end <= 0)",
                         "encoder": f"same Conformer ({cfg.num_layers} layers, d={cfg.d_model}) for both"},
            ))
        return results


def _write_sample_gif(path: Path, clip: np.ndarray, ref: str, hyp: str, title: str, scale: int = 3) -> None:
    """Animated GIF (25 fps) of the mouth frames, upscaled, with the reference and hypothesis below."""
    from PIL import Image, ImageDraw

    _, h, w = clip.shape
    width = max(w * scale, 8 * max(len(ref), len(hyp), len(title)) + 16)
    frames = []
    for f in clip:
        canvas = Image.new("L", (width, h * scale + 48), 255)
        canvas.paste(Image.fromarray(np.asarray(f)).resize((w * scale, h * scale), Image.NEAREST), (0, 0))
        draw = ImageDraw.Draw(canvas)
        draw.text((4, h * scale + 2), title, fill=0)
        draw.text((4, h * scale + 17), f"REF: {ref}", fill=0)
        draw.text((4, h * scale + 32), f"HYP: {hyp}", fill=0)
        frames.append(canvas)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40, loop=0)
