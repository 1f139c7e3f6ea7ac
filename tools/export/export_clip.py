#!/usr/bin/env python3
"""Export a CLIP model (open_clip or Hugging Face) for probelog-tool's text queries.

Writes into --out:
  clip_image.pt   TorchScript image tower: float32 [N, 3, S, S] RGB in [0, 1] -> [N, d]
                  (CLIP's mean/std applied by probelog-tool's --mean/--std, or baked in with
                  --bake-normalization)
  clip_text.pt    TorchScript text tower: int64 ids [N, T] (open_clip), or ids and the int64
                  attention mask [N, T] (Hugging Face) -> [N, d]
  tokenizer.json  Hugging Face tokenizers file giving the ids the text tower was trained on,
                  with the pad id the model expects in its `padding` section
  clip.json       the settings below, for scripts

and prints the `probes embed` and `search --text` command lines that match.

Every export is checked before anything is written: each traced tower against the model on other
batch sizes, and the tokenizer.json (with probelog-tool's padding and truncation) against the
model's own tokenizer on a set of sample texts (plus --check-texts).

Run with the Python of tools/setup-python.sh: .venv-py/bin/python tools/export/export_clip.py -h
"""

import argparse
import shlex
import sys
from pathlib import Path

import exportlib
from exportlib import ExportError

