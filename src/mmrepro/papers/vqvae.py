"""VQ-VAE (van den Oord et al. 2017) and a text-conditioned prior over its codes (a small DALL·E).

Three variants, trained in order by the one training loop:
- `recon`: the VQ-VAE on the reconstruction dataset: real photographs cut into patches (cpu, split
  by source photo: test patches come from unseen photos), captioned shapes (smoke), CIFAR-10 from
  its binary distribution (full). Scored by MSE, PSNR, bits/dim (the paper's bound, see
  mmrepro.metrics.reconstruction) and codebook perplexity; reconstruction grids saved as PNG.
- `text2image`: a VQ-VAE on captioned shapes, then a transformer prior over its code grid
  conditioned on the caption tokens; two phases inside one model (`vq_steps` VQ-VAE steps, then the
  prior on the frozen VQ-VAE's codes), as DALL·E trains its dVAE before its transformer. With
  `cond_dropout` > 0 the prior also learns from null captions, and sampling with `guidance` > 1 uses
  classifier-free guidance (mmrepro.models.code_prior; the cpu profile: 0.1 and 1.5).
- `classifier`: an attribute classifier trained on real shapes images of *all* (shape, colour)
  pairs (its own "judge" split), the judge of generation:
  for each held-out caption one image is sampled and the classifier's reading of shape, colour, size
  and position is compared with the caption. Captions naming a (shape, colour) pair never seen in
  training are scored separately.

Published: bits/dim on CIFAR-10 test 4.67 (VQ-VAE), only comparable when our data is CIFAR-10.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from mmrepro.data import captioned_shapes as shapes_data
from mmrepro.data import cifar10, photo_patches
from mmrepro.metrics.reconstruction import bits_per_dim, codebook_perplexity, fit_sigma, mse, psnr
from mmrepro.models.attribute_classifier import AttributeClassifier
from mmrepro.models.code_prior import CodePrior, CodePriorConfig
from mmrepro.models.vqvae import VQVAE, VQVAEConfig
from mmrepro.datasets import DatasetError
from mmrepro.figures import tile_grid
from mmrepro.papers.base import DataInfo, EpochBatches, Paper, Result, TrainConfig, Variant, iter_minibatches

TEXT_LEN = 8  # words of a shapes caption
# The judge (`classifier`) trains with this seed whatever the run's seed: it is the instrument of the text-to-image
# metrics, and judges of different seeds read the same images differently (the seed-2 judge of a 1-thread grid read
# the shape of VQ-VAE reconstructions of real test images right 76% of the time, the seed-0 judge 93%).
JUDGE_SEED = 0


class Config(TrainConfig):
    # how the prior is sampled and how many generations are judged and shown: evaluation only
    decode_keys: ClassVar[frozenset[str]] = frozenset({"n_generate", "temperature", "top_k", "guidance", "n_grid"})
    recon_dataset: Literal["photo-patches", "captioned-shapes", "cifar10"] = "photo-patches"
    # cifar10: <datasets root>/cifar10/cifar-10-batches-bin (params datasets.root, $MMREPRO_DATASETS)
    download: bool = Field(default=False, description="cifar10: fetch the archive when absent (md5-checked); off: never")
    patch_size: int = Field(default=16, gt=0)
    patch_stride: int = Field(default=8, gt=0, description="stride of training patches")
    patches_per_photo: int = Field(default=1500, gt=0)
    n_train: int = Field(default=4000, gt=0, description="captioned shapes")
    n_val: int = Field(default=200, gt=0)
    n_test: int = Field(default=400, gt=0)
    image_size: int = Field(default=32, gt=0, description="captioned shapes side")
    # VQ-VAE
    hidden: int = Field(default=64, gt=0)
    res_hidden: int = Field(default=32, gt=0)
    n_res_blocks: int = Field(default=2, ge=0)
    n_downsample: int = Field(default=2, ge=1)
    codebook_size: int = Field(default=256, gt=1)
    code_dim: int = Field(default=32, gt=0)
    beta: float = Field(default=0.25, ge=0)
    ema: bool = True
    restart_below: float = Field(default=1.0, ge=0, description="EMA: re-seed codes used < this per batch")
    t2i_n_downsample: int = Field(default=2, ge=1, description="text2image VQ-VAE: 32x32 -> 8x8 codes")
    recon_batches_per_epoch: int = Field(default=200, gt=0)
    # text2image
    vq_steps: int = Field(default=300, ge=0, description="text2image: VQ-VAE steps before the prior's")
    prior_d_model: int = Field(default=128, gt=0)
    prior_layers: int = Field(default=3, gt=0)
    prior_heads: int = Field(default=4, gt=0)
    prior_tied_codebook: bool = Field(default=False, description="text2image: the prior reads and predicts codes "
                                      "through the VQ-VAE's codebook vectors (mmrepro.models.code_prior)")
    cond_dropout: float = Field(default=0.0, ge=0, lt=1, description="text2image: share of training captions "
                                "replaced by the null caption (needed for guidance)")
    t2i_batches_per_epoch: int = Field(default=200, gt=0)
    classifier_batches_per_epoch: int = Field(default=60, gt=0)
    n_generate: int = Field(default=200, gt=0, description="held-out captions to generate images for")
    temperature: float = Field(default=1.0, gt=0)
    top_k: int | None = Field(default=None, gt=0)
    guidance: float = Field(default=1.0, ge=1, description="classifier-free guidance scale (1: none; > 1 needs "
                            "cond_dropout > 0)")
    n_grid: int = Field(default=32, gt=0, description="images per saved grid")

    @model_validator(mode="after")
    def _guidance_needs_null_captions(self) -> Config:
        if self.guidance != 1.0 and self.cond_dropout == 0.0:
            raise ValueError(f"guidance {self.guidance} needs cond_dropout > 0: the prior must be trained on null "
                             "captions to give the unconditional logits that guidance pushes away from")
        return self


def _vq_config(cfg: Config, n_downsample: int) -> VQVAEConfig:
    return VQVAEConfig(hidden=cfg.hidden, res_hidden=cfg.res_hidden, n_res_blocks=cfg.n_res_blocks,
                       n_downsample=n_downsample, codebook_size=cfg.codebook_size, code_dim=cfg.code_dim,
                       beta=cfg.beta, ema=cfg.ema, restart_below=cfg.restart_below if cfg.ema else 0.0)


class TextToImage(torch.nn.Module):
    """VQ-VAE + caption-conditioned code prior, trained in two phases (see module doc)."""

    def __init__(self, vq: VQVAE, prior: CodePrior, vq_steps: int) -> None:
        super().__init__()
        self.vqvae, self.prior, self.vq_steps = vq, prior, vq_steps
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    def training_loss(self, images: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        self.steps_done += 1
        if int(self.steps_done) <= self.vq_steps:
            return self.vqvae(images)["loss"]
        if int(self.steps_done) == self.vq_steps + 1 and self.prior.cfg.tie_codebook:  # the first prior step
            self.prior.set_codebook(self.vqvae.quantizer.codebook.detach())  # frozen from here on, as the VQ-VAE
        codes = self.vqvae.encode(images).flatten(1)  # frozen: no gradient reaches the VQ-VAE
        return self.prior.loss(text, codes)

    @torch.no_grad()
    def generate(self, text: torch.Tensor, grid: tuple[int, int], temperature: float, top_k: int | None,
                 generator: torch.Generator | None = None, guidance: float = 1.0) -> torch.Tensor:
        codes = self.prior.sample(text, temperature, top_k, generator, guidance).view(len(text), *grid)
        return self.vqvae.decode(codes).clamp(0, 1)


def _float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


class _Data:
    """The prepared data as a built paper keeps it: each split read once, on first use."""

    def __init__(self, paper: VQVAEPaper, cfg: Config, data_dir: Path) -> None:
        self.paper, self.cfg, self.data_dir = paper, cfg, Path(data_dir)
        self._read: dict[tuple[str, str], object] = {}

    def recon(self, split: str) -> torch.Tensor:
        """(N, 3, S, S) uint8 images of the reconstruction data."""
        if ("recon", split) not in self._read:
            self._read[("recon", split)] = self.paper._recon_split(self.cfg, self.data_dir, split)
        return self._read[("recon", split)]

    def shapes(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """Captioned shapes: (images uint8, attribute labels, caption token ids (N, TEXT_LEN))."""
        if ("shapes", split) not in self._read:
            images, attrs, captions = shapes_data.read_split(self.data_dir / "shapes", split)
            tok = shapes_data.CaptionTokenizer()
            self._read[("shapes", split)] = (torch.from_numpy(images), {k: torch.from_numpy(v) for k, v in attrs.items()},
                                             torch.tensor([tok.encode(c, TEXT_LEN) for c in captions]))
        return self._read[("shapes", split)]

    def shape_batches(self, variant: str, split: str, n: int, target: str):
        """batches(epoch, seed) of `n` shuffled minibatches of `split`: {"images", target} with target "text" (the
        caption) or "labels" (the attributes); passes repeat until `n` (fixed-length epochs)."""
        size = self.cfg.recipe_for(variant).batch_size

        def batches(epoch: int, seed: int) -> EpochBatches:
            gen = torch.Generator().manual_seed(seed * 7919 + epoch * 31 + len(variant))

            def made():
                images, labels, text = self.shapes(split)
                done = 0
                while done < n:
                    for idx in iter_minibatches(len(images), size, gen):
                        if done == n:
                            return
                        done += 1
                        yield {"images": _float(images[idx]),
                               target: text[idx] if target == "text" else {k: v[idx] for k, v in labels.items()}}

            return EpochBatches(n, made())

        return batches


class VQVAEPaper(Paper):
    name = "vqvae"
    title = "van den Oord et al. 2017, VQ-VAE (+ text-conditioned code prior)"
    Config = Config

    # ------------------------------------------------------------------ data
    def prepare(self, cfg: Config, data_dir: Path, seed: int) -> DataInfo:
        spec = shapes_data.ShapesSpec(image_size=cfg.image_size)
        # "judge": the classifier's own training set, drawn from *all* (shape, colour) pairs, so that the
        # judge can read held-out combinations that the generator never saw
        sizes = {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test, "judge": cfg.n_train}
        shapes_data.write_dataset(data_dir / "shapes", sizes, spec, seed)
        splits = {f"shapes_{k}": v for k, v in sizes.items()}
        details: dict = {"shapes_image_size": cfg.image_size, "recon_dataset": cfg.recon_dataset,
                         "heldout_pairs": _heldout_names()}
        if cfg.recon_dataset == "photo-patches":
            got = photo_patches.write_dataset(data_dir / "recon", cfg.patch_size, cfg.patch_stride, seed=seed,
                                              max_per_photo=cfg.patches_per_photo)
            splits.update({f"recon_{k}": v for k, v in got.items()})
            details["photo_split"] = {k: list(v) for k, v in photo_patches.DEFAULT_SPLIT.items()}
        elif cfg.recon_dataset == "cifar10":
            folder, identity = self._verified_cifar10(cfg)
            for split in ("train", "test"):
                x, y = cifar10.read_split(folder, split)
                (data_dir / "recon").mkdir(exist_ok=True)
                np.savez(data_dir / "recon" / f"{split}.npz", patches=x, source=y)
                splits[f"recon_{split}"] = len(x)
            details["cifar10_md5"] = cifar10.MD5
            details["root"] = str(folder.resolve())
            return DataInfo(dataset=self._recon_name(cfg), splits=splits, details=details, identity=identity)
        return DataInfo(dataset=self._recon_name(cfg), splits=splits, details=details)

    def external_paths(self, cfg: Config) -> list[Path]:
        return [self.datasets.folder("cifar10") / cifar10.FOLDER] if cfg.recon_dataset == "cifar10" else []

    def _verified_cifar10(self, cfg: Config) -> tuple[Path, dict]:
        """The unpacked copy under the datasets root, train (count) and test (count + fingerprint) checked
        before any image is decoded. -> (folder, DataInfo.identity)."""
        key = f"{self.params_key}.recon_dataset"
        try:
            folder = cifar10.locate(self.datasets.folder("cifar10"), download=cfg.download)
        except FileNotFoundError:
            err = self.datasets.missing("cifar10", key, self.datasets.folder("cifar10") / cifar10.FOLDER)
            raise DatasetError(f"{err} (or set {self.params_key}.download: true)") from None
        self.datasets.check("cifar10", "train", {"n": cifar10.count(folder, "train")}, key, counts_only=True)
        test = cifar10.split_identity_of(folder, "test")
        self.datasets.check("cifar10", "test", test, key)
        return folder, {"cifar10/test": test}

    @staticmethod
    def _recon_name(cfg: Config) -> str:
        return {"photo-patches": "skimage-photo-patches", "captioned-shapes": "captioned-shapes",
                "cifar10": "cifar10"}[cfg.recon_dataset]

    def _recon_split(self, cfg: Config, data_dir: Path, split: str) -> torch.Tensor:
        if cfg.recon_dataset == "captioned-shapes":
            images, _, _ = shapes_data.read_split(data_dir / "shapes", split)
        else:
            if cfg.recon_dataset == "cifar10" and split == "val":
                split = "test"  # CIFAR-10 has no validation split; validation peeks at a test subset
            images, _ = photo_patches.read_split(data_dir / "recon", split)
        return torch.from_numpy(images)

    # ------------------------------------------------------------------ models
    def _grid(self, cfg: Config) -> tuple[int, int]:
        side = cfg.image_size // 2**cfg.t2i_n_downsample
        return side, side

    def make_variants(self, cfg: Config, data_dir: Path) -> list[Variant]:
        """`recon` (the VQ-VAE on the reconstruction data), `text2image` (VQ-VAE then code prior, on captioned
        shapes) and `classifier` (the attribute judge, on the judge split)."""
        data = _Data(self, cfg, data_dir)
        return [self._recon(cfg, data), self._text2image(cfg, data), self._classifier(cfg, data)]

    def _recon(self, cfg: Config, data: _Data) -> Variant:
        def batches(epoch: int, seed: int) -> EpochBatches:
            gen = torch.Generator().manual_seed(seed * 7919 + epoch * 31 + len("recon"))
            n, size = cfg.recon_batches_per_epoch, cfg.recipe_for("recon").batch_size

            def made():
                images = data.recon("train")
                for _ in range(n):  # sampled with replacement: epochs are fixed-length
                    yield {"images": _float(images[torch.randint(0, len(images), (size,), generator=gen)])}

            return EpochBatches(n, made())

        def validate(model: VQVAE) -> dict[str, float]:
            x = _float(data.recon("val")[:512]).to(next(model.parameters()).device)
            return {"psnr": psnr(model(x)["recon"].clamp(0, 1), x)}

        return Variant(self.name, "recon", cfg.recipe_for("recon"), lambda: VQVAE(_vq_config(cfg, cfg.n_downsample)),
                       batches, lambda model, batch: model(batch["images"])["loss"], validate)

    def _text2image(self, cfg: Config, data: _Data) -> Variant:
        def build() -> TextToImage:
            h, w = self._grid(cfg)
            prior = CodePrior(CodePriorConfig(text_vocab=len(shapes_data.CaptionTokenizer()), text_len=TEXT_LEN,
                                              codebook_size=cfg.codebook_size, n_codes=h * w,
                                              d_model=cfg.prior_d_model, n_layer=cfg.prior_layers,
                                              n_head=cfg.prior_heads, cond_dropout=cfg.cond_dropout,
                                              tie_codebook=cfg.prior_tied_codebook, code_dim=cfg.code_dim))
            return TextToImage(VQVAE(_vq_config(cfg, cfg.t2i_n_downsample)), prior, cfg.vq_steps)

        def validate(model: TextToImage) -> dict[str, float]:
            images, _, text = data.shapes("val")
            x, device = _float(images), next(model.parameters()).device
            x = x.to(device)
            out = {"psnr": psnr(model.vqvae(x)["recon"].clamp(0, 1), x)}
            if int(model.steps_done) > model.vq_steps:
                codes = model.vqvae.encode(x).flatten(1)
                out["prior_nll_bits_per_code"] = float(model.prior.loss(text.to(device), codes)) / math.log(2)
            return out

        return Variant(self.name, "text2image", cfg.recipe_for("text2image"), build,
                       data.shape_batches("text2image", "train", cfg.t2i_batches_per_epoch, "text"),
                       lambda model, batch: model.training_loss(batch["images"], batch["text"]), validate)

    def _classifier(self, cfg: Config, data: _Data) -> Variant:
        def validate(model: AttributeClassifier) -> dict[str, float]:
            images, labels, _ = data.shapes("val")
            logits = model(_float(images).to(next(model.parameters()).device))
            return {f"acc_{k}": float((logits[k].argmax(1).cpu() == v).float().mean()) for k, v in labels.items()}

        return Variant(self.name, "classifier", cfg.recipe_for("classifier"),
                       lambda: AttributeClassifier({k: len(v) for k, v in shapes_data.ATTRIBUTES.items()}),
                       data.shape_batches("classifier", "judge", cfg.classifier_batches_per_epoch, "labels"),
                       lambda model, batch: model.loss(batch["images"], batch["labels"]), validate,
                       fixed_seed=JUDGE_SEED)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, models, cfg: Config, data_dir: Path, out_dir: Path, seed: int) -> list[Result]:
        results = self._eval_recon(models["recon"], cfg, data_dir, out_dir)
        results += self._eval_text2image(models["text2image"], models["classifier"], cfg, data_dir, out_dir, seed)
        return results

    def _reconstruct(self, model: VQVAE, x: torch.Tensor, batch: int = 256):
        recons, codes = [], []
        for i in range(0, len(x), batch):
            out = model(x[i : i + batch])
            recons.append(out["recon"])
            codes.append(out["indices"])
        return torch.cat(recons), torch.cat(codes)

    def _recon_rows(self, model: VQVAE, train_x, test_x, dataset: str, variant: str, out_dir: Path, tag: str,
                    split: str = "test", test_recon: tuple[torch.Tensor, torch.Tensor] | None = None) -> list[Result]:
        """MSE, PSNR, bits/dim and perplexity of `model` on test_x; sigma of the decoder fitted on train_x.
        test_recon: `_reconstruct(model, test_x)` when the caller has it already."""
        sigma = fit_sigma(train_x, self._reconstruct(model, train_x)[0])
        recon, codes = test_recon if test_recon is not None else self._reconstruct(model, test_x)
        n_latents = codes[0].numel()
        k = model.cfg.codebook_size
        common = dict(dataset=dataset, split=split, n_samples=len(test_x), variant=variant)
        info = {"decoder": f"discretised Gaussian, sigma={sigma:.5f} fitted (ML) on {len(train_x)} training images",
                "latents_per_image": n_latents, "codebook_size": k, "image_shape": list(test_x.shape[1:]),
                "pixel_scale": "[0, 1]"}
        _save_grid(out_dir / f"reconstructions_{tag}.png", test_x[:16], recon[:16].clamp(0, 1),
                   f"{tag}: originals (top) / reconstructions (bottom)")
        return [
            Result("mse", mse(recon.clamp(0, 1), test_x), **common, higher_is_better=False, details=info),
            Result("psnr_db", psnr(recon.clamp(0, 1), test_x), **common, details=info),
            Result("bits_per_dim", bits_per_dim(test_x, recon, sigma, n_latents, k), **common,
                   higher_is_better=False, details={**info, "prior": "uniform over K codes (paper's bound)"}),
            Result("codebook_perplexity", codebook_perplexity(codes, k), **common, details=info),
        ]

    def _eval_recon(self, model: VQVAE, cfg: Config, data_dir: Path, out_dir: Path) -> list[Result]:
        device = next(model.parameters()).device
        train_x = _float(self._recon_split(cfg, data_dir, "train")[:2000]).to(device)
        test_x = _float(self._recon_split(cfg, data_dir, "test")).to(device)
        return self._recon_rows(model, train_x, test_x, self._recon_name(cfg), "recon", out_dir, "recon")

    def _eval_text2image(self, t2i: TextToImage, clf: AttributeClassifier, cfg: Config, data_dir: Path,
                         out_dir: Path, seed: int) -> list[Result]:
        device = next(t2i.parameters()).device
        tr_img, _, _ = shapes_data.read_split(data_dir / "shapes", "train")
        images, attrs, captions = shapes_data.read_split(data_dir / "shapes", "test")
        x = _float(torch.from_numpy(images)).to(device)
        train_x = _float(torch.from_numpy(tr_img[:1000])).to(device)
        recon, grid_codes = self._reconstruct(t2i.vqvae, x)  # one pass: the recon rows, the prior, the judge check
        rows = self._recon_rows(t2i.vqvae, train_x, x, "captioned-shapes", "text2image", out_dir, "shapes",
                                test_recon=(recon, grid_codes))
        tok = shapes_data.CaptionTokenizer()
        text = torch.tensor([tok.encode(c, TEXT_LEN) for c in captions], device=device)
        labels = {k: torch.from_numpy(v) for k, v in attrs.items()}
        heldout = torch.tensor([shapes_data.heldout_pair(int(s), int(c))
                                for s, c in zip(attrs["shape"], attrs["colour"], strict=True)])
        # the learned prior's code length on test images (vs log2 K under the uniform prior)
        codes = grid_codes.flatten(1)
        prior_bits = float(t2i.prior.loss(text, codes)) / math.log(2)
        common = dict(dataset="captioned-shapes", split="test", variant="text2image")
        rows.append(Result("prior_bits_per_code", prior_bits, **common, n_samples=len(x), higher_is_better=False,
                           details={"uniform_prior_bits_per_code": math.log2(cfg.codebook_size)}))
        # the judge on real test images: how far its readings can be trusted
        real = clf(x)
        for k in labels:
            ok = real[k].argmax(1).cpu() == labels[k]
            rows.append(Result(f"classifier_acc_real_{k}", float(ok.float().mean()), dataset="captioned-shapes",
                               split="test", n_samples=len(x), variant="classifier", scale="raw"))
            if k in ("shape", "colour") and heldout.any():  # real images of pairs the judge never saw
                rows.append(Result(f"classifier_acc_real_{k}_heldout_pairs", float(ok[heldout].float().mean()),
                                   dataset="captioned-shapes", split="test", n_samples=int(heldout.sum()),
                                   variant="classifier", scale="raw"))
        # the judge on the VQ-VAE's reconstructions of the real test images: the images the generator can draw at
        # best, with known labels; a judge that misreads these cannot score generations
        read_recon = clf(recon.clamp(0, 1))
        for k in ("shape", "colour"):
            ok = read_recon[k].argmax(1).cpu() == labels[k]
            rows.append(Result(f"classifier_acc_vqvae_recon_{k}", float(ok.float().mean()), dataset="captioned-shapes",
                               split="test", n_samples=len(x), variant="classifier", scale="raw",
                               details={"images": "the text2image VQ-VAE's reconstructions of the real test images"}))
        # generation from held-out captions
        n = min(cfg.n_generate, len(x))
        g = torch.Generator(device=device).manual_seed(seed)
        gen = torch.cat([t2i.generate(text[i : min(i + 100, n)], self._grid(cfg), cfg.temperature, cfg.top_k, g,
                                      cfg.guidance)
                         for i in range(0, n, 100)])
        read = {k: v.argmax(1).cpu() for k, v in clf(gen).items()}
        correct = {k: read[k] == labels[k][:n] for k in labels}
        all_ok = torch.stack(list(correct.values())).all(0)
        decoding = {"sampling": f"temperature {cfg.temperature}, top_k {cfg.top_k}, guidance {cfg.guidance}",
                    "judge": "AttributeClassifier",
                    "captions": "test split (unseen images)"}
        for subset, mask in (("all", torch.ones(n, dtype=torch.bool)), ("seen_pairs", ~heldout[:n]),
                             ("heldout_pairs", heldout[:n])):
            m = int(mask.sum())
            if m == 0:
                continue
            suffix = "" if subset == "all" else f"_{subset}"
            for k in ("shape", "colour"):
                rows.append(Result(f"gen_acc_{k}{suffix}", float(correct[k][mask].float().mean()), **common,
                                   n_samples=m, details=decoding))
            if subset == "all":
                for k in ("size", "row", "col"):
                    rows.append(Result(f"gen_acc_{k}", float(correct[k][mask].float().mean()), **common,
                                       n_samples=m, details=decoding))
            rows.append(Result(f"gen_acc_all_attributes{suffix}", float(all_ok[mask].float().mean()), **common,
                               n_samples=m, details=decoding))
        _save_grid(out_dir / "generated_from_heldout_captions.png", x[: cfg.n_grid], gen[: cfg.n_grid],
                   "real test image (top) / generated from its caption (bottom)", captions[: cfg.n_grid])
        with (out_dir / "generations.tsv").open("w") as handle:
            handle.write("caption\theldout_pair\t" + "\t".join(f"read_{k}" for k in labels) + "\n")
            for i in range(n):
                handle.write(f"{captions[i]}\t{bool(heldout[i])}\t"
                             + "\t".join(shapes_data.ATTRIBUTES[k][int(read[k][i])] for k in labels) + "\n")
        return rows


def _heldout_names() -> list[str]:
    colours = tuple(shapes_data.COLOURS)
    return [f"{colours[c]} {s}" for si, s in enumerate(shapes_data.SHAPES) for c in range(len(colours))
            if shapes_data.heldout_pair(si, c)]


def _save_grid(path: Path, top: torch.Tensor, bottom: torch.Tensor, title: str, labels: list[str] | None = None) -> None:
    """Two rows of images (N, 3, H, W in [0, 1]) as one PNG, wrapped 16 per row pair; a caption label
    (shortened to two lines: "red circle" / "top left") over each top image."""
    n = min(len(top), len(bottom))
    tops, bottoms = _uint8_tiles(top[:n]), _uint8_tiles(bottom[:n])
    short = [label.replace("a ", "", 1).replace(" at the ", "\n") for label in labels[:n]] if labels else None
    rows, row_labels = [], []
    for i in range(0, n, 16):
        rows += [tops[i : i + 16], bottoms[i : i + 16]]
        row_labels += [short[i : i + 16] if short else None, None]
    tile_grid(rows, row_labels, title).save(path)


def _uint8_tiles(images: torch.Tensor) -> list[np.ndarray]:
    """(N, 3, H, W) in [0, 1], on any device -> N (H, W, 3) uint8 arrays."""
    return list((images.permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())
