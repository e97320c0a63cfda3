"""What the speech-recognition papers (Conformer, Fast Conformer) share: their config schema, data
preparation, feature batches, the CTC / transducer recogniser wrapper and the WER evaluation. Lip reading
(`papers.vsr_conformer`) reuses the family's batching (`length_buckets`, `planned_buckets`, `pad_targets`),
decoding (`transcribe`) and evaluation (`score_test_sets`: rows, hypotheses, one RESULTS.md format).

Data per profile:
    smoke/cpu  `tts-speech` (espeak-ng + flite, test voices unseen; `mmrepro.data.tts_speech`) for
               training and the in-domain test, plus `pocketsphinx-real` (real recordings,
               out-of-domain; `mmrepro.data.pocketsphinx_real`) as a second test set; character tokens.
    full       LibriSpeech 960 h (`mmrepro.data.librispeech`, test-clean / test-other with the enforced
               identity check); 1k SentencePiece unigram word pieces trained from the training transcripts.

Prepared layout (`data/<paper>/`): the corpora's WAVs and NeMo manifests, `tokenizer.json` (+ the
SentencePiece model), and for the small corpora `features_<split>.pt`: 80-dim log-mel features
(`mmrepro.data.audio_features`), float16, concatenated along time with per-utterance lengths, so
training does not recompute them. LibriSpeech features are computed on the fly from the FLACs.
Training batches are length-bucketed (utterances of similar length together, batch order shuffled
from (seed, epoch)), optionally VTLP-warped (`vtlp`, off by default) and SpecAugmented as in the
Conformer paper (mask counts and widths configurable).
"""

from __future__ import annotations

import json
import random
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from mmrepro.data.audio_features import (FbankConfig, SpecAugmentConfig, load_audio, log_mel, spec_augment,
                                         vtlp)
from mmrepro.data.loader import PlannedBatches
from mmrepro.data.pocketsphinx_real import DATASET as PSR_DATASET
from mmrepro.data.pocketsphinx_real import prepare_pocketsphinx_real
from mmrepro.data.tokenizer import CharTokenizer, SentencePieceTokenizer, load_tokenizer
from mmrepro.data.tts_speech import DATASET as TTS_DATASET
from mmrepro.data.tts_speech import TTSConfig, prepare_tts_speech, read_manifest, write_manifest
from mmrepro.metrics.wer import NORMALISATION, WerResult, espnet_table, save_hypotheses, score, score_by
from mmrepro.models.ctc import CTCHead
from mmrepro.models.transducer import TransducerHead
from mmrepro.datasets import DatasetError
from mmrepro.fileio import save_torch_atomic
from mmrepro.papers.base import DataInfo, EpochBatches, Paper, Result, TrainConfig, Variant

VARIANTS = ("ctc", "transducer")
LIBRISPEECH_TEST = ("test-clean", "test-other")


