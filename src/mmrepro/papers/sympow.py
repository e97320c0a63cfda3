"""Symmetric power transformers vs softmax: LM loss against context length.

Buckman, Gelada & Zhang, "Symmetric Power Transformers" (Manifest AI, 2024) and "Conformal
Transformations for Symmetric Power Transformers" (arXiv 2503.03269, 2025). Their results are plots
(loss vs training step and vs context length on LongCrawl64), not tables; `references/sympow.yaml`
states the claims in words and `evaluate` writes `claims.md` saying what our runs show about each.

Each variant (softmax, sympow p=2, sympow p=4, conformal-sympow) is trained at one context T and
evaluated on the same held-out text at T, 2T and 4T: loss in nats and bits per byte, overall, by
position (CSV + plot), and over the positions beyond T (where only the longer contexts reach).
Byte-level data: the Python standard library sources (cpu, smoke), whole files per split;
LongCrawl64 (full, GPT-2 tokens, read from a local copy of the Zarr arrays).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from mmrepro.data import byte_corpus
from mmrepro.data.longcrawl64 import DOC_LENGTH, VOCAB_SIZE, LongCrawl64
from mmrepro.datasets import DatasetError, split_identity
from mmrepro.models.sympow import SymPowConfig, SymPowTransformer, sympow_dim
from mmrepro.papers.base import DataInfo, EpochBatches, Paper, Result, TrainConfig, Variant

_VARIANT = re.compile(r"^(softmax|sympow_p(\d+)|conformal_p(\d+))$")


class Config(TrainConfig):
    decode_keys: ClassVar[frozenset[str]] = frozenset({"sample_bytes"})
    dataset: Literal["python-stdlib-bytes", "longcrawl64"] = "python-stdlib-bytes"
    # longcrawl64: <datasets root>/longcrawl64/{train,heldout}.zarr (params datasets.root, $MMREPRO_DATASETS)
    variants: list[str] = Field(default=["softmax", "sympow_p2", "sympow_p4", "conformal_p4"], min_length=1)
    context: int = Field(default=128, gt=1, description="training context T (tokens)")
    eval_multiples: list[int] = Field(default=[1, 2, 4], min_length=1)
    batches_per_epoch: int = Field(default=100, gt=0, description="optimizer steps per epoch (each of "
                                                                   "`accumulation` micro-batches)")
    eval_windows: int = Field(default=64, gt=0, description="held-out windows of max(eval_multiples)*T tokens")
    val_windows: int = Field(default=16, gt=0)
    d_model: int = Field(default=64, gt=0)
    n_layer: int = Field(default=2, gt=0)
    n_head: int = Field(default=8, gt=0)
    chunk_size: int | None = Field(default=None, gt=0, description="null = the training context")
    max_train_bytes: int = Field(default=20_000_000, gt=0)
    max_eval_bytes: int = Field(default=5_000_000, gt=0)
    sample_bytes: int = Field(default=120, ge=0, description="bytes generated per variant (recurrent form)")

    @field_validator("variants")
    @classmethod
    def _known(cls, variants: list[str]) -> list[str]:
        for v in variants:
            m = _VARIANT.match(v)
            if not m:
                raise ValueError(f"unknown variant {v!r} (softmax | sympow_p<even> | conformal_p<even>)")
            p = int(m.group(2) or m.group(3) or 2)
            if p < 2 or p % 2:
                raise ValueError(f"{v}: the power must be even and >= 2")
        if len(set(variants)) != len(variants):
            raise ValueError("variants must be distinct")
        return variants

    @field_validator("eval_multiples")
    @classmethod
    def _positive(cls, ms: list[int]) -> list[int]:
        if any(m <= 0 for m in ms) or max(ms) % 1:
            raise ValueError("eval_multiples must be positive integers")
        top = max(ms)
        if any(top % m for m in ms):
            raise ValueError("every eval multiple must divide the largest one")
        return sorted(set(ms))


def _model_config(cfg: Config, variant: str, vocab: int) -> SymPowConfig:
    m = _VARIANT.match(variant)
    if m is None:
        raise ValueError(f"unknown variant {variant!r}")
    kind = "softmax" if variant == "softmax" else ("sympow" if variant.startswith("sympow") else "conformal")
    power = int(m.group(2) or m.group(3) or 2)
    return SymPowConfig(vocab_size=vocab, d_model=cfg.d_model, n_layer=cfg.n_layer, n_head=cfg.n_head,
                        attention=kind, power=power, chunk_size=cfg.chunk_size or cfg.context)


def _next_token_loss(model: SymPowTransformer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(batch["x"])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["y"].reshape(-1))


class _Corpus:
    """The prepared corpus as a built paper keeps it: each split opened once, on first use."""

    def __init__(self, cfg: Config, data_dir: Path) -> None:
        self.cfg, self.data_dir = cfg, Path(data_dir)
        self._opened: dict[str, object] = {}

    def _open(self, split: str):
        if split not in self._opened:
            if self.cfg.dataset == "longcrawl64":
                root = json.loads((self.data_dir / "source.json").read_text())["root"]
                self._opened[split] = LongCrawl64(root).split("train" if split == "train" else "heldout")
            else:
                self._opened[split] = byte_corpus.read_split(self.data_dir, split)
        return self._opened[split]

    def windows(self, split: str, length: int, n: int, rng=None) -> np.ndarray:
        """(n, length) int64 windows; random when rng is given, else the deterministic held-out set."""
        if self.cfg.dataset == "longcrawl64":
            arr = self._open(split)
            if rng is not None:
                docs = rng.integers(0, arr.shape[0], size=n)
                starts = rng.integers(0, arr.shape[1] - length + 1, size=n)
                return np.stack([LongCrawl64.batch(arr, int(d), 1, int(s), length)[0] for d, s in zip(docs, starts, strict=True)])
            docs = SymPow._eval_docs(self.cfg, split)  # heldout: test documents first, then val; never overlapping
            return LongCrawl64.batch(arr, docs.start, min(n, len(docs)), 0, length)
        data, offsets = self._open(split)
        if rng is not None:
            return byte_corpus.sample_windows(data, offsets, length, n, rng)
        return byte_corpus.document_windows(data, offsets, length, n)


class SymPow(Paper):
    name = "sympow"
    title = "Buckman, Gelada & Zhang 2024/2025, (Conformal) Symmetric Power Transformers"
    Config = Config

    # ------------------------------------------------------------------ data
    def prepare(self, cfg: Config, data_dir: Path, seed: int) -> DataInfo:
        if cfg.dataset == "longcrawl64":
            return self._prepare_longcrawl64(cfg, data_dir)
        stats = byte_corpus.write_dataset(
            data_dir, seed, max_bytes={"train": cfg.max_train_bytes, "val": cfg.max_eval_bytes,
                                       "test": cfg.max_eval_bytes})
        return DataInfo(dataset="python-stdlib-bytes", splits={k: v["documents"] for k, v in stats.items()},
                        details={"bytes": {k: v["bytes"] for k, v in stats.items()}, **byte_corpus.describe()})

    def external_paths(self, cfg: Config) -> list[Path]:
        if cfg.dataset != "longcrawl64":
            return []
        return [self.datasets.folder("longcrawl64") / name for name in LongCrawl64.SPLITS.values()]

    def _prepare_longcrawl64(self, cfg: Config, data_dir: Path) -> DataInfo:
        """Check the layout (.zarray of both arrays, 65536-token documents, enough held-out documents for
        the disjoint test and validation sets) before reading any chunk; then fingerprint the evaluated
        documents (no official counts are published: references/datasets.yaml records none)."""
        root, key = self.datasets.folder("longcrawl64"), f"{self.params_key}.dataset"
        arrays = {}
        for split, name in LongCrawl64.SPLITS.items():
            if not (root / name / ".zarray").is_file():
                raise self.datasets.missing("longcrawl64", key, root / name)
            try:
                arrays[split] = LongCrawl64(root).split(split)
            except (ValueError, KeyError, TypeError) as exc:
                raise DatasetError(f"{root / name / '.zarray'}: not a LongCrawl64 Zarr v2 array ({exc})") from None
        for split, arr in arrays.items():
            if arr.shape[1] != DOC_LENGTH:
                problem = f"{arr.shape[1]} tokens per document, the release has {DOC_LENGTH}"
                if self.datasets.identity == "strict":
                    raise DatasetError(f"longcrawl64/{split}: {problem} (params {key}; datasets.identity: warn to go "
                                       f"on anyway); get it from {self.datasets.where('longcrawl64')}")
                print(f"warning: longcrawl64/{split}: {problem} (datasets.identity: warn)")
        need = cfg.eval_windows + cfg.val_windows
        if arrays["heldout"].shape[0] < need:
            raise DatasetError(f"longcrawl64/heldout: {arrays['heldout'].shape[0]} documents, the evaluation needs "
                               f"{need} (eval_windows + val_windows, disjoint; params {self.params_key})")
        top = max(cfg.eval_multiples) * cfg.context + 1
        if top > arrays["heldout"].shape[1]:
            raise DatasetError(f"longcrawl64/heldout: documents of {arrays['heldout'].shape[1]} tokens, the "
                               f"evaluation needs {top} (params {self.params_key}.context)")
        test_docs = self._eval_docs(cfg, "test")
        rows = arrays["heldout"][test_docs.start : test_docs.stop, :]
        identity = split_identity((str(d), hashlib.sha256(np.ascontiguousarray(r).tobytes()).hexdigest())
                                  for d, r in zip(test_docs, rows, strict=True))
        (data_dir / "source.json").write_text(json.dumps({"root": str(root.resolve())}))
        return DataInfo(dataset="longcrawl64", splits={k: v.shape[0] for k, v in arrays.items()},
                        details={"doc_length": arrays["train"].shape[1], "vocab": VOCAB_SIZE,
                                 "heldout_documents": {"test": [test_docs.start, test_docs.stop],
                                                       "val": [self._eval_docs(cfg, "val").start,
                                                               self._eval_docs(cfg, "val").stop]}},
                        identity={"longcrawl64/heldout": identity})

    @staticmethod
    def _eval_docs(cfg: Config, split: str) -> range:
        """LongCrawl64 held-out documents of the deterministic sets: test first, then validation (disjoint)."""
        if split == "test":
            return range(0, cfg.eval_windows)
        return range(cfg.eval_windows, cfg.eval_windows + cfg.val_windows)

    def eval_documents(self, cfg: Config, data_dir: Path, split: str) -> list[str]:
        """Identifiers of the documents the deterministic `split` windows ("val" or "test") come from:
        LongCrawl64 "heldout:<row>", the byte corpus the sha256 of the document's bytes."""
        if cfg.dataset == "longcrawl64":
            return [f"heldout:{d}" for d in self._eval_docs(cfg, split)]
        n = cfg.eval_windows if split == "test" else cfg.val_windows
        length = (max(cfg.eval_multiples) if split == "test" else 1) * cfg.context + 1
        data, offsets = byte_corpus.read_split(data_dir, split)
        return [hashlib.sha256(bytes(data[offsets[d] : offsets[d + 1]])).hexdigest()
                for d in byte_corpus.window_documents(offsets, length, n)]

    def _vocab(self, cfg: Config) -> int:
        return VOCAB_SIZE if cfg.dataset == "longcrawl64" else 256

    # ------------------------------------------------------------------ training
    def make_variants(self, cfg: Config, data_dir: Path) -> list[Variant]:
        """One language model per attention (`softmax`, `sympow_p<p>`, `conformal_p<p>`), the same recipe keys."""
        corpus = _Corpus(cfg, data_dir)
        unit = "token" if cfg.dataset == "longcrawl64" else "byte"  # LongCrawl64 holds GPT-2 tokens, not bytes
        n_batches = cfg.batches_per_epoch * cfg.accumulation  # micro-batches: the same tokens per epoch whatever the split

        def variant(name: str) -> Variant:
            recipe = cfg.recipe_for(name)

            def batches(epoch: int, seed: int) -> EpochBatches:
                rng = np.random.default_rng([seed, epoch, 17])

                def made():
                    for _ in range(n_batches):
                        w = torch.from_numpy(corpus.windows("train", cfg.context + 1, recipe.batch_size, rng))
                        yield {"x": w[:, :-1], "y": w[:, 1:]}

                return EpochBatches(n_batches, made())

            def validate(model: SymPowTransformer) -> dict[str, float]:
                w = torch.from_numpy(corpus.windows("val", cfg.context + 1, cfg.val_windows))
                loss = self._position_loss(model, w.to(next(model.parameters()).device), cfg.context).mean().item()
                return {"loss_nats": loss, f"bits_per_{unit}": loss / math.log(2)}

            return Variant(self.name, name, recipe,
                           lambda: SymPowTransformer(_model_config(cfg, name, self._vocab(cfg))), batches, _next_token_loss,
                           validate)

        return [variant(name) for name in cfg.variants]

    # ------------------------------------------------------------------ evaluation
    @staticmethod
    def _position_loss(model: SymPowTransformer, windows: torch.Tensor, context: int, batch: int = 16) -> torch.Tensor:
        """Mean next-token loss (nats) by position for contexts of `context` tokens cut from windows
        (n, L+1), L a multiple of context: -> (context,)."""
        total = torch.zeros(context, dtype=torch.float64, device=windows.device)
        count = 0
        span = windows.shape[1] - 1
        for s in range(0, span, context):
            x, y = windows[:, s : s + context], windows[:, s + 1 : s + context + 1]
            for i in range(0, len(x), batch):
                logits = model(x[i : i + batch]).float()
                nll = F.cross_entropy(logits.transpose(1, 2), y[i : i + batch], reduction="none")
                total += nll.double().sum(0)
                count += len(nll)
        return (total / count).cpu()

    def evaluate(self, models, cfg: Config, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        top = max(cfg.eval_multiples)
        windows = torch.from_numpy(_Corpus(cfg, data_dir).windows("test", top * cfg.context + 1, cfg.eval_windows))
        dataset = "longcrawl64" if cfg.dataset == "longcrawl64" else "python-stdlib-bytes"
        split = "heldout" if cfg.dataset == "longcrawl64" else "test"
        unit = "token" if cfg.dataset == "longcrawl64" else "byte"
        n_tokens = windows.shape[0] * top * cfg.context
        results, curves = [], {}
        for variant, model in models.items():
            device = next(model.parameters()).device
            mc = model.cfg
            details = {"train_context": cfg.context, "attention": mc.attention, "power": mc.power,
                       "head_dim": mc.head_dim, "n_parameters": sum(p.numel() for p in model.parameters()),
                       "state_dim_per_head": None if mc.attention == "softmax"
                       else sympow_dim(mc.head_dim, mc.power) * (mc.head_dim + 1)}
            for m in cfg.eval_multiples:
                ctx = m * cfg.context
                pos = self._position_loss(model, windows.to(device), ctx)
                curves[(variant, m)] = pos
                loss = float(pos.mean())
                common = dict(dataset=dataset, split=split, n_samples=n_tokens, variant=variant,
                              higher_is_better=False, details={**details, "eval_context": ctx})
                results.append(Result(f"loss_nats_ctx{m}x", loss, **common))
                results.append(Result(f"bits_per_{unit}_ctx{m}x", loss / math.log(2), **common))
                if m > 1:
                    results.append(Result(f"loss_nats_ctx{m}x_beyond_train", float(pos[cfg.context :].mean()), **common))
            state_gb = _recurrent_state_bytes(mc, batch=2) / 1e9
            if state_gb <= RECURRENT_CHECK_MAX_GB:
                results.append(self._recurrent_check(model, windows[:2, : 2 * cfg.context].to(device), variant,
                                                     dataset, split, details))
            else:  # p = 4 at d_head 64: D(d+1) = 50M floats per head, 57 GB for 12 x 12 heads x 2 sequences
                results.append(Result("recurrent_vs_parallel_max_abs_logit_diff", None, dataset, split, 0,
                                      variant=variant, higher_is_better=False, details={
                                          **details, "unavailable": f"the recurrent state would take {state_gb:.0f} GB "
                                          f"(> {RECURRENT_CHECK_MAX_GB} GB); the identity is checked at small sizes "
                                          "by the tests"}))
            if cfg.sample_bytes and unit == "byte":
                g = torch.Generator(device=device).manual_seed(seed)
                prompt = windows[:1, :32].to(device)
                text = model.generate(prompt, cfg.sample_bytes, temperature=0.8, generator=g)[0].tolist()
                (out_dir / f"sample_{variant}.txt").write_bytes(bytes(text))
        self._write_curves(out_dir, curves, cfg)
        (out_dir / "claims.md").write_text(_claims_markdown(results, cfg, self.training_completed))
        return results

    @staticmethod
    def _recurrent_check(model, x, variant, dataset, split, details) -> Result:
        """Max |logit difference| between the chunked/parallel forward and the recurrent `step` path."""
        full = model(x)
        caches = model.new_caches()
        half = x.shape[1] // 2
        inc = torch.cat([model.step(x[:, :half], caches)] + [model.step(x[:, i : i + 1], caches)
                                                            for i in range(half, x.shape[1])], 1)
        diff = float((full - inc).abs().max())
        return Result("recurrent_vs_parallel_max_abs_logit_diff", diff, dataset, split, int(x.numel()),
                      variant=variant, higher_is_better=False, details=details)

    @staticmethod
    def _write_curves(out_dir: Path, curves: dict, cfg: Config) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        top = max(cfg.eval_multiples)
        with (out_dir / "loss_by_position.csv").open("w") as handle:
            handle.write("variant,eval_multiple,position,loss_nats\n")
            for (variant, m), pos in curves.items():
                for i, v in enumerate(pos.tolist()):
                    handle.write(f"{variant},{m},{i},{v:.6f}\n")
        fig, axes = plt.subplots(1, len(cfg.eval_multiples), figsize=(5 * len(cfg.eval_multiples), 4), sharey=True)
        axes = np.atleast_1d(axes)
        win = max(1, cfg.context // 16)
        for ax, m in zip(axes, cfg.eval_multiples, strict=True):
            for (variant, mm), pos in curves.items():
                if mm != m:
                    continue
                smooth = np.convolve(pos.numpy(), np.ones(win) / win, mode="valid")
                ax.plot(np.arange(len(smooth)) + win // 2, smooth, label=variant, linewidth=1)
            ax.axvline(cfg.context, color="grey", linestyle="--", linewidth=0.8)
            ax.set_title(f"eval context {m}x ({m * cfg.context}); train {cfg.context}")
            ax.set_xlabel("position in context")
        axes[0].set_ylabel(f"loss (nats), moving average {win}")
        axes[-1].legend()
        fig.suptitle(f"sympow: loss by position (trained at {cfg.context}, evaluated up to {top}x)")
        fig.tight_layout()
        fig.savefig(out_dir / "loss_by_position.png", dpi=100)
        plt.close(fig)


RECURRENT_CHECK_MAX_GB = 4  # skip the step-by-step check when its state alone would exceed this


def _recurrent_state_bytes(mc, batch: int) -> int:
    """float32 bytes of the recurrent state of every head and layer (softmax: its KV cache is small here)."""
    if mc.attention == "softmax":
        return 0
    return 4 * batch * mc.n_layer * mc.n_head * sympow_dim(mc.head_dim, mc.power) * (mc.head_dim + 1)


def _claims_markdown(results: list[Result], cfg: Config, training_completed: bool = True) -> str:
    """Each published claim, and what these runs say about it (numbers quoted); no verdict from
    unfinished training."""
    val = {(r.variant, r.metric): r.value for r in results}
    variants = list(cfg.variants)
    top = max(cfg.eval_multiples)

    def get(v, metric):
        return val.get((v, metric))

    lines = ["# Published claims vs this run", "",
             f"Trained at context {cfg.context}, evaluated at {', '.join(f'{m}x' for m in cfg.eval_multiples)}; "
             "loss in nats per token (lower is better).", "",
             "| variant | " + " | ".join(f"{m}x" for m in cfg.eval_multiples)
             + (f" | {top}x beyond T |" if top > 1 else " |"),
             "|---" * (len(cfg.eval_multiples) + 1 + (top > 1)) + "|"]
    for v in variants:
        cells = [f"{get(v, f'loss_nats_ctx{m}x'):.4f}" for m in cfg.eval_multiples]
        if top > 1:
            cells.append(f"{get(v, f'loss_nats_ctx{top}x_beyond_train'):.4f}")
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines.append("")

    def verdict(ok: bool | None) -> str:
        if not training_completed:
            return "not judged: training did not complete"
        return "cannot test here" if ok is None else ("supported" if ok else "contradicted")

    soft = get("softmax", "loss_nats_ctx1x")
    hi_p = [v for v in variants if v.startswith("sympow_p") and int(v.split("_p")[1]) >= 4]
    claim1 = None
    if soft is not None and hi_p:
        claim1 = all(get(v, "loss_nats_ctx1x") <= soft + 0.01 for v in hi_p)
    lines += ["1. *Sympow with p >= 4 matches or beats softmax attention of equal size at the training context.* "
              f"Ours at 1x: softmax {soft}, " + ", ".join(f"{v} {get(v, 'loss_nats_ctx1x')}" for v in hi_p)
              + f" (match = within 0.01 nats). Verdict at our scale: **{verdict(claim1)}**.", ""]
    conf = [v for v in variants if v.startswith("conformal")]
    plain = [v for v in variants if v.startswith("sympow")]
    claim2 = None
    if conf and plain and top > 1:
        key = f"loss_nats_ctx{top}x"
        claim2 = all(get(c, key) - get(c, "loss_nats_ctx1x") < min(get(p, key) - get(p, "loss_nats_ctx1x") for p in plain)
                     for c in conf)
    lines += ["2. *Conformal-sympow (data-dependent gating + rotary) stays robust when the evaluation context "
              "grows beyond the training context, unlike plain sympow.* "
              + (", ".join(f"{v}: {top}x minus 1x = {get(v, f'loss_nats_ctx{top}x') - get(v, 'loss_nats_ctx1x'):+.4f}"
                           for v in conf + plain) if top > 1 else "")
              + f". Verdict at our scale: **{verdict(claim2)}** (robust = smaller loss increase than every plain sympow).",
              "", "3. *State size per head D(d+1), D = C(d+p-1, p)*: an identity of the construction, checked by "
              "the tests (`sympow_dim`) and recorded per variant in the metrics details (`state_dim_per_head`).",
              "", "The papers' scale (LongCrawl64, 64k-token documents, 124M+ parameter models, contexts of thousands "
              "of tokens) is far beyond this profile: these verdicts are about our small byte-level setting only."]
    return "\n".join(lines) + "\n"
