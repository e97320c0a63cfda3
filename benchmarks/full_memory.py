"""Does every full profile fit one 80 GB GPU at its stated micro-batch? Peak training-step memory, measured.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/full_memory.py               # all papers, ~15 min on CPU
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/full_memory.py --papers sympow vqvae
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/full_memory.py --quick --papers vqvae   # seconds (tests)

For each paper with a model trained at full size (params.yaml `papers.<paper>.full`, read with
`yaml.safe_load`), the model is built the way the paper module builds it, and ONE full training step
(forward + the paper's loss + backward + grad clipping + the recipe's optimizer step) runs on CPU at two
reduced batches, each in a fresh `spawn` subprocess so that allocations do not mix. Its peak memory is

    peak = weights + buffers + optimizer state (+ gradients, when they exist before the step) + inputs
           + the live-tensor peak of the step

where the first terms are counted exactly from the tensors (optimizer state after the step: Adam's two
moments, ...) and the last is `mmrepro.metrics.efficiency.LiveTensorBytes` over the whole step: every
storage an aten op creates (activations saved for backward, temporaries, the gradients as backward makes
them, clipping and optimizer temporaries) counted while alive; weights, state and inputs are passed as
`exclude` so views of them are not counted as new memory. The step measured is the steady state: the
optimizer state already exists (primed by one step on zero gradients), and with `accumulation` > 1 it is
the last micro-batch of a group (gradients of the earlier micro-batches alive, then the optimizer step).
The optimizer uses foreach updates, as on CUDA (on CPU PyTorch defaults to per-tensor loops).

The step has two phases whose peaks scale differently: forward + loss + backward (activations grow with
the batch) and clipping + optimizer step (gradients and whole-model foreach temporaries, constant in the
batch; at a small batch this one can be the larger). Each phase's peak is recorded and extrapolated on its
own, linearly in the batch: slope = (peak(b2) - peak(b1)) / (b2 - b1) per example, then
peak(batch_size) = peak(b1) + slope (batch_size - b1); the larger of the two is the step's peak.
SymPow (context 4096) is measured at contexts 512 and 1024 (batches 1 and 2 each), with the profile's
chunk_size, so the same form runs as at 4096 (with chunk_size >= context the chunked attention is one
chunk: the quadratic form). The per-example slope is extrapolated in context as s(T) = a T + b T^2 (exact
through the two points; the linear terms are the MLP/logits activations, the quadratic the attention
weights), the batch-independent part linearly; the log-log exponent between the two contexts is listed
too.

What this does not see: the CUDA caching allocator's fragmentation and reserved-but-free blocks, cuDNN /
cuBLAS workspaces, the CUDA context (~0.5-1 GB) and kernel-internal scratch. On CUDA the loop runs bf16
autocast (the recipe's `precision`), which halves most activations but keeps fp32 weights, gradients and
optimizer state and adds bf16 weight copies; the numbers here are fp32 (CPU), an upper bound on the
activations. "fits" compares with 80e9 bytes (an 80 GB card has 85.9e9), leaving ~6 GB for the above.

Writes `benchmarks/results/full_memory.json` (temp file, then rename) and prints a table.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

GB = 1e9
GPU_BYTES = 80e9
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "full_memory.json"
PHASES = ("forward_backward", "optimizer")
SHORT = {"forward_backward": "fwd+bwd", "optimizer": "opt step"}
PAPERS = ("conformer", "fast_conformer", "vsr_conformer", "sympow", "vqvae", "attention_captioner",
          "karpathy_alignment")

# inputs at full size (the datasets' worst cases) and in --quick
SPEECH = {"frames": 2450, "tokens": 200, "vocab": 1024}  # LibriSpeech: 24.5 s of 10 ms log-mel, 200 word pieces
SPEECH_QUICK = {"frames": 120, "tokens": 8, "vocab": 32}
VSR = {"frames": 155, "chars": 100}  # LRS3 long clips: 6.2 s at 25 fps, 100 characters
VSR_QUICK = {"frames": 12, "chars": 6}
SYMPOW_CONTEXTS = (512, 1024)
SYMPOW_QUICK_CONTEXTS = (32, 64)
CAPTION_VOCAB = 9000  # Flickr8k, every training word kept (CaptionVocab.build, min_count 1): ~8.9k words


def _profile(paper: str) -> dict:
    import yaml

    return dict(yaml.safe_load((ROOT / "configs" / f"{paper}.yaml").read_text())["full"])


# ------------------------------------------------------------------------------------------------- cases
# A case is (paper, variant); `_build` returns (cfg, model, make_batch(b, ctx) -> batch, step(model, batch)
# -> loss, input description). Everything here runs inside the worker subprocess.


def _speech(paper_name: str, variant: str, quick: bool):
    import torch

    from mmrepro.papers.conformer import Conformer
    from mmrepro.papers.fast_conformer import FastConformer

    paper = {"conformer": Conformer, "fast_conformer": FastConformer}[paper_name]()
    full = _profile(paper_name)
    if quick:
        full.update(size="tiny", d_model=32, num_layers=1, num_heads=2, pred_dim=16)
    cfg = paper.Config.model_validate(full)
    inp = SPEECH_QUICK if quick else SPEECH
    vocab = inp["vocab"]
    model = paper.recognizer(cfg, variant, vocab)

    def make_batch(b: int, _ctx):
        g = torch.Generator().manual_seed(b)
        return {"feats": torch.randn(b, inp["frames"], 80, generator=g),
                "feat_lens": torch.full((b,), inp["frames"], dtype=torch.long),
                "targets": torch.randint(0, vocab, (b, inp["tokens"]), generator=g),
                "target_lens": torch.full((b,), inp["tokens"], dtype=torch.long)}

    desc = (f"{inp['frames'] / 100:g} s = {inp['frames']} x 80 log-mel, {inp['tokens']} tokens "
            f"(vocab {vocab} + blank)")
    return cfg, model, make_batch, lambda m, batch: m.loss(batch), desc


def _vsr(variant: str, quick: bool):
    import torch

    from mmrepro.papers.vsr_conformer import VsrConformer

    paper = VsrConformer()
    full = _profile("vsr_conformer")
    if quick:
        full.update(image_size=16, d_model=32, num_layers=1, num_heads=2, conv_kernel=3, resnet_width=4,
                    pred_dim=16, joint_dim=16, embed_dim=8)
    cfg = paper.Config.model_validate(full)
    built = paper.build(cfg, Path(".")).variant(variant)  # reads no data
    model = built.build_model()
    inp, side, vocab = (VSR_QUICK if quick else VSR), cfg.image_size, paper.tokenizer.vocab_size

    def make_batch(b: int, _ctx):
        g = torch.Generator().manual_seed(b)
        return {"frames": torch.randint(0, 256, (b, inp["frames"], side * side), generator=g, dtype=torch.uint8),
                "lengths": torch.full((b,), inp["frames"], dtype=torch.long),
                "targets": torch.randint(1, vocab, (b, inp["chars"]), generator=g),
                "target_lengths": torch.full((b,), inp["chars"], dtype=torch.long)}

    desc = f"{inp['frames']} frames ({inp['frames'] / 25:g} s at 25 fps) of {side}x{side}, {inp['chars']} chars"
    return cfg, model, make_batch, built.loss, desc


def _sympow(variant: str, quick: bool):
    import torch

    from mmrepro.papers.sympow import SymPow

    paper = SymPow()
    full = _profile("sympow")
    if quick:
        full.update(d_model=32, n_layer=1, n_head=2, chunk_size=64)
    cfg = paper.Config.model_validate(full)
    built = paper.build(cfg, Path(".")).variant(variant)  # reads no data
    model = built.build_model()
    vocab = model.cfg.vocab_size if hasattr(model, "cfg") else 50304

    def make_batch(b: int, ctx: int):
        g = torch.Generator().manual_seed(b)
        w = torch.randint(0, vocab, (b, ctx + 1), generator=g)
        return {"x": w[:, :-1].contiguous(), "y": w[:, 1:].contiguous()}

    desc = (f"context T tokens (profile {cfg.context}), chunk_size {cfg.chunk_size or cfg.context}, "
            f"vocab {vocab}")
    return cfg, model, make_batch, built.loss, desc


def _vqvae(variant: str, quick: bool):
    import torch

    from mmrepro.data.captioned_shapes import CaptionTokenizer
    from mmrepro.papers.vqvae import TEXT_LEN, VQVAEPaper

    paper = VQVAEPaper()
    full = _profile("vqvae")
    if quick:
        full.update(hidden=16, res_hidden=8, codebook_size=16, code_dim=8, prior_d_model=16, prior_layers=1,
                    prior_heads=2, image_size=16)
    cfg = paper.Config.model_validate(full)
    base, phase = variant.split("/") if "/" in variant else (variant, "")
    built = paper.build(cfg, Path(".")).variant(base)  # reads no data
    model = built.build_model()
    if phase == "prior":
        model.steps_done.fill_(cfg.vq_steps)  # past the VQ-VAE phase: the prior trains on frozen codes
    n_text = len(CaptionTokenizer())
    side = cfg.image_size

    def make_batch(b: int, _ctx):
        g = torch.Generator().manual_seed(b)
        batch = {"images": torch.rand(b, 3, side, side, generator=g)}
        if base == "text2image":
            batch["text"] = torch.randint(1, n_text, (b, TEXT_LEN), generator=g)
        return batch

    def step(m, batch):
        if phase:
            m.steps_done.fill_(0 if phase == "vq" else cfg.vq_steps)  # training_loss counts one step
        return built.loss(m, batch)

    desc = f"{side}x{side} RGB" + (f", {TEXT_LEN} caption tokens" if base == "text2image" else "")
    return cfg, model, make_batch, step, desc


def _captioner(paper_name: str, variant: str, quick: bool):
    import torch

    from mmrepro.data.caption_vocab import BOS, EOS, CaptionVocab
    from mmrepro.papers.attention_captioner import AttentionCaptioner
    from mmrepro.papers.karpathy_alignment import KarpathyAlignment

    paper = {"attention_captioner": AttentionCaptioner, "karpathy_alignment": KarpathyAlignment}[paper_name]()
    full = _profile(paper_name)
    full["pretrained_path"] = None  # same model, random weights (the ImageNet file is not needed to size it)
    if quick:
        small = dict(encoder="small", image_size=32, encoder_dim=16, embed_dim=16, hidden_dim=16, attn_dim=16,
                     word_dim=16, gen_hidden_dim=16, gen_embed_dim=16, grid=2, max_caption_len=8)
        full.update({k: v for k, v in small.items() if k in paper.Config.model_fields})
    n_words = 50 if quick else CAPTION_VOCAB
    tmp = Path(tempfile.mkdtemp(prefix="full_memory_vocab_"))
    CaptionVocab.build(f"w{i}" for i in range(n_words)).save(tmp / "vocab.json")  # the vocabulary's size only
    built = paper.build(paper.Config.model_validate(full), tmp).variant(variant)  # reads no images
    cfg, model = built.recipe, built.build_model()
    n_vocab = n_words + 4
    length, side = cfg.max_caption_len, cfg.image_size

    def make_batch(b: int, _ctx):
        g = torch.Generator().manual_seed(b)
        tokens = torch.randint(4, n_vocab, (b, length), generator=g)
        tokens[:, 0], tokens[:, -1] = BOS, EOS
        return {"images": torch.randint(0, 256, (b, 3, side, side), generator=g, dtype=torch.uint8),
                "tokens": tokens}

    desc = f"{side}x{side} RGB ({cfg.encoder}), {length}-token captions (vocab {n_vocab})"
    return cfg, model, make_batch, built.loss, desc


def _build(paper: str, variant: str, quick: bool):
    if paper in ("conformer", "fast_conformer"):
        return _speech(paper, variant, quick)
    if paper == "vsr_conformer":
        return _vsr(variant, quick)
    if paper == "sympow":
        return _sympow(variant, quick)
    if paper == "vqvae":
        return _vqvae(variant, quick)
    return _captioner(paper, variant, quick)


def cases(paper: str) -> list[dict]:
    """The (variant, measured batches, contexts) of `paper` at its full profile."""
    full = _profile(paper)
    if paper in ("conformer", "fast_conformer"):
        variants = full.get("variants", ["ctc", "transducer"])
        return [{"variant": v, "batches": (1, 2)} for v in variants]
    if paper == "vsr_conformer":
        return [{"variant": v, "batches": (1, 2)} for v in full.get("variants", ["lp", "conv"])]
    if paper == "sympow":
        return [{"variant": v, "batches": (1, 2), "contexts": True} for v in full["variants"]]
    if paper == "vqvae":
        return [{"variant": v, "batches": (2, 4)} for v in ("recon", "text2image/vq", "text2image/prior")]
    if paper == "karpathy_alignment":
        return [{"variant": v, "batches": (2, 4)} for v in full.get("variants", ["align", "generate"])]
    return [{"variant": "main", "batches": (2, 4)}]


# ------------------------------------------------------------------------------------------------- worker


def _nbytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        st = t.untyped_storage()
        key = st.data_ptr()
        if key not in seen:
            seen.add(key)
            total += st.nbytes()
    return total


def _tensors(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _tensors(v)


def measure(paper: str, variant: str, batch: int, context: int | None, quick: bool) -> dict:
    """One training step of (paper, variant) at `batch` (and `context`); runs in a fresh subprocess."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    from mmrepro.metrics.efficiency import LiveTensorBytes
    from mmrepro.train import build_optimizer

    t0 = time.perf_counter()
    cfg, model, make_batch, step, desc = _build(paper, variant, quick)
    cfg = cfg.recipe_for(variant.split("/")[0])
    model.train()
    params = [p for p in model.parameters()]
    trainable = [p for p in params if p.requires_grad]
    optimizer = build_optimizer(model, cfg)
    for group in optimizer.param_groups:
        group["foreach"] = True  # CUDA's default: whole-model temporaries in the update
    # steady state: the optimizer's state exists (one step on zero gradients)
    for p in trainable:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cfg.accumulation > 1:  # the last micro-batch of a group: earlier micro-batches' gradients are alive
        for p in trainable:
            p.grad = torch.zeros_like(p)
    data = make_batch(batch, context)
    state = [t for s in optimizer.state.values() for t in _tensors(s)]
    buffers = list(model.buffers())
    grads_before = [p.grad for p in trainable if p.grad is not None]
    inputs = list(_tensors(data))
    exclude = [*params, *buffers, *state, *grads_before, *inputs]
    t1 = time.perf_counter()
    with LiveTensorBytes(exclude=exclude) as live:
        loss = step(model, data)
        (loss / cfg.accumulation).backward()
        loss_value = float(loss.detach())
        del loss
        peak_fb = live.peak  # forward + loss + backward (activations, temporaries, gradients)
        live.peak = live.live  # what stays (the gradients) is the optimizer phase's floor
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        peak_opt = live.peak  # gradients + clipping and optimizer temporaries
    step_s = time.perf_counter() - t1
    state = [t for s in optimizer.state.values() for t in _tensors(s)]
    comp = {"weights": _nbytes(params), "buffers": _nbytes(buffers), "optimizer_state": _nbytes(state),
            "grads_before_step": _nbytes(grads_before), "inputs": _nbytes(inputs),
            "live_peak": max(peak_fb, peak_opt)}
    static = sum(comp.values()) - comp["live_peak"]
    # the two phases peak differently in the batch (activations grow with it, optimizer temporaries do not),
    # so each is extrapolated on its own and the larger taken
    phases = {"forward_backward": static + peak_fb, "optimizer": static + peak_opt}
    grads = _nbytes([p.grad for p in trainable if p.grad is not None])
    optimizer.zero_grad(set_to_none=True)
    return {"batch": batch, "context": context, "peak_bytes": sum(comp.values()), "components": comp,
            "phases": phases,
            "grads_bytes": grads, "params": sum(p.numel() for p in params),
            "trainable_params": sum(p.numel() for p in trainable), "optimizer": cfg.optimizer,
            "accumulation": cfg.accumulation, "input": desc, "loss": loss_value, "step_seconds": round(step_s, 2),
            "total_seconds": round(time.perf_counter() - t0, 2)}


