#!/usr/bin/env python
"""Batched CPU inference speed of the default CNN, against plain eager PyTorch.

    python scripts/bench_inference.py            # ~100k real beats, DS1 training epochs first
    python scripts/bench_inference.py --quick    # 16k random beats, no training, 3 repeats
    python scripts/bench_inference.py --checkpoint outputs/train/.../best.pt --epochs 0

Baseline: ``model(x, rr)`` of the trained CNN1D (kiranyaz2016: 2 x 128 input, the RR features
of ``ecgcnn.data.beats.RR_FEATURES``, 5 classes) in eager mode over batches of 4096, float32, under ``torch.no_grad()``. Every
candidate also runs under no_grad (or inference_mode where named) so that the comparison is
about the runtime, not about autograd bookkeeping. ``torch.set_num_threads(2)``.

Timings: every candidate runs once per round, round-robin, so that load from other processes
on the machine hits all of them alike; the figure is the median over rounds (min-max shown).
Where the time goes: the baseline is dominated by the kernel, not by arithmetic. Each batch of
4096 allocates ~67 MB intermediates (conv1's output, its tanh), above glibc's mmap threshold, so
every batch maps fresh pages and faults on each of them (~1.5 M minor faults and half the CPU
time in the kernel per 98k beats; the "faults/beat" column). Candidates that work in chunks of
<= 2048 beats reuse heap memory instead. "eager, chunks of 1024" isolates that effect.
(A hand-built GEMM runtime with C kernels was faster here, 4.3x, but only 1.02x end to end on
the 24-hour analysis, where the CNN is a small part of the time: it was removed.)

A candidate counts ("ok") only when its argmax equals the baseline's on every beat and its
logits are within 1e-4 (low-precision candidates are shown but never chosen unless both hold).
The last line is one JSON object: beats_per_s (best verified), baseline_beats_per_s, speedup,
ds1_epoch_s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ecgcnn.export import export_model, fuse_for_inference, ort_session
from ecgcnn.models import CNN1D

REPO = Path(__file__).resolve().parents[1]
THREADS = 2
TOL = 1e-4


# ----------------------------------------------------------------------------- inputs
def compose_train(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import ecgcnn.config  # noqa: F401  (registers the schemas)
    from ecgcnn.apps import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def data_root() -> str:
    return os.environ.get("ECGCNN_DATA_DIR") or str((REPO / "../shared/data/mitdb").resolve())


def train_ds1(epochs: int, out: Path) -> tuple[float, Path]:
    """Train the default config on DS1 for ``epochs``; seconds per epoch and best.pt."""
    from ecgcnn.training.train import train

    cfg = compose_train(
        [
            "split=inter_patient",
            "trainer.progress=false",
            f"trainer.max_epochs={epochs}",
            f"data.root={data_root()}",
        ]
    )
    summary = train(cfg, out)
    print(
        f"DS1 training: {summary['train_beats']:,} beats, {summary['epochs_run']} epochs, "
        f"{summary['seconds_per_epoch']} s/epoch (train + validation, {THREADS} threads)"
    )
    return float(summary["seconds_per_epoch"]), out / "best.pt"


def real_beats(n: int) -> tuple[torch.Tensor, torch.Tensor, str] | None:
    """Up to ``n`` real beats (all 48 records, default beat settings), or None without data."""
    from ecgcnn.data.cache import load_beats

    root = Path(data_root())
    if not (root / "100.hea").is_file():
        return None
    cfg = compose_train([f"data.root={root}"]).data
    beats = load_beats(cfg, records=list(cfg.records)).all()
    k = min(n, len(beats))
    return (
        torch.from_numpy(beats.x[:k]).float(),
        torch.from_numpy(beats.rr[:k]).float(),
        f"{k:,} real MIT-BIH beats",
    )


def default_model() -> CNN1D:
    """The default kiranyaz2016 model with random weights (when no checkpoint is given)."""
    from ecgcnn.data.beats import CLASSES, RR_FEATURES
    from ecgcnn.models import build_model

    torch.manual_seed(0)
    return build_model(compose_train([]).model, 2, 128, len(RR_FEATURES), len(CLASSES)).eval()


# ----------------------------------------------------------------------------- candidates
def conv_as_matmul(model: CNN1D) -> Callable:
    """Both convs as unfold + GEMM in (B, T, C) layout, pooling before tanh (kiranyaz2016 only:
    two max-pooled tanh blocks, one hidden FC layer)."""
    c1, c2 = model.features[0][0], model.features[1][0]
    l1, l2 = model.head[0], model.head[2]
    k1, k2 = c1.kernel_size[0], c2.kernel_size[0]
    p1, p2 = model.features[0][2].kernel_size, model.features[1][2].kernel_size
    w1 = c1.weight.detach().reshape(c1.out_channels, -1).t().contiguous()  # (C_in*K, C_out)
    w2 = c2.weight.detach().reshape(c2.out_channels, -1).t().contiguous()
    t2 = model.length // p1 // p2
    # the flatten order becomes (t, c) instead of (c, t): permute fc1's input columns to match
    wf = l1.weight.detach()[:, : c2.out_channels * t2].reshape(-1, c2.out_channels, t2)
    wfc = (
        torch.cat(
            [
                wf.permute(0, 2, 1).reshape(l1.out_features, -1),
                l1.weight.detach()[:, c2.out_channels * t2 :],
            ],
            1,
        )
        .t()
        .contiguous()
    )

    def run(x, rr):
        b = x.shape[0]
        t1 = model.length // p1 * p1  # pooling drops the tail: no need to compute it
        u = F.pad(x, (k1 // 2, k1 // 2)).unfold(2, k1, 1)[:, :, :t1]  # (B, C, t1, K)
        u = u.permute(0, 2, 1, 3).reshape(b * t1, -1)
        z = torch.tanh(torch.addmm(c1.bias, u, w1).view(b, t1 // p1, p1, -1).amax(2))
        u = F.pad(z, (0, 0, k2 // 2, k2 // 2)).unfold(1, k2, 1)  # (B, T, C, K)
        n2 = z.shape[1] // p2 * p2
        u = u[:, :n2].reshape(b * n2, -1)
        z = torch.tanh(torch.addmm(c2.bias, u, w2).view(b, n2 // p2, p2, -1).amax(2))
        h = torch.tanh(torch.addmm(l1.bias, torch.cat([z.reshape(b, -1), rr], 1), wfc))
        return l2(h)

    return run


def torchscript(module, x, optimize: bool):
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CNN1D's input checks become trace constants: fine here
        ts = torch.jit.freeze(torch.jit.trace(module, (x[:3], torch.zeros(3, module.n_rr))).eval())
        return torch.jit.optimize_for_inference(ts) if optimize else ts


def compiled(module, x, rr):
    try:
        fn = torch.compile(module, dynamic=False)
        with torch.no_grad():
            fn(x[:4096], rr[:4096])
        return fn
    except Exception as exc:  # noqa: BLE001  (inductor fails in many ways without a compiler)
        print(f"torch.compile: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
        return None


def onnx_runner(path: Path, threads: int):
    sess = ort_session(path, threads)
    return lambda x, rr: sess.run(["logits"], {"beats": x.numpy(), "rr": rr.numpy()})[0]


def chunked(fn, size: int) -> Callable:
    """``fn`` over slices of ``size`` beats (same model, same batch handed in)."""
    return lambda x, rr: torch.cat(
        [fn(x[i : i + size], rr[i : i + size]) for i in range(0, len(x), size)]
    )


def half(module, dtype):
    m = fuse_for_inference(module).to(dtype)
    return lambda x, rr: m(x.to(dtype), rr.to(dtype)).float()


def candidates(model: CNN1D, ckpt: Path, x, rr, tmp: Path, quick: bool) -> dict:
    """name -> (function, batch size, grad context)."""
    fused = fuse_for_inference(model)
    no_grad, inf = torch.no_grad, torch.inference_mode
    c = {
        "baseline: eager, no_grad": (model, 4096, no_grad),
        "eager, inference_mode": (model, 4096, inf),
        "fused (pool before tanh)": (fused, 4096, inf),
        "fused, batch 16384": (fused, 16384, inf),
        "fused, batch 65536": (fused, 65536, inf),
        "conv as unfold+matmul": (conv_as_matmul(model), 4096, inf),
        "eager, chunks of 1024": (chunked(model, 1024), 4096, no_grad),
        "fused, chunks of 1024": (chunked(fused, 1024), 4096, inf),
    }
    c |= {
        "TorchScript frozen": (torchscript(model, x, False), 4096, inf),
        "TorchScript frozen + optimize_for_inference": (torchscript(model, x, True), 4096, inf),
        "TorchScript fused frozen": (torchscript(fused, x, False), 4096, inf),
        "bfloat16 fused": (half(model, torch.bfloat16), 4096, inf),
        "float16 fused": (half(model, torch.float16), 4096, inf),
    }
    onnx_path = export_model(ckpt, tmp / "onnx", "onnx")["model"]  # the fused graph
    plain_onnx = tmp / "plain.onnx"
    _export_plain_onnx(model, plain_onnx)
    c["ONNX Runtime plain, 2 threads"] = (onnx_runner(plain_onnx, 2), 4096, no_grad)
    for threads in (1, 2):
        c[f"ONNX Runtime fused, {threads} thread(s)"] = (
            onnx_runner(onnx_path, threads),
            4096,
            no_grad,
        )
    c["ONNX Runtime fused, 2 threads, batch 16384"] = (onnx_runner(onnx_path, 2), 16384, no_grad)
    if not quick:  # compiling takes ~40 s on 2 busy cores
        fn = compiled(model, x, rr)
        if fn is not None:
            c["torch.compile (inductor)"] = (fn, 4096, no_grad)
    return c


def _export_plain_onnx(model: CNN1D, path: Path) -> None:
    """The unfused CNN1D as ONNX (to separate what ORT gains from what the fusion gains)."""
    from ecgcnn.export.exporters import export_onnx

    meta = {
        "classes": list("NSVFQ"),
        "model_args": model.model_args,
        "input_shape": [model.in_channels, model.length],
    }
    export_onnx(model, meta, path)


# ----------------------------------------------------------------------------- timing
def run_all(fn, x, rr, bs: int, ctx) -> torch.Tensor:
    with ctx():
        out = [fn(x[i : i + bs], rr[i : i + bs]) for i in range(0, len(x), bs)]
    return torch.cat([o if isinstance(o, torch.Tensor) else torch.from_numpy(o) for o in out])


def measure(cands: dict, x, rr, warmup: int, repeats: int) -> dict:
    ref = run_all(*cands["baseline: eager, no_grad"][:1], x, rr, 4096, torch.no_grad)
    res = {}
    for name, (fn, bs, ctx) in cands.items():
        out = run_all(fn, x, rr, bs, ctx)
        for _ in range(warmup - 1):
            run_all(fn, x, rr, bs, ctx)
        diff = (out.float() - ref).abs().max().item()
        agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        res[name] = {
            "batch": bs,
            "max_logit_diff": diff,
            "argmax_agreement": agree,
            "verified": agree == 1.0 and diff <= TOL,
            "times": [],
            "cpu": [],
            "faults": [],
        }
    for _ in range(repeats):
        for name, (fn, bs, ctx) in cands.items():
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            t, c = time.perf_counter(), time.process_time()
            run_all(fn, x, rr, bs, ctx)
            res[name]["times"].append(time.perf_counter() - t)
            res[name]["cpu"].append(time.process_time() - c)
            res[name]["faults"].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    for r in res.values():
        t = np.asarray(r.pop("times"))
        r["beats_per_s"] = len(x) / float(np.median(t))
        r["range"] = (len(x) / t.max(), len(x) / t.min())
        # CPU seconds of this process (all threads): steadier than wall time when other
        # jobs share the cores, and a measure of work rather than of waiting
        r["beats_per_cpu_s"] = len(x) / float(np.median(r.pop("cpu")))
        r["faults_per_beat"] = float(np.median(r.pop("faults"))) / len(x)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16k random beats, 3 repeats, no training")
    ap.add_argument(
        "--beats", type=int, default=None, help="beats per pass (default 24 x 4096; --quick: 16k)"
    )
    ap.add_argument("--repeats", type=int, default=None, help="default 5 (--quick: 3)")
    ap.add_argument("--epochs", type=int, default=2, help="DS1 training epochs timed (0: skip)")
    ap.add_argument("--checkpoint", type=Path, help="benchmark this model (default: trained here)")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = 0
    args.beats = args.beats or (16_384 if args.quick else 98_304)
    args.repeats = args.repeats or (3 if args.quick else 5)
    torch.set_num_threads(THREADS)

    tmp = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    epoch_s, ckpt = None, args.checkpoint
    if args.epochs > 0:
        epoch_s, trained = train_ds1(args.epochs, tmp / "train")
        ckpt = ckpt or trained
    torch.set_num_threads(THREADS)  # training sets its own thread count
    if ckpt is None:
        from ecgcnn.training.checkpoint import save_checkpoint

        model = default_model()
        ckpt = tmp / "random.pt"
        save_checkpoint(
            {"model": model.state_dict(), "model_args": model.model_args, "classes": list("NSVFQ")},
            ckpt,
        )
        print("model: kiranyaz2016 with random weights")
    else:
        from ecgcnn.training.checkpoint import load_model

        model = load_model(ckpt)[0]
        print(f"model: {ckpt}")

    data = None if args.quick else real_beats(args.beats)
    if data is None:
        g = torch.Generator().manual_seed(0)
        data = (
            torch.randn(args.beats, 2, 128, generator=g),
            torch.rand(args.beats, model.n_rr, generator=g) + 0.5,
            f"{args.beats:,} random beats",
        )
    x, rr, what = data
    print(
        f"inputs: {what}; {THREADS} threads; {args.repeats} rounds after warm-up; "
        f"torch {torch.__version__}"
    )

    cands = candidates(model, ckpt, x, rr, tmp, args.quick)
    res = measure(cands, x, rr, warmup=2, repeats=args.repeats)
    base = res["baseline: eager, no_grad"]["beats_per_s"]
    base_cpu = res["baseline: eager, no_grad"]["beats_per_cpu_s"]
    print(
        f"\n{'runtime':44s} {'batch':>6s} {'beats/s':>8s} {'min-max':>15s} {'x base':>6s} "
        f"{'beats/cpu-s':>11s} {'x base':>6s} {'faults/beat':>11s} {'max|dlogit|':>11s} "
        f"{'argmax=':>8s}  ok"
    )
    for name, r in sorted(res.items(), key=lambda kv: -kv[1]["beats_per_s"]):
        lo, hi = r["range"]
        print(
            f"{name:44s} {r['batch']:6d} {r['beats_per_s']:8.0f} {lo:7.0f}-{hi:<7.0f} "
            f"{r['beats_per_s'] / base:6.2f} {r['beats_per_cpu_s']:11.0f} "
            f"{r['beats_per_cpu_s'] / base_cpu:6.2f} {r['faults_per_beat']:11.2f} "
            f"{r['max_logit_diff']:11.2e} "
            f"{100 * r['argmax_agreement']:7.3f}%  {'yes' if r['verified'] else 'NO'}"
        )
    best_name, best = max(
        ((n, r) for n, r in res.items() if r["verified"]), key=lambda nr: nr[1]["beats_per_s"]
    )
    print(f"\nbest verified runtime: {best_name} (batch {best['batch']})")
    print(
        json.dumps(
            {
                "beats_per_s": round(best["beats_per_s"]),
                "baseline_beats_per_s": round(base),
                "speedup": round(best["beats_per_s"] / base, 2),
                "ds1_epoch_s": epoch_s,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
