#!/usr/bin/env python3
"""Export a timm or torchvision image classifier for `probelog-tool append --model`.

Writes into --out, NAME being --name or the model's name:
  NAME.pt          TorchScript classifier: float32 [N, 3, S, S] RGB in [0, 1], normalized by
                   probelog-tool with the mean/std below (or inside with --bake-normalization)
                   -> [N, L] logits
  NAME.labels.txt  one class label per logit, one per line (`append --labels`)
  NAME.toml        a manifest [[model]] entry with the model's input size, mean, std, labels,
                   name, source and metadata (`append --manifest`; entries of several exports
                   concatenate into one manifest)

and prints the matching `append` command lines. The traced module is checked against the model
on other batch sizes before anything is written.

Run with the Python of tools/setup-python.sh:
  .venv-py/bin/python tools/export/export_classifier.py -h
"""

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

import exportlib
from exportlib import ExportError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="export_classifier.py",
        description=(
            "Export a timm or torchvision classifier as TorchScript, with its labels and the "
            "`probelog-tool append --model` settings (a manifest entry)."
        ),
        epilog=(
            "examples:\n"
            "  export_classifier.py --torchvision resnet50 --weights IMAGENET1K_V2 --out models/\n"
            "  export_classifier.py --torchvision resnet18 --checkpoint finetuned.pth \\\n"
            "      --num-classes 10 --labels classes.txt --out models/ --name resnet18-pets\n"
            "  export_classifier.py --timm convnext_tiny.fb_in22k_ft_in1k --pretrained --out models/\n"
            "  export_classifier.py --timm vit_small_patch16_224 --checkpoint model.safetensors --out models/\n"
            "  cat models/*.toml > models.toml\n"
            "  probelog-tool append hub.plog --manifest models.toml --probes probes.pset\n"
            "\n"
            "Labels: --labels FILE, else the ImageNet class names of the weights (torchvision's\n"
            "weights metadata; timm's ImageNet info for the ImageNet class counts it knows).\n"
            "Preprocessing: the weights' (torchvision) or pretrained config's (timm) input size,\n"
            "mean and std, unless --input-size/--mean/--std say otherwise. probelog-tool resizes\n"
            "and center-crops probes itself, so resize and crop settings do not carry over."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--torchvision", metavar="NAME", help="torchvision.models name (resnet18, vit_b_16, ...)")
    src.add_argument("--timm", metavar="NAME", help="timm model name, optionally with its tag (resnet50.a1_in1k)")
    weights = p.add_mutually_exclusive_group(required=True)
    weights.add_argument(
        "--weights",
        metavar="ENUM",
        help="torchvision weights to download: DEFAULT, IMAGENET1K_V1, ...",
    )
    weights.add_argument(
        "--pretrained", action="store_true", help="timm: download the pretrained weights"
    )
    weights.add_argument(
        "--checkpoint",
        metavar="FILE",
        type=Path,
        help="a local state dict (.pth, .pt, .bin or .safetensors) for the architecture",
    )
    weights.add_argument(
        "--random-init",
        action="store_true",
        help="export randomly initialised weights (for tests); --seed sets them",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init (default 0)")
    p.add_argument("--num-classes", type=int, metavar="L", help="number of logits, when not the default")
    p.add_argument("--labels", metavar="FILE", type=Path, help="class labels, one per line (L lines)")
    p.add_argument("--no-labels", action="store_true", help="write no labels file")
    p.add_argument("--input-size", type=int, metavar="S", help="side of the square input (default: the weights')")
    p.add_argument("--mean", type=rgb_arg, metavar="R,G,B", help="per-channel mean (default: the weights')")
    p.add_argument("--std", type=rgb_arg, metavar="R,G,B", help="per-channel std (default: the weights')")
    p.add_argument(
        "--bake-normalization",
        action="store_true",
        help="apply mean/std inside the module; the manifest then gives none",
    )
    p.add_argument("--name", help="model name in the index and file stem (default: the model's name)")
    p.add_argument("--out", metavar="DIR", type=Path, required=True, help="output directory")
    args = p.parse_args(argv)
    if args.weights is not None and args.torchvision is None:
        p.error("--weights applies to --torchvision; timm downloads with --pretrained")
    if args.pretrained and args.timm is None:
        p.error("--pretrained applies to --timm; torchvision downloads with --weights ENUM")
    if args.labels is not None and args.no_labels:
        p.error("--labels and --no-labels exclude each other")
    if args.input_size is not None and not 1 <= args.input_size <= 4096:
        p.error("--input-size must be between 1 and 4096")
    return args


def rgb_arg(s):
    try:
        values = tuple(float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {s!r}") from None
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers R,G,B, got {s!r}")
    return values


def load_state_dict(torch, path):
    if not path.is_file():
        raise ExportError(f"--checkpoint {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ExportError(f"--checkpoint {path}: cannot read it: {exportlib.first_line(e)}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ExportError(f"--checkpoint {path}: not a state dict")
    # Checkpoints saved from DataParallel or DistributedDataParallel.
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def torchvision_model(torch, args):
    """(model, name, labels or None, (size, mean, std), meta)."""
    try:
        import torchvision
    except ImportError as e:
        raise ExportError(f"cannot import torchvision ({e}); run tools/setup-python.sh") from None
    name = args.torchvision
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ExportError(
            f"--torchvision {name}: not a torchvision classification model "
            "(torchvision.models.list_models(module=torchvision.models))"
        )
    enum = torchvision.models.get_model_weights(name)
    if args.weights is not None:
        try:
            weights = enum[args.weights] if args.weights != "DEFAULT" else enum.DEFAULT
        except KeyError:
            raise ExportError(
                f"--weights {args.weights}: {name} has {', '.join(['DEFAULT'] + [w.name for w in enum])}"
            ) from None
    else:
        weights = None
    # The recipe of the named weights, or of the default ones for a checkpoint or random init.
    recipe = weights or enum.DEFAULT
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    if weights is not None and args.num_classes not in (None, len(weights.meta["categories"])):
        raise ExportError(
            f"--num-classes {args.num_classes}: the {weights} weights have "
            f"{len(weights.meta['categories'])} classes; load a fine-tuned head with --checkpoint"
        )
    if args.random_init:
        torch.manual_seed(args.seed)
    try:
        model = torchvision.models.get_model(name, weights=weights, **kwargs)
    except Exception as e:
        raise ExportError(f"torchvision cannot create {name}: {exportlib.first_line(e)}") from None
    if args.checkpoint is not None:
        load_into(model, load_state_dict(torch, args.checkpoint), args.checkpoint)
    labels = recipe.meta.get("categories")
    transform = recipe.transforms()
    size = first(getattr(transform, "crop_size", None)) or 224
    mean = tuple(getattr(transform, "mean", IMAGENET_MEAN))
    std = tuple(getattr(transform, "std", IMAGENET_STD))
    meta = {"framework": "torchvision", "architecture": name}
    meta["weights"] = weights_name(args, str(weights) if weights is not None else None)
    return model, name, labels, (size, mean, std), meta


def timm_model(torch, args):
    try:
        import timm
        from timm.data import ImageNetInfo, infer_imagenet_subset, resolve_model_data_config
    except ImportError as e:
        raise ExportError(f"cannot import timm ({e}); run tools/setup-python.sh") from None
    name = args.timm
    if not timm.is_model(name):
        raise ExportError(f"--timm {name}: not a timm model name (timm.list_models())")
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    if args.random_init:
        torch.manual_seed(args.seed)
    try:
        model = timm.create_model(name, pretrained=args.pretrained, **kwargs)
    except Exception as e:
        raise ExportError(f"timm cannot create {name}: {exportlib.first_line(e)}") from None
    if args.checkpoint is not None:
        load_into(model, load_state_dict(torch, args.checkpoint), args.checkpoint)
    cfg = resolve_model_data_config(model)
    size = cfg["input_size"][-1]
    if cfg["input_size"][-2] != size:
        raise ExportError(f"{name} takes non-square images {cfg['input_size'][1:]}; probes are square")
    labels = None
    subset = infer_imagenet_subset(model)
    if subset is not None:
        info = ImageNetInfo(subset)
        labels = [info.index_to_description(i) for i in range(info.num_classes())]
    meta = {"framework": "timm", "architecture": name}
    meta["weights"] = weights_name(args, "timm pretrained" if args.pretrained else None)
    return model, name, labels, (size, tuple(cfg["mean"]), tuple(cfg["std"])), meta


def load_into(model, state, path):
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        text = str(e).replace("\n", " ").replace("\t", "")
        raise ExportError(
            f"--checkpoint {path} does not fit the architecture (is --num-classes right?): "
            f"{text[:400]}"
        ) from None


def weights_name(args, downloaded):
    if args.checkpoint is not None:
        return str(args.checkpoint)
    if args.random_init:
        return f"random-init (seed {args.seed})"
    return downloaded


def first(v):
    if isinstance(v, (list, tuple)):
        return v[0] if v else None
    return v


def read_labels(path):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ExportError(f"--labels {path}: {e.strerror}") from None
    return text.splitlines()


def toml_str(s):
    # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
    return json.dumps(s)


def manifest_entry(name, source, model_file, labels_file, size, mean, std, meta):
    lines = [
        "[[model]]",
        f"model = {toml_str(model_file)}",
        f"name = {toml_str(name)}",
        f"source = {toml_str(source)}",
    ]
    if labels_file is not None:
        lines.append(f"labels = {toml_str(labels_file)}")
    lines.append(f"input_size = {size}")
    if mean is not None:
        lines.append(f"mean = [{', '.join(exportlib.format_float(v) for v in mean)}]")
        lines.append(f"std = [{', '.join(exportlib.format_float(v) for v in std)}]")
    lines.append("[model.meta]")
    lines += [f"{k} = {toml_str(str(v))}" for k, v in meta.items() if v is not None]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    torch = exportlib.import_torch()
    torch.set_grad_enabled(False)
    if args.torchvision is not None:
        model, arch, labels, (size, mean, std), meta = torchvision_model(torch, args)
        source = f"torchvision:{arch}"
    else:
        model, arch, labels, (size, mean, std), meta = timm_model(torch, args)
        source = f"timm:{arch}"
    model.eval().float()
    size = args.input_size or int(size)
    mean = args.mean or mean
    std = args.std or std
    if any(v == 0 for v in std):
        raise ExportError(f"std {std} has a zero")
    name = args.name or arch
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", name)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.bake = args.bake_normalization
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

        def forward(self, x):
            if self.bake:
                x = (x - self.mean) / self.std
            return self.model(x)

    module = Classifier().eval()
    torch.manual_seed(0)
    x = lambda n: torch.rand(n, 3, size, size)
    traced = exportlib.trace_checked(torch, module, (x(2),), [(x(1),), (x(3),)], "classifier")
    out = traced(x(2))
    if out.dim() != 2:
        raise ExportError(f"the classifier returns shape {list(out.shape)}; probelog-tool needs [N, L]")
    num_logits = int(out.shape[1])

    if args.no_labels:
        labels = None
    elif args.labels is not None:
        labels = read_labels(args.labels)
    elif labels is not None and len(labels) != num_logits:
        raise ExportError(
            f"the model has {num_logits} logits but the weights' labels {len(labels)}; give "
            "--labels FILE (one per line) or --no-labels"
        )
    elif labels is None:
        raise ExportError(
            f"no class labels known for {arch} with {num_logits} logits; give --labels FILE "
            "(one per line) or --no-labels"
        )
    if labels is not None:
        if len(labels) != num_logits:
            raise ExportError(f"--labels {args.labels}: {len(labels)} lines for {num_logits} logits")
        for i, label in enumerate(labels):
            if "\n" in label or "\r" in label:
                raise ExportError(f"label {i} holds a line break: {label!r}")

    meta["logits"] = str(num_logits)
    meta["normalization"] = "baked into the module" if args.bake_normalization else "mean/std"
    model_file, labels_file = f"{stem}.pt", (f"{stem}.labels.txt" if labels is not None else None)
    entry = manifest_entry(
        name,
        source,
        model_file,
        labels_file,
        size,
        None if args.bake_normalization else mean,
        None if args.bake_normalization else std,
        meta,
    )
    with exportlib.Staging(args.out) as staging:
        traced.save(str(staging.path(model_file)))
        if labels is not None:
            staging.path(labels_file).write_text("".join(f"{l}\n" for l in labels), encoding="utf-8")
        staging.path(f"{stem}.toml").write_text(entry, encoding="utf-8")
        written = staging.commit()

    for path in written:
        print(f"wrote {path}")
    q = lambda v: shlex.quote(str(v))
    flags = [f"--model {q(args.out / model_file)}", f"--name {q(name)}", f"--input-size {size}"]
    if not args.bake_normalization:
        flags += [f"--mean {exportlib.rgb(mean)}", f"--std {exportlib.rgb(std)}"]
    if labels_file is not None:
        flags.append(f"--labels {q(args.out / labels_file)}")
    print(f"probelog-tool append INDEX.plog --probes PROBES.pset {' '.join(flags)}")
    print(f"probelog-tool append INDEX.plog --probes PROBES.pset --manifest {q(args.out / (stem + '.toml'))}")


if __name__ == "__main__":
    exportlib.main_guard(main)