# ------------------------------------------------------------------------------------------------- fit


def linear_extrapolation(points: list[tuple[int, float]], target: int) -> dict:
    """peak(b) = peak(b1) + slope (b - b1), slope from the first and last measured batches."""
    (b1, p1), (b2, p2) = points[0], points[-1]
    slope = (p2 - p1) / (b2 - b1)
    return {"slope_bytes_per_example": slope, "intercept_bytes": p1 - slope * b1,
            "extrapolated_bytes": p1 + slope * (target - b1)}


def context_extrapolation(by_ctx: dict[int, dict], target_ctx: int, target_batch: int) -> dict:
    """Per-example slope s(T) = a T + b T^2 through two contexts (power law if a or b < 0), intercept linear."""
    (t1, f1), (t2, f2) = sorted(by_ctx.items())[:1] + sorted(by_ctx.items())[-1:]
    s1, s2 = f1["slope_bytes_per_example"], f2["slope_bytes_per_example"]
    i1, i2 = f1["intercept_bytes"], f2["intercept_bytes"]
    exponent = math.log(s2 / s1) / math.log(t2 / t1)
    det = t1 * t2**2 - t2 * t1**2
    a, b = (s1 * t2**2 - s2 * t1**2) / det, (t1 * s2 - t2 * s1) / det
    if a >= 0 and b >= 0:
        slope, form = a * target_ctx + b * target_ctx**2, "a T + b T^2"
    else:
        slope, form = s2 * (target_ctx / t2) ** exponent, f"T^{exponent:.2f}"
    intercept = i1 + (i2 - i1) / (t2 - t1) * (target_ctx - t1)
    return {"loglog_exponent": exponent, "slope_form": form, "slope_a_bytes_per_token": a,
            "slope_b_bytes_per_token2": b, "slope_bytes_per_example": slope, "intercept_bytes": intercept,
            "extrapolated_bytes": intercept + slope * target_batch}


