#!/usr/bin/env python3
"""The reference implementation in PyTorch and ours, side by side in one run, on the CPU.

Times one VAR-d16 image (batch 1, CFG 1.5, top-k 900, top-p 0.96, the 256 px decode included)
with the reference's `autoregressive_infer_cfg` on randomly initialised official-shape models,
and the VQ-VAE decode alone, then runs `var bench --backend cpu` with the same sampling on the
same machine, and prints both with their ratio. Speed does not depend on the weights' values,
so both sides use random weights.

    python3 scripts/bench-reference.py --reference PATH/TO/VAR [--runs 3] [--threads N]

Needs PyTorch (`pip install torch numpy huggingface_hub`; the reference's models import the last) and a checkout of the reference repository (its
`models/` package is imported from there; nothing of it is part of this project). The `var`
binary is taken from $VAR_BIN or the build directory of scripts/build-web.sh.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", required=True, help="checkout of the reference repository")
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--runs", type=int, default=3, help="timed images after one warm-up")
    p.add_argument("--top-k", type=int, default=900)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    p.add_argument("--var-bin", default=os.environ.get("VAR_BIN") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/var-web/target"),
        "debug", "var"))
    return p.parse_args()


def reference_timings(args):
    models = os.path.join(args.reference, "models")
    if not os.path.isdir(models):
        sys.exit(f"{args.reference} has no models/ directory: pass a checkout of the reference repository")
    sys.path.insert(0, args.reference)
    import torch
    from models import build_vae_var

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    patch_nums = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
    vae, var = build_vae_var(
        V=4096, Cvae=32, ch=160, share_quant_resi=4, device="cpu", patch_nums=patch_nums,
        num_classes=1000, depth=args.depth, shared_aln=False,
    )
    vae.eval()
    var.eval()
    label = torch.tensor([0])
    totals, decodes = [], []
    with torch.inference_mode():
        for run in range(args.runs + 1):
            start = time.perf_counter()
            var.autoregressive_infer_cfg(B=1, label_B=label, cfg=1.5, top_k=args.top_k,
                                         top_p=0.96, g_seed=run, more_smooth=False)
            total = time.perf_counter() - start
            f_hat = torch.randn(1, 32, 16, 16)
            start = time.perf_counter()
            vae.fhat_to_img(f_hat)
            decode = time.perf_counter() - start
            if run > 0:
                totals.append(total)
                decodes.append(decode)
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "total_seconds": statistics.median(totals),
        "decode_seconds": statistics.median(decodes),
        "all_totals": totals,
    }


def our_timings(args):
    if not os.path.exists(args.var_bin):
        sys.exit(f"{args.var_bin} does not exist: build it (scripts/build-web.sh) or set VAR_BIN")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        subprocess.run([args.var_bin, "bench", "--backend", "cpu", "--precision", "f32",
                        "--depth", str(args.depth), "--runs", str(args.runs),
                        "--top-k", str(args.top_k), "--json", out], check=True)
        with open(out) as f:
            report = json.load(f)[0]
    return {
        "total_seconds": report["total_seconds"],
        "decode_seconds": report["decode_seconds"],
        "transformer_seconds": report["transformer_seconds"],
    }


def main():
    args = parse_args()
    ours = our_timings(args)
    ref = reference_timings(args)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"\nVAR-d{args.depth}, one image, CFG 1.5, top-k {args.top_k}, top-p 0.96, 256 px decode; "
          f"medians of {args.runs} runs after a warm-up")
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs; PyTorch {ref['torch']} on {ref['threads']} threads")
    # The reference's sampler decodes at its end; its transformer is the rest of the image.
    ref["transformer_seconds"] = ref["total_seconds"] - ref["decode_seconds"]
    print(f"{'':<28}{'reference (PyTorch)':>20}{'ours (var bench)':>18}{'ours / ref':>12}")
    for name, key in (("image, total (s)", "total_seconds"),
                      ("transformer (s)", "transformer_seconds"),
                      ("decode alone (s)", "decode_seconds")):
        print(f"{name:<28}{ref[key]:>20.2f}{ours[key]:>18.2f}{ours[key] / ref[key]:>12.2f}")
    print(json.dumps({"reference": ref, "ours": ours}))


if __name__ == "__main__":
    main()