# OpenAI CLIP's normalization, used by open_clip's and Hugging Face's CLIP preprocessing.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="export_clip.py",
        description=(
            "Export a CLIP model's image and text towers as TorchScript files plus a "
            "tokenizer.json for `probelog-tool probes embed` and `search --text`."
        ),
        epilog=(
            "examples:\n"
            "  export_clip.py --open-clip ViT-B-32 --pretrained laion2b_s34b_b79k --out clip/\n"
            "  export_clip.py --open-clip ViT-B-32 --pretrained ckpt/open_clip_model.safetensors --out clip/\n"
            "  export_clip.py --open-clip my-vit --model-config my-vit.json --pretrained my.pt --out clip/\n"
            "  export_clip.py --hf openai/clip-vit-base-patch32 --out clip/\n"
            "  export_clip.py --hf ./my-clip-checkpoint/ --out clip/ --bake-normalization\n"
            "\n"
            "The exported files are traced on the CPU in float32. Names given to --pretrained or\n"
            "--hf that are not local files are downloaded by open_clip or transformers."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--open-clip",
        metavar="MODEL",
        help="open_clip model name (open_clip.list_models(), or hf-hub:ORG/REPO)",
    )
    src.add_argument(
        "--hf",
        metavar="PATH_OR_ID",
        help="Hugging Face CLIPModel checkpoint: a directory written by save_pretrained, or a hub id",
    )
    weights = p.add_mutually_exclusive_group()
    weights.add_argument(
        "--pretrained",
        metavar="TAG_OR_FILE",
        help="open_clip weights: a pretrained tag (open_clip.list_pretrained()) or a checkpoint file",
    )
    weights.add_argument(
        "--random-init",
        action="store_true",
        help="export randomly initialised weights (for tests); --seed sets them",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --random-init (default 0)")
    p.add_argument(
        "--model-config",
        metavar="FILE.json",
        type=Path,
        help="an open_clip model config to register first, named by its file stem (give that "
        "name to --open-clip)",
    )
    p.add_argument("--out", metavar="DIR", type=Path, required=True, help="output directory")
    p.add_argument(
        "--bake-normalization",
        action="store_true",
        help="apply the model's mean/std inside clip_image.pt; then `probes embed` takes no "
        "--mean/--std",
    )
    p.add_argument(
        "--check-texts",
        metavar="FILE",
        type=Path,
        help="more texts (one per line) on which tokenizer.json must give the model's token ids",
    )
    p.add_argument(
        "--allow-tokenizer-mismatch",
        action="store_true",
        help="write tokenizer.json even when it differs from the model's tokenizer on a text "
        "(the differences are printed)",
    )
    args = p.parse_args(argv)
    if args.open_clip is None and args.model_config is not None:
        p.error("--model-config applies to --open-clip models")
    if args.hf is not None and args.pretrained is not None:
        p.error("--pretrained applies to --open-clip; with --hf the weights are the checkpoint's")
    if args.open_clip is not None and args.pretrained is None and not args.random_init:
        p.error("give the weights with --pretrained TAG_OR_FILE, or --random-init for a test export")
    return args


class ImageTower:
    """Builds the image module: optional baked normalization, then the tower."""

    @staticmethod
    def make(torch, tower, mean, std, bake):
        class Image(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.tower = tower
                self.bake = bake
                self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
                self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

            def forward(self, x):
                if self.bake:
                    x = (x - self.mean) / self.std
                return self.tower(x)

        return Image()


def open_clip_model(torch, args):
    """(image tower, text tower, tokenizer.json Tokenizer, reference tokenizer, settings)."""
    try:
        import open_clip
        from open_clip.tokenizer import SimpleTokenizer
    except ImportError as e:
        raise ExportError(f"cannot import open_clip ({e}); run tools/setup-python.sh") from None
    name = args.open_clip
    if args.model_config is not None:
        if not args.model_config.is_file():
            raise ExportError(f"--model-config {args.model_config}: no such file")
        open_clip.add_model_config(args.model_config)
    if not name.startswith("hf-hub:") and name not in open_clip.list_models():
        raise ExportError(
            f"--open-clip {name}: not an open_clip model name (see open_clip.list_models(); a "
            "custom config is registered with --model-config FILE.json, named by its stem)"
        )
    if args.random_init:
        torch.manual_seed(args.seed)
    try:
        model = open_clip.create_model(
            name, pretrained=None if args.random_init else args.pretrained, device="cpu"
        )
    except Exception as e:
        raise ExportError(f"open_clip cannot create {name}: {exportlib.first_line(e)}") from None
    model.eval().float()
    tokenizer = open_clip.get_tokenizer(name)
    if not isinstance(tokenizer, SimpleTokenizer):
        raise ExportError(
            f"{name} uses {type(tokenizer).__name__}, not CLIP's BPE tokenizer; only open_clip "
            "models with CLIP's tokenizer are supported (export Hugging Face models with --hf)"
        )
    from open_clip import tokenizer as oc_tokenizer

    if tokenizer.reduction_fn is not None or tokenizer.clean_fn is not oc_tokenizer._clean_lower:
        raise ExportError(
            f"{name}'s tokenizer cleans or reduces text in a way tokenizer.json cannot express"
        )
    context_length = int(getattr(model, "context_length", None) or tokenizer.context_length)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", 224)
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise ExportError(f"{name} takes non-square images {tuple(size)}; probes are square")
        size = size[0]
    mean, std = tuple(cfg.get("mean", CLIP_MEAN)), tuple(cfg.get("std", CLIP_STD))

    from open_clip.tokenizer import default_bpe

    tok = exportlib.clip_bpe_tokenizer(default_bpe(), context_length)
    if [tok.token_to_id(t) for t in ("<|startoftext|>", "<|endoftext|>")] != [
        tokenizer.sot_token_id,
        tokenizer.eot_token_id,
    ]:
        raise ExportError(f"{name}'s tokenizer has other special token ids than CLIP's BPE")

    def reference(texts):
        return tokenizer(texts, context_length=context_length).tolist()

    text_model = model
    image_tower = model.visual
    # The text tower without the image weights: encode_text never reads `visual`.
    text_model.visual = torch.nn.Identity()

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = text_model

        def forward(self, ids):
            return self.model.encode_text(ids)

    settings = {
        "source": f"open_clip:{name}",
        "weights": f"random-init (seed {args.seed})" if args.random_init else str(args.pretrained),
        "input_size": int(size),
        "mean": list(mean),
        "std": list(std),
        "context_length": context_length,
        "attention_mask": False,
        "pad_id": 0,
    }
    return image_tower, Text(), tok, reference, settings


def hf_model(torch, args):
    try:
        import transformers
        from tokenizers import Tokenizer
    except ImportError as e:
        raise ExportError(f"cannot import transformers ({e}); run tools/setup-python.sh") from None
    src = args.hf
    transformers.utils.logging.disable_progress_bar()
    try:
        config = transformers.CLIPConfig.from_pretrained(src)
        if args.random_init:
            torch.manual_seed(args.seed)
            config._attn_implementation = "eager"
            model = transformers.CLIPModel(config)
        else:
            model = transformers.CLIPModel.from_pretrained(src, attn_implementation="eager")
    except Exception as e:
        raise ExportError(f"--hf {src}: cannot load a CLIPModel: {exportlib.first_line(e)}") from None
    model.eval().float()
    try:
        hf_tok = transformers.AutoTokenizer.from_pretrained(src)
    except Exception as e:
        raise ExportError(f"--hf {src}: cannot load its tokenizer: {exportlib.first_line(e)}") from None
    backend = getattr(hf_tok, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(
            f"--hf {src}: its tokenizer ({type(hf_tok).__name__}) has no tokenizers backend to "
            "save as tokenizer.json"
        )
    context_length = int(config.text_config.max_position_embeddings)
    pad_id = hf_tok.pad_token_id if hf_tok.pad_token_id is not None else 0
    tok = Tokenizer.from_str(backend.to_str())
    exportlib.set_fixed_padding(tok, context_length, pad_id, tok.id_to_token(pad_id) or "")

    def reference(texts):
        enc = hf_tok(
            texts, padding="max_length", truncation=True, max_length=context_length
        )
        return enc["input_ids"]

    size = int(config.vision_config.image_size)
    mean, std = CLIP_MEAN, CLIP_STD
    try:
        proc = transformers.AutoImageProcessor.from_pretrained(src)
        mean, std = tuple(proc.image_mean), tuple(proc.image_std)
        crop = getattr(proc, "crop_size", None) or {}
        crop = crop.get("height") if isinstance(crop, dict) else crop
        if crop and int(crop) != size:
            print(
                f"export_clip: note: the processor crops to {crop} px, the model takes {size} px; "
                f"using {size}",
                file=sys.stderr,
            )
    except Exception:
        print(
            f"export_clip: note: {src} has no image processor config; using CLIP's mean/std",
            file=sys.stderr,
        )

    class Image(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vision_model = model.vision_model
            self.visual_projection = model.visual_projection

        def forward(self, x):
            return self.visual_projection(self.vision_model(pixel_values=x).pooler_output)

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.text_model = model.text_model
            self.text_projection = model.text_projection

        def forward(self, ids, mask):
            out = self.text_model(input_ids=ids, attention_mask=mask)
            return self.text_projection(out.pooler_output)

    settings = {
        "source": f"hf:{src}",
        "weights": f"random-init (seed {args.seed})" if args.random_init else str(src),
        "input_size": size,
        "mean": list(mean),
        "std": list(std),
        "context_length": context_length,
        "attention_mask": True,
        "pad_id": int(pad_id),
    }
    return Image(), Text(), tok, reference, settings


def main(argv=None):
    args = parse_args(argv)
    torch = exportlib.import_torch()
    torch.set_grad_enabled(False)
    texts = list(exportlib.SAMPLE_TEXTS)
    if args.check_texts is not None:
        try:
            texts += args.check_texts.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ExportError(f"--check-texts {args.check_texts}: {e.strerror}") from None

    if args.open_clip is not None:
        tower, text, tok, reference, settings = open_clip_model(torch, args)
    else:
        tower, text, tok, reference, settings = hf_model(torch, args)
    image = ImageTower.make(torch, tower, settings["mean"], settings["std"], args.bake_normalization)
    settings["normalization_baked"] = bool(args.bake_normalization)
    size, t = settings["input_size"], settings["context_length"]

    with exportlib.Staging(args.out) as out:
        tok_path = out.path("tokenizer.json")
        tok.save(str(tok_path))
        bad = exportlib.check_token_ids(tok_path, reference, texts, t)
        for text_, want, got in bad:
            print(f"export_clip: mismatch: {exportlib.describe_mismatch(text_, want, got)}", file=sys.stderr)
        if bad and not args.allow_tokenizer_mismatch:
            raise ExportError(
                f"tokenizer.json gives other token ids than the model's tokenizer on {len(bad)} "
                f"of {len(texts)} texts (listed above); nothing was written "
                "(--allow-tokenizer-mismatch writes it anyway)"
            )
        print(
            f"export_clip: tokenizer.json gives the model's token ids on {len(texts) - len(bad)} "
            f"of {len(texts)} sample texts",
            file=sys.stderr,
        )

        torch.manual_seed(0)
        x = lambda n: torch.rand(n, 3, size, size)
        traced = exportlib.trace_checked(
            torch, image, (x(2),), [(x(1),), (x(3),)], "image tower"
        )
        dim = int(traced(x(1)).shape[-1])
        traced.save(str(out.path("clip_image.pt")))

        ids, masks = exportlib.tool_token_ids(tok_path, texts, t)
        ids, masks = torch.tensor(ids), torch.tensor(masks)
        inputs = (lambda a, b: (ids[a:b], masks[a:b])) if settings["attention_mask"] else (
            lambda a, b: (ids[a:b],)
        )
        traced = exportlib.trace_checked(
            torch, text, inputs(0, 2), [inputs(2, 3), inputs(3, 8), inputs(8, len(texts))], "text tower"
        )
        text_dim = int(traced(*inputs(0, 1)).shape[-1])
        if text_dim != dim:
            raise ExportError(
                f"the image tower returns {dim} dimensions and the text tower {text_dim}; "
                "probelog-tool compares them directly"
            )
        traced.save(str(out.path("clip_text.pt")))
        settings["embedding_dim"] = dim
        commands = command_lines(args.out, settings)
        settings["commands"] = commands
        exportlib.write_json(out.path("clip.json"), settings)
        written = out.commit()

    for path in written:
        print(f"wrote {path}")
    print("\n".join(commands))


def command_lines(out, s):
    q = lambda v: shlex.quote(str(v))
    image = [
        "probelog-tool probes embed INDEX.plog --probes PROBES.pset",
        f"--clip-image {q(out / 'clip_image.pt')}",
        f"--input-size {s['input_size']}",
    ]
    if not s["normalization_baked"]:
        image += [f"--mean {exportlib.rgb(s['mean'])}", f"--std {exportlib.rgb(s['std'])}"]
    text = [
        "probelog-tool search INDEX.plog --text 'a photo of a dog'",
        f"--clip-text {q(out / 'clip_text.pt')} --tokenizer {q(out / 'tokenizer.json')}",
        f"--context-length {s['context_length']}",
        f"--attention-mask {'always' if s['attention_mask'] else 'never'}",
    ]
    return [" ".join(image), " ".join(text)]


if __name__ == "__main__":
    exportlib.main_guard(main)