# ------------------------------------------------------------------------------------------------- driver


def run_case(pool, paper: str, case: dict, quick: bool) -> dict:
    full = _profile(paper)
    target = int(full["batch_size"])
    accumulation = int(full.get("accumulation", 1))
    variant_recipe = full.get("variant_recipes", {}).get(case["variant"].split("/")[0], {})
    target = int(variant_recipe.get("batch_size", target))
    accumulation = int(variant_recipe.get("accumulation", accumulation))
    contexts = (SYMPOW_QUICK_CONTEXTS if quick else SYMPOW_CONTEXTS) if case.get("contexts") else (None,)
    runs = []
    for ctx in contexts:
        for b in case["batches"]:
            r = pool.submit(measure, paper, case["variant"], b, ctx, quick).result()
            print(f"  {paper}/{case['variant']} batch {b}" + (f" context {ctx}" if ctx else "")
                  + f": {r['peak_bytes'] / GB:.3f} GB ({r['total_seconds']:.0f} s)", flush=True)
            runs.append(r)
    row = {"paper": paper, "variant": case["variant"], "params_million": round(runs[0]["params"] / 1e6, 2),
           "optimizer": runs[0]["optimizer"], "input": runs[0]["input"], "measured": runs,
           "stated_batch": target, "accumulation": accumulation, "effective_batch": target * accumulation}
    fits = {}
    for phase in PHASES:
        if case.get("contexts"):
            target_ctx = int(full["context"])
            by_ctx = {c: linear_extrapolation([(r["batch"], r["phases"][phase]) for r in runs if r["context"] == c],
                                              target) for c in contexts}
            fits[phase] = {**context_extrapolation(by_ctx, target_ctx, target),
                           "per_context": {str(k): v for k, v in by_ctx.items()}}
        else:
            fits[phase] = linear_extrapolation([(r["batch"], r["phases"][phase]) for r in runs], target)
    binding = max(PHASES, key=lambda ph: fits[ph]["extrapolated_bytes"])
    row.update(phase_fits=fits, binding_phase=binding, **{k: v for k, v in fits[binding].items()})
    if case.get("contexts"):
        row["target_context"] = target_ctx
        row["method"] = (f"per phase: linear in batch at each context, per-example slope {row['slope_form']} in "
                         f"context (log-log exponent {row['loglog_exponent']:.2f}), extrapolated to context "
                         f"{target_ctx}; the larger phase")
    else:
        row["method"] = "per phase (forward+backward, optimizer step): linear in batch; the larger phase"
    row["fits_80gb"] = row["extrapolated_bytes"] <= GPU_BYTES
    return row


