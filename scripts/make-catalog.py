#!/usr/bin/env python3
"""Writes www/models/catalog.json, the page's model picker, from data: the official
checkpoints' key and shape lists (tests/fixtures/official-shapes.json, from the reference) and
the shipped model's files. Sizes are computed, not typed: the download is every tensor of the
two .pth files; the converted size is what `var convert --precision int8` stores (transformer
matrices int8 with one f32 scale per row, everything else f16, recomputed buffers dropped);
the weights on a device follow weights::shards::device_bytes (int8 stays int8 on a GPU only,
f16 becomes f32). Run it again when the shapes or the shipped model change.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = os.path.join(ROOT, "tests", "fixtures", "official-shapes.json")
OUT = os.path.join(ROOT, "www", "models", "catalog.json")
HUB = "https://huggingface.co/FoundationVision/var/resolve/main/"
VAE = "vae_ch160v4096z32"
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int64": 8, "int32": 4}


def recomputed(key):
    # weights::is_recomputed_buffer
    return key in ("lvl_1L", "attn_bias_for_masking", "quantize.ema_vocab_hit_SV") or key.endswith(".zero_k_bias")


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def sizes(keys, transformer):
    """(download, stored int8, device bytes on a GPU, device bytes on the CPU)."""
    download = stored = gpu = cpu = 0
    for key, (shape, dtype) in keys.items():
        n = numel(shape)
        download += n * ITEMSIZE[dtype]
        if recomputed(key):
            continue
        if transformer and len(shape) == 2 and key.endswith(".weight"):
            scales = shape[0] * 4
            stored += n + scales
            gpu += n + scales
            cpu += 4 * n + scales
        else:
            stored += 2 * n
            gpu += 4 * n
            cpu += 4 * n
    return download, stored, gpu, cpu


def main():
    shapes = json.load(open(SHAPES))
    vae = sizes(shapes[VAE]["keys"], False)
    models = []
    shipped = os.path.join(ROOT, "www", "models", "fashion-mnist")
    config = json.load(open(os.path.join(shipped, "config.json")))
    shipped_bytes = sum(os.path.getsize(os.path.join(shipped, f)) for f in os.listdir(shipped))
    models.append({
        "id": "fashion-mnist",
        "title": "Fashion-MNIST, trained here",
        "kind": "directory",
        "url": "models/fashion-mnist/",
        "classes": config["var"]["num_classes"],
        "image_size": config["image_size"],
        "download_bytes": shipped_bytes,
        "stored_bytes": shipped_bytes,
    })
    for depth in (16, 20, 24, 30, 36):
        name = f"var_d{depth}"
        entry = shapes[name]
        var = sizes(entry["keys"], True)
        image_size = entry["patch_nums"][-1] * 16
        models.append({
            "id": f"var-d{depth}",
            "title": f"VAR-d{depth}, ImageNet {image_size} px ({entry['parameters'] / 1e6:.0f}M parameters)",
            "kind": "pth",
            "vae": f"{VAE}.pth",
            "var": f"{name}.pth",
            "patch_nums": entry["patch_nums"],
            "precision": "int8",
            "classes": 1000,
            "image_size": image_size,
            "download_bytes": vae[0] + var[0],
            "stored_bytes": vae[1] + var[1],
            "weights_gpu_bytes": vae[2] + var[2],
            "weights_cpu_bytes": vae[3] + var[3],
            # The reference demo's settings (demo_sample.ipynb).
            "sampling": {"cfg": 4.0, "top_k": 900, "top_p": 0.95, "more_smooth": False},
        })
    catalog = {
        "format": "var-web-catalog",
        "version": 1,
        "hub": HUB,
        "models": models,
    }
    text = json.dumps(catalog, indent=2) + "\n"
    if "--check" in sys.argv:
        if open(OUT).read() != text:
            sys.exit(f"{OUT} is stale: run scripts/make-catalog.py")
        return
    open(OUT, "w").write(text)
    print(f"wrote {OUT}")


main()
