"""Render the hub's raw material: every emoji concept in every style, and the monochrome icon sets.

Reads the npm packages installed by build.sh (tools/hub/package.json) and writes, under OUT:
- emoji.npz: `images` uint8 [M, S, S, 4] (RGBA), `concept` int32 [M], `style` int32 [M];
- emoji.json: the concepts (name, codepoint, category) and styles, in the order of those indices;
- icons.npz / icons.json: the icon sets (mdi, game-icons, flat-color-icons) as RGBA, with names.

A concept is a single-codepoint emoji (flags, skin-tone components and multi-codepoint sequences
are left out), named by its CLDR short name as the noto set spells it ("dog-face" -> "dog face").
Styles come from emoji-datasource PNGs (apple, google, twitter, facebook), from iconify sets keyed
by codepoint (noto, twemoji, openmoji, fluent-emoji-flat), and from iconify sets keyed by name
(noto-v1, emojione, emojione-v1).
"""

import argparse
import io
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

DATASOURCE = ["apple", "google", "twitter", "facebook"]
BY_CODEPOINT = ["noto", "twemoji", "openmoji", "fluent-emoji-flat"]
BY_NAME = ["noto-v1", "emojione", "emojione-v1"]
ICON_SETS = ["mdi", "game-icons", "flat-color-icons"]
SKIP_CATEGORIES = {"Flags", "Component"}


def iconify_svg(data, name, size, color="#000000"):
    """The SVG of icon `name` of an iconify JSON set, or None (aliases with transforms too)."""
    icons, aliases = data["icons"], data.get("aliases", {})
    flip = False
    seen = 0
    while name not in icons:
        alias = aliases.get(name)
        if alias is None or seen > 4 or any(k in alias for k in ("rotate", "vFlip")):
            return None
        flip ^= bool(alias.get("hFlip"))
        name = alias["parent"]
        seen += 1
    icon = icons[name]
    left, top = icon.get("left", 0), icon.get("top", 0)
    w = icon.get("width", data.get("width", 16))
    h = icon.get("height", data.get("height", 16))
    body = icon["body"].replace("currentColor", color)
    if flip:
        body = f'<g transform="translate({2 * left + w} 0) scale(-1 1)">{body}</g>'
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'viewBox="{left} {top} {w} {h}" width="{size}" height="{size}">{body}</svg>'
    )


def render_svg(job):
    svg, size = job
    import cairosvg  # imported in the worker

    try:
        png = cairosvg.svg2png(bytestring=svg.encode(), output_width=size, output_height=size)
    except Exception:  # noqa: BLE001 - a malformed icon is left out
        return None
    im = Image.open(io.BytesIO(png)).convert("RGBA")
    if im.size != (size, size):
        im = im.resize((size, size), Image.LANCZOS)
    a = np.asarray(im, dtype=np.uint8)
    return a if a[..., 3].max() > 0 else None


def load_png(path, size):
    im = Image.open(path).convert("RGBA").resize((size, size), Image.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--npm", required=True, help="node_modules directory")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--max-icons", type=int, default=2500, help="per icon set (seeded sample)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    nm, size = args.npm, args.size

    ds = json.load(open(f"{nm}/emoji-datasource-apple/emoji.json"))
    noto_chars = json.load(open(f"{nm}/@iconify-json/noto/chars.json"))
    noto_chars = {k.lower().replace("-fe0f", ""): v for k, v in noto_chars.items()}
    concepts = []
    for e in sorted(ds, key=lambda e: e["sort_order"]):
        u = e["unified"].lower()
        if e["category"] in SKIP_CATEGORIES or ("-" in u and not u.endswith("-fe0f")):
            continue
        cp = u.replace("-fe0f", "")
        if cp not in noto_chars:
            continue
        concepts.append(
            {
                "name": noto_chars[cp].replace("-", " "),
                "iconify": noto_chars[cp],
                "codepoint": cp,
                "image": e["image"],
                "category": e["category"],
                "subcategory": e["subcategory"],
                "datasource": {s: bool(e.get(f"has_img_{s}")) for s in DATASOURCE},
            }
        )
    styles = DATASOURCE + BY_CODEPOINT + BY_NAME
    print(f"render: {len(concepts)} concepts, {len(styles)} styles", file=sys.stderr)

    images, cidx, sidx = [], [], []
    # PNG styles.
    for s, style in enumerate(DATASOURCE):
        for c, con in enumerate(concepts):
            path = f"{nm}/emoji-datasource-{style}/img/{style}/64/{con['image']}"
            if con["datasource"][style] and os.path.exists(path):
                images.append(load_png(path, size))
                cidx.append(c)
                sidx.append(s)
    # SVG styles.
    jobs, owners = [], []
    for style in BY_CODEPOINT + BY_NAME:
        s = styles.index(style)
        data = json.load(open(f"{nm}/@iconify-json/{style}/icons.json"))
        chars = {}
        if style in BY_CODEPOINT:
            raw = json.load(open(f"{nm}/@iconify-json/{style}/chars.json"))
            chars = {k.lower().replace("-fe0f", ""): v for k, v in raw.items()}
        for c, con in enumerate(concepts):
            name = chars.get(con["codepoint"]) if style in BY_CODEPOINT else con["iconify"]
            svg = iconify_svg(data, name, size) if name else None
            if svg:
                jobs.append((svg, size))
                owners.append((c, s))
    with ProcessPoolExecutor(args.jobs) as pool:
        for (c, s), a in zip(owners, pool.map(render_svg, jobs, chunksize=64)):
            if a is not None:
                images.append(a)
                cidx.append(c)
                sidx.append(s)
    np.savez_compressed(
        f"{args.out}/emoji.npz",
        images=np.stack(images),
        concept=np.array(cidx, np.int32),
        style=np.array(sidx, np.int32),
    )
    json.dump({"concepts": concepts, "styles": styles}, open(f"{args.out}/emoji.json", "w"))
    print(f"render: {len(images)} emoji images", file=sys.stderr)

    # Icon sets: monochrome ones rendered black (the alpha is the shape; colour comes later).
    rng = np.random.default_rng(0)
    icons, names, sets = [], [], []
    jobs = []
    for i, st in enumerate(ICON_SETS):
        data = json.load(open(f"{nm}/@iconify-json/{st}/icons.json"))
        keys = sorted(data["icons"])
        if len(keys) > args.max_icons:
            keys = sorted(rng.choice(keys, args.max_icons, replace=False).tolist())
        for k in keys:
            jobs.append((iconify_svg(data, k, size), size))
            names.append(k)
            sets.append(i)
    with ProcessPoolExecutor(args.jobs) as pool:
        rendered = list(pool.map(render_svg, jobs, chunksize=64))
    keep = [i for i, a in enumerate(rendered) if a is not None]
    np.savez_compressed(
        f"{args.out}/icons.npz",
        images=np.stack([rendered[i] for i in keep]),
        set=np.array([sets[i] for i in keep], np.int32),
    )
    json.dump(
        {"names": [names[i] for i in keep], "sets": ICON_SETS},
        open(f"{args.out}/icons.json", "w"),
    )
    print(f"render: {len(keep)} icons", file=sys.stderr)


if __name__ == "__main__":
    main()
