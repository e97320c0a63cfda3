"""Does the text-to-image model draw what the caption asks for? The cpu profile's `text2image` and
`classifier` variants trained through the one training loop, then the attribute judge reads (a) the VQ-VAE's
reconstructions of real test images (can the codes carry shape at all?) and (b) images generated from the
first 200 test captions under three samplers, and the recipe's guided one when it has guidance. Prints
one JSON line per run.

    OMP_NUM_THREADS=1 python benchmarks/text_to_image.py --seed 1 --set t2i_batches_per_epoch=1500

The README's table ("Papers", text-to-image) came from this script, seeds 0 and 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmrepro.config import dataset_settings, load_params, paper_config  # noqa: E402
from mmrepro.data import captioned_shapes as shapes  # noqa: E402
from mmrepro.papers import get_paper  # noqa: E402
from mmrepro.papers.vqvae import TEXT_LEN  # noqa: E402
from mmrepro.train import train_variant  # noqa: E402

SAMPLERS = {"temperature 1": (1.0, None, 1.0), "temperature 0.7": (0.7, None, 1.0), "top-k 8": (1.0, 8, 1.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="training and sampling seed (data: seed 0)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a key of the cpu profile's vqvae config, e.g. vq_steps=300")
    parser.add_argument("--n", type=int, default=200, help="test captions to generate from")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    paper = get_paper("vqvae", dataset_settings(params))
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    cfg = paper_config(params, "vqvae", "cpu").model_copy(update=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        data, ckpt = Path(tmp) / "data", Path(tmp) / "ckpt"
        paper.prepare(cfg, data, 0)
        started = time.monotonic()
        judge, _ = train_variant(paper.build(cfg, data).variant("classifier"), 0, ckpt / "classifier.pt", "bench")
        t2i, history = train_variant(paper.build(cfg, data).variant("text2image"), args.seed, ckpt / "t2i.pt", "bench")
        trained_s = time.monotonic() - started
        images, attrs, captions = shapes.read_split(data / "shapes", "test")
    x = torch.from_numpy(images).float() / 255
    truth = {k: torch.from_numpy(v) for k, v in attrs.items()}
    heldout = torch.tensor([shapes.heldout_pair(int(s), int(c)) for s, c in zip(attrs["shape"], attrs["colour"],
                                                                                strict=True)])
    tok = shapes.CaptionTokenizer()
    text = torch.tensor([tok.encode(c, TEXT_LEN) for c in captions])
    n, seen = args.n, ~heldout[: args.n]
    with torch.no_grad():
        recon = t2i.vqvae.decode(t2i.vqvae.encode(x)).clamp(0, 1)
        out = {"seed": args.seed, "overrides": overrides, "train_s": round(trained_s),
               "val": history.validation[-1],
               "judge_shape_on_vqvae_reconstructions": round(float((judge(recon)["shape"].argmax(1) == truth["shape"])
                                                                   .float().mean()), 3)}
        samplers = dict(SAMPLERS)
        if cfg.guidance != 1.0:  # the recipe's own guided sampler (the config refuses guidance without null captions)
            samplers[f"temperature {cfg.temperature}, guidance {cfg.guidance}"] = (cfg.temperature, None, cfg.guidance)
        for name, (temperature, top_k, guidance) in samplers.items():
            generator = torch.Generator().manual_seed(args.seed)
            read = {k: v.argmax(1) for k, v in judge(t2i.generate(text[:n], paper._grid(cfg), temperature, top_k,
                                                                   generator, guidance)).items()}
            shape_ok = read["shape"] == truth["shape"][:n]
            all_ok = torch.stack([read[k] == truth[k][:n] for k in truth]).all(0)
            out[name] = {"shape_seen": round(float(shape_ok[seen].float().mean()), 3),
                         "shape_heldout": round(float(shape_ok[~seen].float().mean()), 3),
                         "all_attributes_seen": round(float(all_ok[seen].float().mean()), 3)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