def _fmt_measured(row: dict) -> str:
    rs = row["measured"]
    if row.get("per_context"):
        return "; ".join(f"T{c}: b{'/'.join(str(r['batch']) for r in rs if r['context'] == int(c))}"
                         for c in row["per_context"])
    return "b" + "/".join(str(r["batch"]) for r in rs)


def table(rows: list[dict]) -> str:
    head = ["paper", "variant", "params (M)", "measured", "input", "measured peak (GB)", "slope (GB/ex)",
            "stated micro-batch", "extrapolated (GB)", "fits 80 GB", "effective batch"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        peaks = " / ".join(f"{m['peak_bytes'] / GB:.2f}" for m in r["measured"])
        inp = r["input"]
        slope = f"{r['slope_bytes_per_example'] / GB:.3f}"
        if r.get("per_context"):
            slope += f" @T{r['target_context']} ({r['slope_form']}, exp {r['loglog_exponent']:.2f})"
        lines.append("| " + " | ".join([
            r["paper"], r["variant"], f"{r['params_million']:.1f}", _fmt_measured(r), inp, peaks, slope,
            str(r["stated_batch"]), f"{r['extrapolated_bytes'] / GB:.1f} ({SHORT[r['binding_phase']]})",
            "yes" if r["fits_80gb"] else "NO",
            f"{r['stated_batch']} x {r['accumulation']} = {r['effective_batch']}"]) + " |")
    return "\n".join(lines)


def write_json(path: Path, blob: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(blob, f, indent=2)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--papers", nargs="+", choices=PAPERS, default=list(PAPERS))
    ap.add_argument("--quick", action="store_true", help="tiny models and inputs (seconds; the test)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned workers
    import torch

    t0 = time.perf_counter()
    rows = []
    ctx = mp.get_context("spawn")
    for paper in args.papers:
        for case in cases(paper):
            # one fresh process per measurement, so that allocations of different runs never mix
            with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as pool:
                rows.append(run_case(pool, paper, case, args.quick))
    blob = {"benchmark": "full_memory", "quick": args.quick, "torch": torch.__version__,
            "device": "cpu (fp32)", "threads": 1, "gpu_bytes": GPU_BYTES,
            "measurement": "weights + buffers + optimizer state (+ grads alive before the step) + inputs, counted "
                           "exactly, + LiveTensorBytes peak over forward, loss, backward, clip, optimizer step",
            "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    write_json(args.out, blob)
    print()
    print(table(rows))
    failing = [r for r in rows if not r["fits_80gb"]]
    for r in failing:
        fit = int((GPU_BYTES - r["intercept_bytes"]) // r["slope_bytes_per_example"])
        print(f"DOES NOT FIT: {r['paper']}/{r['variant']}: {r['extrapolated_bytes'] / GB:.1f} GB at micro-batch "
              f"{r['stated_batch']}; at most {fit} examples per micro-batch fit 80 GB")
    print(f"\nwrote {args.out} ({blob['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
