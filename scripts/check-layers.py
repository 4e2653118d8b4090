#!/usr/bin/env python3
"""Fails when a module of the library imports from a module above it.

The library is a stack of layers (ARCHITECTURE.md, "Layer map"). Each top-level module of
`src/` belongs to exactly one layer, and may use the modules of lower layers and the other
files of its own module, nothing else: no upward import, so no circle between modules. This
script reads every `crate::` path in `src/**/*.rs` (in `use` lines, brace groups included,
and inline paths), and `super::` paths, and checks each against LAYERS below.

Usage: scripts/check-layers.py [SRC_DIR]   (exit 1 and one line per violation when it fails)
"""

import pathlib
import re
import sys

# Lowest first. A module may import from a strictly lower layer, or from itself.
LAYERS = [
    ["error"],
    ["rng", "readback", "files", "hash", "devices"],
    ["config", "kernels", "sampler"],
    ["weights"],
    ["nn"],
    ["vqvae", "transformer"],
    ["model"],
    ["modeldir"],
    ["convert"],
    ["generate"],
    ["edit"],
    ["bench", "verify", "agreement", "picture", "serve"],
    ["train"],
    ["web"],
]
# Files that only declare and re-export modules (the crate root): not part of any layer.
ROOT_FILES = {"lib.rs"}


def layer_of(module):
    for i, names in enumerate(LAYERS):
        if module in names:
            return i
    return None


def module_path(src, file):
    """`src/weights/pth/zip.rs` → ['weights', 'pth', 'zip']; `mod.rs` names its folder."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def imported_paths(text):
    """Every path that starts with `crate::` or `super::`, with brace groups expanded."""
    paths = []
    for m in re.finditer(r"\buse\s+((?:crate|super)::[^;]*);", text):
        tree = re.sub(r"\s+as\s+\w+", "", m.group(1))
        paths.extend(expand(re.sub(r"\s+", "", tree)))
    for m in re.finditer(r"(?<![\w:])((?:crate|super)(?:::\w+)+)", text):
        paths.append(m.group(1))
    return paths


def expand(tree):
    """`a::{b::c,d}` → ['a::b::c', 'a::d'] (nested groups too)."""
    i = tree.find("{")
    if i < 0:
        return [tree]
    prefix, inner = tree[:i], tree[i + 1 : tree.rfind("}")]
    items, depth, start = [], 0, 0
    for j, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:j])
            start = j + 1
    items.append(inner[start:])
    out = []
    for item in items:
        if item and item != "self":
            out.extend(expand(prefix + item))
        elif item == "self":
            out.append(prefix.rstrip(":"))
    return out


def resolve(path, here):
    """The absolute module path (a list) a `crate::`/`super::` path points into."""
    parts = path.split("::")
    if parts[0] == "crate":
        return parts[1:]
    base = list(here)
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    return base + parts


def main():
    src = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    errors = []
    for file in sorted(src.rglob("*.rs")):
        rel = file.relative_to(src)
        if rel.parts[0] == "bin" or str(rel) in ROOT_FILES:
            continue
        here = module_path(src, file)
        own = layer_of(here[0])
        if own is None:
            errors.append(f"{file}: module '{here[0]}' is in no layer of scripts/check-layers.py")
            continue
        text = strip_comments(file.read_text())
        for path in sorted(set(imported_paths(text))):
            target = resolve(path, here)
            if path.startswith("super::") and (not target or layer_of(target[0]) is None):
                # A `super::` inside an inline module (`mod tests { use super::*; }`) is one
                # level deeper than the file.
                target = resolve(path, here + ["(inline)"])
            if not target or target[0] == here[0]:
                continue
            theirs = layer_of(target[0])
            if theirs is None:
                # Not one of our modules (a re-export at the crate root such as crate::Result
                # names an item of lib.rs): those must resolve to a layer too.
                errors.append(f"{file}: '{path}' does not name a module of a layer")
            elif theirs >= own:
                kind = "a module of the same layer" if theirs == own else "a higher layer"
                errors.append(
                    f"{file}: '{here[0]}' (layer {own}) imports '{path}' from {kind} "
                    f"('{target[0]}', layer {theirs})"
                )
    for e in errors:
        print(e)
    if errors:
        print(f"{len(errors)} import(s) break the layering (ARCHITECTURE.md, Layer map)")
        return 1
    print(f"layers: every import of {src} points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