class SpeechConfig(TrainConfig):
    """Per-profile settings of a speech paper (params.yaml `papers.<name>.<profile>`)."""

    decode_keys: ClassVar[frozenset[str]] = frozenset({"beam_size"})

    dataset: Literal["tts-speech", "librispeech"] = "tts-speech"
    variants: list[Literal["ctc", "transducer"]] = Field(default_factory=lambda: list(VARIANTS), min_length=1)
    # tts-speech corpus
    n_train: int = Field(default=2000, ge=1)
    n_dev: int = Field(default=200, ge=1)
    n_test: int = Field(default=300, ge=1)
    flite_fraction: float = Field(default=0.25, ge=0, le=1)
    noise_fraction: float = Field(default=0.0, ge=0, le=1, description="share of utterances with added noise")
    pocketsphinx_real: bool = Field(default=True, description="also test on the real pocketsphinx recordings")
    # LibriSpeech (full profile)
    # read from <datasets root>/LibriSpeech/<subset> (params datasets.root, $MMREPRO_DATASETS)
    download: bool = Field(default=False, description="fetch missing OpenSLR archives (md5-verified); off: never")
    train_subsets: list[str] = Field(default_factory=lambda: ["train-clean-100", "train-clean-360", "train-other-500"])
    # tokens
    tokens: Literal["char", "sentencepiece"] = "char"
    sp_vocab: int = Field(default=1024, ge=2, description="SentencePiece unigram vocabulary (paper: 1k)")
    # model: size S/M/L = the paper's Table 1; "tiny" = the same architecture at the sizes below
    size: Literal["tiny", "S", "M", "L"] = "tiny"
    d_model: int = Field(default=144, gt=0)
    num_layers: int = Field(default=4, gt=0)
    num_heads: int = Field(default=4, gt=0)
    subsampling_channels: int = Field(default=0, ge=0, description="0 = the paper's (d_model / 256)")
    conv_kernel: int = Field(default=0, ge=0, description="0 = the paper's (Conformer 32, Fast Conformer 9)")
    subsampling_factor: Literal[0, 2, 4, 8, 16] = Field(
        default=0, description="0 = the paper's (Conformer 4, Fast Conformer 8); Fast Conformer only, for ablations")
    pred_dim: int = Field(default=320, gt=0, description="transducer LSTM size for size=tiny")
    attention: Literal["rel_pos", "limited"] = "rel_pos"
    att_context: int = Field(default=128, ge=1)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    # SpecAugment (paper: 2 x F=27, 10 x pS=0.05)
    spec_augment: bool = True
    freq_masks: int = Field(default=2, ge=0)
    freq_width: int = Field(default=27, ge=0)
    time_masks: int = Field(default=10, ge=0)
    time_ratio: float = Field(default=0.05, ge=0, le=1)
    # VTLP (not in the paper): per-utterance spectral warp factor drawn from [1 - vtlp, 1 + vtlp]
    vtlp: float = Field(default=0.0, ge=0, lt=0.5, description="0 = off (the paper); 0.1 = Jaitly & Hinton")
    # evaluation
    max_symbols: int = Field(default=10, ge=1, description="transducer search: max emissions per frame")
    beam_size: int = Field(default=1, ge=1, description="test decoding of the transducer: 1 = greedy, > 1 = RNN-T "
                                                        "beam search; CTC always decodes greedily")
    val_utterances: int = Field(default=100, ge=1, description="dev utterances scored after each epoch")

    @model_validator(mode="after")
    def _beam_needs_transducer(self) -> SpeechConfig:
        if self.beam_size > 1 and "transducer" not in self.variants:
            raise ValueError(f"beam_size {self.beam_size} applies to the transducer variant, which variants "
                             f"{self.variants} leave out (CTC decodes greedily; use beam_size 1)")
        return self

    def decoding(self, variant: str) -> str:
        """How `variant` is decoded at test time, as reported: "beam 8 transducer", "greedy ctc"."""
        return f"beam {self.beam_size} {variant}" if variant == "transducer" and self.beam_size > 1 else f"greedy {variant}"


# ----------------------------------------------------------------------------------------- model


class SpeechRecognizer(nn.Module):
    """Encoder + one output head. `loss(batch)` for training, `decode(feats, lengths, beam=1)` for greedy
    decoding (beam > 1: RNN-T beam search, transducer head only); features (B, T, 80), lengths (B,),
    token ids in [0, vocab) with blank = vocab."""

    def __init__(self, encoder: nn.Module, head: nn.Module, max_symbols: int = 10) -> None:
        super().__init__()
        self.encoder, self.head, self.max_symbols = encoder, head, max_symbols

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        enc, enc_len = self.encoder(batch["feats"], batch["feat_lens"])
        return self.head.loss(enc.float(), enc_len, batch["targets"], batch["target_lens"])

    @torch.no_grad()
    def decode(self, feats: torch.Tensor, lengths: torch.Tensor, beam: int = 1) -> list[list[int]]:
        enc, enc_len = self.encoder(feats, lengths)
        if isinstance(self.head, TransducerHead):
            if beam > 1:
                return self.head.beam_search(enc.float(), enc_len, beam, self.max_symbols)
            return self.head.greedy_decode(enc.float(), enc_len, self.max_symbols)
        if beam > 1:
            raise ValueError(f"beam search (beam {beam}) is implemented for the transducer head only")
        return self.head.greedy_decode(enc.float(), enc_len)


# ----------------------------------------------------------------------------------------- data


def _fbank() -> FbankConfig:
    return FbankConfig()


def _save_features(rows: list[dict[str, Any]], path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-utterance STFTs are too small to share: 2 threads only add sync cost
    try:
        feats = [log_mel(load_audio(r["audio_filepath"]), _fbank()) for r in rows]
    finally:
        torch.set_num_threads(threads)
    save_torch_atomic({"feats": torch.cat(feats).half(), "lengths": torch.tensor([f.shape[0] for f in feats]),
                       "texts": [r["text"] for r in rows], "ids": [r.get("utt_id", str(i)) for i, r in enumerate(rows)],
                       "speakers": [r.get("speaker") for r in rows]},
                      path)


class _FeatureSet:
    """One split's features: cached in `features_<split>.pt`, or computed on demand from a manifest."""

    def __init__(self, data_dir: Path, split: str) -> None:
        cache = data_dir / f"features_{split}.pt"
        if cache.is_file():
            blob = torch.load(cache, weights_only=True)
            self.lengths = blob["lengths"]
            self._feats = torch.split(blob["feats"], self.lengths.tolist())
            self.texts, self.ids = blob["texts"], blob["ids"]
            self.speakers = blob.get("speakers") or [None] * len(self.texts)
            self._rows = None
        else:
            self._rows = read_manifest(data_dir / f"{split}.jsonl")
            self.texts = [r["text"] for r in self._rows]
            self.ids = [r.get("utt_id", str(i)) for i, r in enumerate(self._rows)]
            self.speakers = [r.get("speaker") for r in self._rows]
            # frames from the manifest duration (10 ms hop), for length bucketing without reading audio
            self.lengths = torch.tensor([int(r["duration"] * 100) + 1 for r in self._rows])
            self._feats = None

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def decoded_on_the_fly(self) -> bool:
        """No cached features: every batch reads and featurises its audio files."""
        return self._feats is None

    def feats(self, i: int) -> torch.Tensor:
        if self._feats is not None:
            return self._feats[i].float()
        return log_mel(load_audio(self._rows[i]["audio_filepath"]), _fbank())

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        feats = [self.feats(i) for i in idx]
        lengths = torch.tensor([f.shape[0] for f in feats])
        out = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
        for k, f in enumerate(feats):
            out[k, : f.shape[0]] = f
        return out, lengths


class SpeechData:
    """A prepared speech data directory as a built paper keeps it: the tokenizer and each split's features,
    read once, on first use (building a paper to score or size a model reads no features)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._splits: dict[str, _FeatureSet] = {}

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.data_dir / "tokenizer.json")

    def split(self, name: str) -> _FeatureSet:
        if name not in self._splits:
            self._splits[name] = _FeatureSet(self.data_dir, name)
        return self._splits[name]


def length_buckets(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices sorted by length (ties broken at random), cut into batches, batch order shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[k : k + batch_size] for k in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_targets(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.zeros(len(seqs), max(1, int(lengths.max())), dtype=torch.long)
    for k, s in enumerate(seqs):
        out[k, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def _augmented_batch(cfg: SpeechConfig, data: _FeatureSet, tok, idx: list[int], gen: torch.Generator) -> dict:
    """One training batch: features (VTLP-warped, SpecAugmented with draws from `gen`) and padded targets."""
    feats, lengths = data.batch(idx)
    if cfg.vtlp:
        factors = 1 + cfg.vtlp * (2 * torch.rand(len(idx), generator=gen) - 1)
        feats = vtlp(feats, factors, _fbank())
    if cfg.spec_augment:
        aug = SpecAugmentConfig(cfg.freq_masks, cfg.freq_width, cfg.time_masks, cfg.time_ratio)
        feats = spec_augment(feats, lengths, aug, generator=gen)
    targets, target_lens = pad_targets([tok.encode(data.texts[i]) for i in idx])
    return {"feats": feats, "feat_lens": lengths, "targets": targets, "target_lens": target_lens}


class _DecodedBatch:
    """plan (indices, seed) -> batch, in whichever process runs it: reads the FLACs, computes the log-mel
    features, augments with a generator seeded by the plan alone (so any number of workers agrees)."""

    def __init__(self, cfg: SpeechConfig, data_dir: Path) -> None:
        self.cfg, self.data_dir = cfg, Path(data_dir)
        self._data: SpeechData | None = None  # read once per process

    def __call__(self, plan: tuple[list[int], int]) -> dict:
        idx, batch_seed = plan
        if self._data is None:
            self._data = SpeechData(self.data_dir)
        data = self._data
        return _augmented_batch(self.cfg, data.split("train"), data.tokenizer, idx,
                                torch.Generator().manual_seed(batch_seed))


def _cached_batches(cfg: SpeechConfig, data: SpeechData, epoch: int, seed: int):
    """An epoch of length buckets from the cached features, augmented with one generator from (seed, epoch)."""
    train, tok = data.split("train"), data.tokenizer
    rng = random.Random(seed * 7919 + epoch)
    gen = torch.Generator().manual_seed(seed * 7919 + epoch)
    for idx in length_buckets(train.lengths.tolist(), cfg.batch_size, rng):
        yield _augmented_batch(cfg, train, tok, idx, gen)


def planned_buckets(lengths: list[int], batch_size: int, epoch: int, seed: int, make) -> PlannedBatches:
    """The epoch's length buckets, each with its augmentation seed, drawn in order from (seed, epoch);
    `make((indices, batch_seed))` builds a batch in whichever process runs it."""
    buckets = length_buckets(lengths, batch_size, random.Random(seed * 7919 + epoch))
    gen = torch.Generator().manual_seed(seed * 7919 + epoch)
    seeds = torch.randint(0, 2**62, (len(buckets),), generator=gen).tolist()
    return PlannedBatches(list(zip(buckets, seeds, strict=True)), make)


# ----------------------------------------------------------------------------------------- decoding, scoring


def transcribe(model, data, tok, batch_size: int = 32, limit: int | None = None, beam: int = 1) -> list[str]:
    """Hypotheses of the first `limit` (default all) utterances of `data` (anything with `lengths` and
    `batch(indices) -> (inputs, lengths)`) by `model.decode(inputs, lengths, beam)`, batched by length."""
    device = next(model.parameters()).device
    n = len(data) if limit is None else min(limit, len(data))
    order = sorted(range(n), key=lambda i: int(data.lengths[i]))
    hyps: dict[int, str] = {}
    for k in range(0, n, batch_size):
        idx = order[k : k + batch_size]
        inputs, lengths = data.batch(idx)
        for i, ids in zip(idx, model.decode(inputs.to(device), lengths.to(device), beam), strict=True):
            hyps[i] = tok.decode(ids)
    return [hyps[i] for i in range(n)]


def score_test_sets(models: dict[str, nn.Module], test_sets: list[tuple[Any, str, str]], tok, decoding,
                    details: dict[str, Any], out_dir: Path, about: str) -> tuple[list[Result], dict]:
    """WER/CER rows of every model on every test set (data with `texts`, `ids`, `speakers`, as `transcribe`
    reads), per-utterance hypotheses (`hyp_<variant>_<dataset>_<split>.jsonl`), `RESULTS.md` (ESPnet-style
    word and character tables, per speaker where known, under an `about` comment) and `summary.json`.
    `decoding(variant)` -> (label, beam). Returns the rows and {(variant, dataset, split): WerResult}."""
    results: list[Result] = []
    tables: dict[str, WerResult] = {}
    scored: dict[tuple[str, str, str], WerResult] = {}
    for variant, model in models.items():
        label, beam = decoding(variant)
        n_params = sum(p.numel() for p in model.parameters())
        for data, dataset, split in test_sets:
            hyps = transcribe(model, data, tok, beam=beam)
            r = scored[(variant, dataset, split)] = score(data.texts, hyps, ids=data.ids)
            tables[f"{variant} / {dataset} {split}"] = r
            # per speaker when the manifest names every utterance's (where the errors are)
            by_speaker = {} if None in data.speakers else dict(sorted(score_by(r, data.speakers).items()))
            for speaker, rs in by_speaker.items():
                tables[f"{variant} / {dataset} {split} / {speaker}"] = rs
            save_hypotheses(out_dir / f"hyp_{variant}_{dataset}_{split}.jsonl", r)
            row = {"normalisation": NORMALISATION, "decoding": label, "tokens": tok.kind,
                   "vocab_size": tok.vocab_size, **details, "n_parameters": n_params, "snt": r.words.snt,
                   "wrd": r.words.ref, "sub": r.words.sub, "del": r.words.dele, "ins": r.words.ins,
                   "sentence_error_pct": round(100 * r.words.snt_err / r.words.snt, 2),
                   "hypotheses": f"hyp_{variant}_{dataset}_{split}.jsonl"}
            if by_speaker:
                row["per_speaker_wer"] = {k: round(100 * v.wer, 2) for k, v in by_speaker.items()}
            common = {"dataset": dataset, "split": split, "n_samples": r.words.snt, "scale": "x100",
                      "variant": variant, "higher_is_better": False, "details": row}
            results.append(Result("wer", 100 * r.wer, **common))
            results.append(Result("cer", 100 * r.cer, **common))
    header = f"<!-- {about}; normalisation: {NORMALISATION} -->\n\n"
    (out_dir / "RESULTS.md").write_text(header + espnet_table(tables) + "\n" + espnet_table(tables, "char"))
    (out_dir / "summary.json").write_text(json.dumps({k: v.summary() for k, v in tables.items()}, indent=2))
    return results, scored


# ----------------------------------------------------------------------------------------- paper


class SpeechPaper(Paper):
    """Shared body of the Conformer and Fast Conformer paper modules; subclasses build the encoder."""

    Config = SpeechConfig
    default_kernel: int = 32

    # -- to implement
    def build_encoder(self, cfg: SpeechConfig) -> nn.Module:
        raise NotImplementedError

    # -- prepare
    def prepare(self, cfg: SpeechConfig, data_dir: Path, seed: int) -> DataInfo:
        if cfg.dataset == "librispeech":
            return self._prepare_librispeech(cfg, data_dir)
        tts = TTSConfig(n_train=cfg.n_train, n_dev=cfg.n_dev, n_test=cfg.n_test, flite_fraction=cfg.flite_fraction,
                        noise_fraction=cfg.noise_fraction)
        summary = prepare_tts_speech(data_dir, tts, seed)
        splits = {s: summary["splits"][s]["utterances"] for s in ("train", "dev", "test")}
        if cfg.pocketsphinx_real:
            psr = prepare_pocketsphinx_real(data_dir)
            splits[PSR_DATASET] = psr["utterances"]
            summary["pocketsphinx_real"] = psr
        for split in splits:
            manifest = data_dir / f"{PSR_DATASET if split == PSR_DATASET else split}.jsonl"
            _save_features(read_manifest(manifest), data_dir / f"features_{split}.pt")
        texts = [r["text"] for r in read_manifest(data_dir / "train.jsonl")]
        tok = self._train_tokenizer(cfg, texts, data_dir)
        summary["tokenizer"] = {"kind": tok.kind, "vocab_size": tok.vocab_size}
        summary["features"] = "80-dim log-mel, 25 ms / 10 ms, HTK mel, per-utterance mean/var normalised"
        return DataInfo(dataset=TTS_DATASET, splits=splits, details=summary)

    def _librispeech_subsets(self, cfg: SpeechConfig) -> dict[str, list[str]]:
        """Our split -> the LibriSpeech subsets it is made of."""
        return {"train": list(cfg.train_subsets), "dev": ["dev-other"], **{s: [s] for s in LIBRISPEECH_TEST}}

    def external_paths(self, cfg: SpeechConfig) -> list[Path]:
        if cfg.dataset != "librispeech":
            return []
        from mmrepro.data.librispeech import subset_dir

        subsets = dict.fromkeys(s for group in self._librispeech_subsets(cfg).values() for s in group)
        return [subset_dir(self.datasets.root, s) for s in subsets]

    def _prepare_librispeech(self, cfg: SpeechConfig, data_dir: Path) -> DataInfo:
        """Every subset is read (transcripts; FLACs only stat'ed) and checked against references/datasets.yaml
        first -- test sets by count and fingerprint, training/dev sets by count -- then FLAC headers are read."""
        from mmrepro.data import librispeech as ls

        root, key = self.datasets.root, f"{self.params_key}.dataset"
        groups = self._librispeech_subsets(cfg)
        read: dict[str, list] = {}
        for subset in dict.fromkeys(s for group in groups.values() for s in group):
            folder = ls.subset_dir(root, subset)
            if not folder.is_dir():
                if not cfg.download:
                    err = self.datasets.missing("librispeech", key, folder)
                    raise DatasetError(f"{err} (or set {self.params_key}.download: true)")
                ls.download_subset(root, subset)
            read[subset] = ls.read_subset(root, subset)
            self.datasets.check("librispeech", subset, ls.split_identity_of(read[subset]), key,
                                counts_only=subset not in LIBRISPEECH_TEST)
        identity = {}
        for subset in LIBRISPEECH_TEST:
            found = ls.split_identity_of(read[subset])
            identity[f"librispeech/{subset}"] = {"n": found["n"], "sha256": found["sha256"]}
        # only now: FLAC headers (durations)
        splits, details = {}, {"root": str(root.resolve()), "subsets": groups}
        for split, group in groups.items():
            rows = [row for subset in group for row in ls.to_manifest_rows(read[subset])]
            write_manifest(data_dir / f"{split}.jsonl", rows)
            splits[split] = len(rows)
        train_texts = [r["text"] for r in read_manifest(data_dir / "train.jsonl")]
        tok = self._train_tokenizer(cfg, train_texts, data_dir)
        details["tokenizer"] = {"kind": tok.kind, "vocab_size": tok.vocab_size, "requested": cfg.sp_vocab}
        return DataInfo(dataset="librispeech", splits=splits, details=details, identity=identity)

    def _train_tokenizer(self, cfg: SpeechConfig, texts: list[str], data_dir: Path):
        if cfg.tokens == "char":
            tok = CharTokenizer()
        else:
            tok = SentencePieceTokenizer.train(texts, data_dir / "spm_unigram", vocab_size=cfg.sp_vocab)
        tok.save(data_dir / "tokenizer.json")
        return tok

    # -- variants: one recogniser per head
    def make_variants(self, cfg: SpeechConfig, data_dir: Path) -> list[Variant]:
        data = SpeechData(data_dir)
        return [self._recognizer_variant(head, cfg, data) for head in cfg.variants]

    def recognizer(self, cfg: SpeechConfig, head: str, vocab: int) -> SpeechRecognizer:
        """A fresh encoder with a `head` ("ctc" or "transducer") over `vocab` tokens + blank."""
        encoder = self.build_encoder(cfg)
        d = encoder.output_dim
        if head == "ctc":
            out: nn.Module = CTCHead(d, vocab, blank=vocab)
        elif cfg.size == "tiny":
            out = TransducerHead(d, vocab, pred_dim=cfg.pred_dim, blank=vocab, dropout=cfg.dropout)
        else:
            out = TransducerHead.preset(cfg.size, d, vocab, blank=vocab)
        return SpeechRecognizer(encoder, out, cfg.max_symbols)

    def _recognizer_variant(self, head: str, cfg: SpeechConfig, data: SpeechData) -> Variant:
        recipe = cfg.recipe_for(head)

        def batches(epoch: int, seed: int):
            train = data.split("train")
            if train.decoded_on_the_fly:  # LibriSpeech FLACs: decoded and featurised in DataLoader workers
                return planned_buckets(train.lengths.tolist(), recipe.batch_size, epoch, seed,
                                       _DecodedBatch(recipe, data.data_dir))
            return EpochBatches(-(-len(train) // recipe.batch_size), _cached_batches(recipe, data, epoch, seed))

        def validate(model: SpeechRecognizer) -> dict[str, float]:
            dev = data.split("dev")
            n = min(cfg.val_utterances, len(dev))
            r = score(dev.texts[:n], transcribe(model, dev, data.tokenizer, limit=n))  # greedy per epoch (cheap)
            return {"wer": 100 * r.wer, "cer": 100 * r.cer}

        return Variant(self.name, head, recipe, lambda: self.recognizer(cfg, head, data.tokenizer.vocab_size),
                       batches, lambda model, batch: model.loss(batch), validate)

    # -- decoding and scoring
    def test_sets(self, cfg: SpeechConfig, data_dir: Path) -> list[tuple[str, str, str]]:
        """(feature split name, dataset, split) of every test set."""
        if cfg.dataset == "librispeech":
            return [(s, "librispeech", s) for s in LIBRISPEECH_TEST]
        sets = [("test", TTS_DATASET, "test-unseen-voices")]
        if cfg.pocketsphinx_real and (Path(data_dir) / f"{PSR_DATASET}.jsonl").is_file():
            sets.append((PSR_DATASET, PSR_DATASET, "test"))
        return sets

    def evaluate(self, models, cfg: SpeechConfig, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        data = SpeechData(data_dir)
        test_sets = [(data.split(name), dataset, split) for name, dataset, split in self.test_sets(cfg, data_dir)]
        about = f"{self.name}, seed {seed}, size {cfg.size}, decoding: {', '.join(cfg.decoding(v) for v in models)}"
        results, _ = score_test_sets(
            models, test_sets, data.tokenizer,
            lambda v: (cfg.decoding(v), cfg.beam_size if v == "transducer" else 1), {"size": cfg.size}, out_dir, about)
        return results
