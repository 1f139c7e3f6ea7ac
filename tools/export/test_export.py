#!/usr/bin/env python3
"""End-to-end tests of export_clip.py and export_classifier.py through the real probelog-tool.

Each test makes a randomly initialised model (no weights are downloaded), saves its weights
where the script takes a checkpoint, runs the export script as a user would, feeds the exported
files to probelog-tool (`probes embed`, `search --text`, `append --manifest`/`--model`,
`export`), and compares what the tool stored or scored with the same model run eagerly here on
the same probe pixels (read from the .pset file) or the same text:
- stored probe embeddings (read from the index file, format-spec.md section 7.8) equal the eager
  image tower's rows at unit length within 1e-4;
- `search --text` (the tool tokenizes with tokenizer.json and runs the exported text tower) gives
  the scores of `search --text-embedding` with the eager text embedding of the model's own
  tokenization, within 1e-4, and the token count the model's tokenizer gives;
- tokenizer.json gives open_clip's token ids (the tool's padding and truncation) on the sample
  texts and on seeded random texts;
- stored descriptors (`export`) equal the eager classifier's logits z-normalized in float64
  within 1e-4, with the labels in order.

Run by tools/test-python.sh. Needs the Python of tools/setup-python.sh and probelog-tool built
with `--features torch`: $PROBELOG_TOOL, else $CARGO_TARGET_DIR/release/probelog-tool, else
target/release/probelog-tool. PROBELOG_TEST_REAL=1 adds an export of a real-size architecture
(open_clip ViT-B-32, random weights; about a minute on two cores).
"""

import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import unittest
import zlib
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import exportlib  # noqa: E402

TOL = 1e-4
# Probes: count and side of the small probe set, and of the real-size one.
P, S = 10, 32
REAL_P, REAL_S = 8, 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Texts searched through the tool: each is tokenized by the tool and by the model's tokenizer.
SEARCH_TEXTS = [
    "a photo of a dog",
    "A PHOTO of   a Cat!!",
    "it's a dog's life, isn't it?",
    "don’t “quote” me",
    "naïve café 北京的猫 🐶",
    "",
    "a photo of " + ", ".join(f"object number {i}" for i in range(40)),
]

torch.set_grad_enabled(False)
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def tool_path():
    if os.environ.get("PROBELOG_TOOL"):
        return Path(os.environ["PROBELOG_TOOL"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / "probelog-tool"


TOOL = tool_path()


def run(args, expect=0):
    """Runs a command; returns (stdout, stderr). Fails the test unless it exits with `expect`."""
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if out.returncode != expect:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited with {out.returncode}, expected {expect}\n"
            f"stdout: {out.stdout}\nstderr: {out.stderr}"
        )
    return out.stdout, out.stderr


def tool(*args, expect=0):
    return run([TOOL, *args], expect=expect)[0]


def tool_json(*args):
    return json.loads(tool(*args, "--json"))


def script(name, *args, expect=0):
    return run([sys.executable, HERE / name, *args], expect=expect)


# ---- files written by probelog-tool, read back independently -----------------------------------


def read_pset(path):
    """(names, uint8 [P, 3, S, S]) of a probe set file (format-spec.md, appendix A)."""
    b = Path(path).read_bytes()
    assert b[:8] == b"PLGPSET\0", "not a probe set file"
    p, s, channels = struct.unpack_from("<III", b, 16)
    names_len, pixels_len = struct.unpack_from("<QQ", b, 32)
    assert channels == 3 and pixels_len == p * 3 * s * s
    names, at = [], 64
    for _ in range(p):
        (n,) = struct.unpack_from("<I", b, at)
        names.append(b[at + 4 : at + 4 + n].decode())
        at += 4 + n
    assert at == 64 + names_len
    pixels = np.frombuffer(b, np.uint8, pixels_len, 64 + names_len).reshape(p, 3, s, s)
    return names, pixels


def read_probe_embeddings(path):
    """The ProbeEmbeddings section in force, f32 [P, D], of an index file (format-spec.md
    sections 4 to 7): the valid commit slot with the highest sequence, then the directory
    chain from the newest segment, the first ProbeEmbeddings found, its CRC checked."""
    b = Path(path).read_bytes()
    assert b[:8] == b"PROBELOG", "not an index"
    (num_probes,) = struct.unpack_from("<I", b, 16)
    slots = []
    for at in (128, 192):
        slot = b[at : at + 64]
        if any(slot) and zlib.crc32(slot[:60]) == struct.unpack_from("<I", slot, 60)[0]:
            slots.append(struct.unpack_from("<QQQI", slot, 0))
    assert slots, "no valid commit record"
    _seq, _committed, dir_offset, _dir_len = max(slots, key=lambda s: s[0])
    while True:
        assert b[dir_offset : dir_offset + 8] == b"PLSEGDIR"
        (prev_offset,) = struct.unpack_from("<Q", b, dir_offset + 48)
        (count,) = struct.unpack_from("<I", b, dir_offset + 64)
        for i in range(count):
            kind, crc, offset, length, dim = struct.unpack_from("<IIQQQ", b, dir_offset + 72 + 32 * i)
            if kind & 0x7FFFFFFF == 7:
                data = b[offset : offset + length]
                assert zlib.crc32(data) == crc, "ProbeEmbeddings CRC mismatch"
                return np.frombuffer(data, "<f4").reshape(num_probes, dim)
        if prev_offset == 0:
            return None
        dir_offset = prev_offset


def znorm(logits):
    """[P, L] -> [L, P]: each logit over the probes, minus its mean, over its population std."""
    x = np.asarray(logits, np.float64)
    return ((x - x.mean(0)) / x.std(0)).T


def unit_rows(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def probe_input(pixels, mean=None, std=None):
    """The probes as probelog-tool feeds them: float32 in [0, 1], then (x - mean) / std."""
    x = torch.from_numpy(pixels.copy()).float() / 255.0
    if mean is not None:
        x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x


def assert_close(test, got, want, what, tol=TOL):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    test.assertEqual(got.shape, want.shape, what)
    diff = float(np.abs(got - want).max())
    print(f"  {what}: max |difference| {diff:.2e}", file=sys.stderr)
    test.assertLessEqual(diff, tol, what)


def draw_probes(directory, count, side, seed):
    """PNG probes: smooth colour fields with a few shapes, some not square (the tool crops)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    directory.mkdir()
    for i in range(count):
        w, h = (side, side) if i % 3 else (side + 8 * (i % 5 + 1), side)
        img = Image.new("RGB", (w, h), tuple(rng.randrange(256) for _ in range(3)))
        d = ImageDraw.Draw(img)
        for _ in range(4):
            x0, y0 = rng.randrange(w), rng.randrange(h)
            d.ellipse(
                [x0, y0, x0 + rng.randrange(4, w), y0 + rng.randrange(4, h)],
                fill=tuple(rng.randrange(256) for _ in range(3)),
            )
        img.save(directory / f"probe{i:02}.png")


class Hub:
    """A probe set and an index made from it, with a few random-logit models to search."""

    def __init__(self, root, count, side):
        self.dir = root
        draw_probes(root / f"images{side}", count, side, seed=side)
        self.pset = root / f"probes{side}.pset"
        tool("probes", "build", "--images", root / f"images{side}", "--out", self.pset, "--size", side)
        self.names, self.pixels = read_pset(self.pset)
        self.index = root / f"hub{side}.plog"
        tool("create", self.index, "--probes", self.pset)
        rng = np.random.default_rng(side)
        for m in range(4):
            path = root / f"random{m}.npy"
            np.save(path, rng.standard_normal((count, 6)).astype(np.float32))
            tool("append", self.index, "--logits", path, "--name", f"random{m}", "--probes", self.pset)


class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not TOOL.is_file():
            raise unittest.SkipTest(f"{TOOL} not built (cargo build --release -p probelog-tool --features torch)")
        cls.tmp = tempfile.TemporaryDirectory(prefix="probelog-export-test-")
        cls.root = Path(cls.tmp.name)
        cls.hub = Hub(cls.root, P, S)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    # ---- CLIP ----------------------------------------------------------------------------------

    def check_embed(self, hub, out, expected, extra=()):
        """Runs `probes embed` with the exported image tower and the options export_clip.py
        printed; compares the stored rows with `expected` [P, d] at unit length."""
        settings = json.loads((out / "clip.json").read_text())
        args = ["probes", "embed", hub.index, "--clip-image", out / "clip_image.pt"]
        args += ["--probes", hub.pset, "--input-size", settings["input_size"], "--device", "cpu"]
        if not settings["normalization_baked"]:
            args += ["--mean", exportlib.rgb(settings["mean"]), "--std", exportlib.rgb(settings["std"])]
        tool(*args, *extra)
        stored = read_probe_embeddings(hub.index)
        self.assertEqual(stored.shape, (len(hub.names), settings["embedding_dim"]))
        assert_close(self, stored, unit_rows(expected), "stored probe embeddings")

    def check_text_search(self, hub, out, texts, embed_text, count_tokens, mask="auto"):
        """For each text: `search --text` through the exported tower and tokenizer.json scores
        every entry as `search --text-embedding` does with `embed_text(text)` [d] (the eager
        model on its own tokenizer's ids), and reports `count_tokens(text)` tokens."""
        settings = json.loads((out / "clip.json").read_text())
        common = ["--metric", "full", "--top", "1000"]
        scores = lambda report: {row["entry"]: row["score"] for row in report["results"]}
        for i, text in enumerate(texts):
            vec = self.root / f"text{i}.npy"
            np.save(vec, np.asarray(embed_text(text), np.float32))
            want = tool_json("search", hub.index, "--text-embedding", vec, *common)
            got = tool_json(
                "search", hub.index, "--text", text, "--clip-text", out / "clip_text.pt",
                "--tokenizer", out / "tokenizer.json", "--context-length", settings["context_length"],
                "--attention-mask", mask, "--device", "cpu", *common,
            )
            self.assertEqual(got["query"]["tokens"], count_tokens(text), text)
            self.assertEqual(got["query"]["attention_mask"], settings["attention_mask"], text)
            self.assertEqual(scores(got).keys(), scores(want).keys())
            assert_close(
                self,
                [scores(got)[e] for e in sorted(scores(want))],
                [scores(want)[e] for e in sorted(scores(want))],
                f"search scores for {text[:30]!r}",
            )
        # The comparison can fail: another text's embedding moves the scores far beyond TOL.
        other = self.root / "other.npy"
        np.save(other, np.asarray(embed_text("a diagram of a car engine"), np.float32))
        far = scores(tool_json("search", hub.index, "--text-embedding", other, *common))
        diff = max(abs(far[e] - s) for e, s in scores(want).items())
        print(f"  another text moves the scores by up to {diff:.2e}", file=sys.stderr)
        self.assertGreater(diff, 100 * TOL, "the scores do not depend on the text")

    def open_clip_export(self, name, config, bake=False):
        """A random open_clip model from `config`, its weights saved as a checkpoint, exported
        from that checkpoint. Returns (model, output directory)."""
        import open_clip

        cfg = self.root / f"{name}.json"
        cfg.write_text(json.dumps(config))
        open_clip.add_model_config(cfg)
        torch.manual_seed(5)
        model = open_clip.create_model(name, pretrained=None).eval()
        ckpt = self.root / f"{name}.pt"
        torch.save(model.state_dict(), ckpt)
        out = self.root / f"{name}-export{'-baked' if bake else ''}"
        args = ["--open-clip", name, "--model-config", cfg, "--pretrained", ckpt, "--out", out]
        _, err = script("export_clip.py", *args, *(["--bake-normalization"] if bake else []))
        self.assertIn("gives the model's token ids on 20 of 20 sample texts", err)
        return model, out

    def test_open_clip_tiny(self):
        import open_clip

        config = {
            "embed_dim": 32,
            "vision_cfg": {"image_size": S, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
        }
        model, out = self.open_clip_export("tiny-clip", config)
        for f in ("clip_image.pt", "clip_text.pt", "tokenizer.json", "clip.json"):
            self.assertTrue((out / f).is_file(), f)
        settings = json.loads((out / "clip.json").read_text())
        self.assertEqual(settings["input_size"], S)
        self.assertEqual(settings["context_length"], 77)
        self.assertFalse(settings["attention_mask"])
        expected = model.encode_image(probe_input(self.hub.pixels, CLIP_MEAN, CLIP_STD))
        self.check_embed(self.hub, out, expected)

        tokenizer = open_clip.get_tokenizer("tiny-clip")
        self.check_text_search(
            self.hub,
            out,
            SEARCH_TEXTS,
            lambda t: model.encode_text(tokenizer([t]))[0],
            lambda t: min(len(tokenizer.encode(t)) + 2, 77),
        )

        # The same export with the normalization inside the module: no --mean/--std.
        _, baked = self.open_clip_export("tiny-clip", config, bake=True)
        self.assertTrue(json.loads((baked / "clip.json").read_text())["normalization_baked"])
        self.check_embed(self.hub, baked, expected)

    def test_clip_tokenizer_matches_open_clip(self):
        """tokenizer.json, with probelog-tool's padding and truncation, gives open_clip's ids."""
        import open_clip
        from open_clip.tokenizer import default_bpe

        path = self.root / "tokenizer-check.json"
        exportlib.clip_bpe_tokenizer(default_bpe(), 77).save(str(path))
        tokenizer = open_clip.get_tokenizer("ViT-B-32")
        rng = random.Random(3)
        words = ["a", "photo", "of", "the", "dog", "Cat", "isn't", "don’t", "café", "北京",
                 "🐶", "42", "3.5", "x-ray", "C++", "&", "“hi”", "  ", "\t", "ﬁsh", "ＦＵＬＬ"]
        texts = exportlib.SAMPLE_TEXTS + [
            " ".join(rng.choice(words) for _ in range(rng.randrange(1, 40))) for _ in range(300)
        ]
        reference = lambda ts: tokenizer(ts).tolist()
        bad = exportlib.check_token_ids(path, reference, texts, 77)
        self.assertEqual([exportlib.describe_mismatch(*m) for m in bad], [])
        # Truncation keeps <|endoftext|> last, as open_clip does, and padding uses id 0.
        ids, mask = exportlib.tool_token_ids(path, ["word " * 100, "dog"], 77)
        self.assertEqual((len(ids[0]), ids[0][0], ids[0][-1]), (77, 49406, 49407))
        self.assertEqual(ids[1][:4], [49406, 1929, 49407, 0])
        self.assertEqual(sum(mask[1]), 3)

    def test_hf_clip_tiny(self):
        import transformers
        from open_clip.tokenizer import SimpleTokenizer

        transformers.utils.logging.disable_progress_bar()

        # A CLIP checkpoint as save_pretrained writes it, with OpenAI CLIP's tokenizer (vocab and
        # merges from open_clip's BPE file) and image processor.
        ckpt = self.root / "hf-clip"
        st = SimpleTokenizer()
        vocab = dict(st.encoder)
        vocab["<|startoftext|>"] = vocab.pop("<start_of_text>")
        vocab["<|endoftext|>"] = vocab.pop("<end_of_text>")
        merges = [tuple(m) for m, _ in sorted(st.bpe_ranks.items(), key=lambda kv: kv[1])]
        hf_tok = transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)
        hf_tok.save_pretrained(ckpt)
        transformers.CLIPImageProcessor(
            size={"shortest_edge": S}, crop_size={"height": S, "width": S}
        ).save_pretrained(ckpt)
        config = transformers.CLIPConfig(
            text_config=dict(vocab_size=49408, hidden_size=64, intermediate_size=128,
                             num_hidden_layers=2, num_attention_heads=2,
                             max_position_embeddings=77, eos_token_id=49407, bos_token_id=49406),
            vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=2, image_size=S, patch_size=8),
            projection_dim=32,
        )
        torch.manual_seed(6)
        transformers.CLIPModel(config).save_pretrained(ckpt)

        out = self.root / "hf-export"
        _, err = script("export_clip.py", "--hf", ckpt, "--out", out)
        self.assertIn("on 20 of 20 sample texts", err)
        settings = json.loads((out / "clip.json").read_text())
        self.assertTrue(settings["attention_mask"])
        self.assertEqual(settings["pad_id"], 49407)
        model = transformers.CLIPModel.from_pretrained(ckpt).eval()
        features = lambda o: o if isinstance(o, torch.Tensor) else o.pooler_output
        expected = features(model.get_image_features(pixel_values=probe_input(self.hub.pixels, CLIP_MEAN, CLIP_STD)))
        self.check_embed(self.hub, out, expected)

        hf_tok = transformers.AutoTokenizer.from_pretrained(ckpt)
        enc = lambda t: hf_tok([t], padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        embed = lambda t: features(model.get_text_features(**enc(t)))[0]
        count = lambda t: int(enc(t)["attention_mask"].sum())
        self.check_text_search(self.hub, out, SEARCH_TEXTS[:4], embed, count, mask="always")
        # `auto` finds the second input by itself.
        self.check_text_search(self.hub, out, SEARCH_TEXTS[4:5], embed, count, mask="auto")

    @unittest.skipUnless(os.environ.get("PROBELOG_TEST_REAL") == "1", "PROBELOG_TEST_REAL=1 runs it")
    def test_open_clip_vit_b_32_real_size(self):
        import open_clip
        import time

        (self.root / "real").mkdir()
        hub = Hub(self.root / "real", REAL_P, REAL_S)
        torch.manual_seed(9)
        model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
        ckpt = self.root / "vit-b-32.pt"
        torch.save(model.state_dict(), ckpt)
        out = self.root / "vit-b-32-export"
        t = time.time()
        script("export_clip.py", "--open-clip", "ViT-B-32", "--pretrained", ckpt, "--out", out)
        print(f"  ViT-B-32 export: {time.time() - t:.1f} s", file=sys.stderr)
        expected = model.encode_image(probe_input(hub.pixels, CLIP_MEAN, CLIP_STD))
        t = time.time()
        self.check_embed(hub, out, expected)
        print(f"  ViT-B-32 probes embed ({REAL_P} probes): {time.time() - t:.1f} s", file=sys.stderr)
        tokenizer = open_clip.get_tokenizer("ViT-B-32")
        self.check_text_search(
            hub, out, SEARCH_TEXTS[:3],
            lambda text: model.encode_text(tokenizer([text]))[0],
            lambda text: min(len(tokenizer.encode(text)) + 2, 77),
        )

    # ---- classifiers ---------------------------------------------------------------------------

    def stored_descriptors(self, name):
        """(descriptors [L, P], labels) of model `name`, from `probelog-tool export`."""
        npy = self.root / f"export-{name}.npy"
        tool("export", self.hub.index, "--out", npy)
        rows = np.load(npy)
        sidecar = json.loads(npy.with_suffix(".json").read_text())
        entries = [e for e in sidecar["entries"] if e["model"] == name]
        self.assertEqual([e["logit"] for e in entries], list(range(len(entries))))
        return rows[[e["entry"] for e in entries]], [e["label"] for e in entries]

    def test_torchvision_classifier(self):
        import torchvision

        torch.manual_seed(7)
        model = torchvision.models.resnet18(weights=None).eval()
        ckpt = self.root / "resnet18.pth"
        torch.save(model.state_dict(), ckpt)
        out = self.root / "classifiers"
        stdout, _ = script(
            "export_classifier.py", "--torchvision", "resnet18", "--checkpoint", ckpt,
            "--input-size", S, "--out", out,
        )
        self.assertIn("--manifest", stdout)
        entry = (out / "resnet18.toml").read_text()
        self.assertIn("mean = [0.485, 0.456, 0.406]", entry)
        self.assertIn(f"input_size = {S}", entry)
        labels = (out / "resnet18.labels.txt").read_text().splitlines()
        categories = torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]
        self.assertEqual(labels, categories)

        tool("append", self.hub.index, "--manifest", out / "resnet18.toml", "--probes", self.hub.pset, "--device", "cpu")
        stored, stored_labels = self.stored_descriptors("resnet18")
        expected = model(probe_input(self.hub.pixels, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
        assert_close(self, stored, znorm(expected), "resnet18 descriptors")
        self.assertEqual(stored_labels, categories)

    def test_timm_classifier_with_labels_and_baked_normalization(self):
        import timm

        torch.manual_seed(8)
        model = timm.create_model("test_resnet", pretrained=False, num_classes=7).eval()
        ckpt = self.root / "test_resnet.pth"
        torch.save({"state_dict": model.state_dict()}, ckpt)
        labels = self.root / "labels.txt"
        names = ["cat", "dog", "car, red", "tree", "año", "x \"quoted\"", "n7"]
        labels.write_text("\n".join(names) + "\n")
        out = self.root / "classifiers"
        stdout, _ = script(
            "export_classifier.py", "--timm", "test_resnet", "--checkpoint", ckpt, "--num-classes", 7,
            "--labels", labels, "--input-size", S, "--bake-normalization", "--name", "my resnet",
            "--out", out,
        )
        entry = (out / "my_resnet.toml").read_text()
        self.assertNotIn("mean =", entry)
        # The printed `append --model` line, run as printed.
        line = next(l for l in stdout.splitlines() if "--model " in l)
        import shlex

        argv = shlex.split(line)[1:]
        argv[argv.index("INDEX.plog")] = str(self.hub.index)
        argv[argv.index("PROBES.pset")] = str(self.hub.pset)
        tool(*argv, "--device", "cpu")
        stored, stored_labels = self.stored_descriptors("my resnet")
        cfg = timm.data.resolve_model_data_config(model)
        expected = model(probe_input(self.hub.pixels, cfg["mean"], cfg["std"]))
        assert_close(self, stored, znorm(expected), "timm test_resnet descriptors")
        self.assertEqual(stored_labels, names)

    def test_refusals(self):
        out = self.root / "refused"
        # No weights named: argparse's usage error.
        _, err = script("export_classifier.py", "--torchvision", "resnet18", "--out", out, expect=2)
        self.assertIn("one of the arguments --weights --pretrained --checkpoint --random-init is required", err)
        # Labels that do not fit: one error line, nothing written.
        labels = self.root / "three.txt"
        labels.write_text("a\nb\nc\n")
        _, err = script(
            "export_classifier.py", "--timm", "test_resnet", "--random-init", "--num-classes", 5,
            "--labels", labels, "--input-size", S, "--out", out, expect=1,
        )
        self.assertEqual(err.strip().splitlines(), [f"error: --labels {labels}: 3 lines for 5 logits"])
        self.assertFalse(out.exists() and any(out.iterdir()), "an export that failed wrote files")
        _, err = script("export_classifier.py", "--timm", "no_such_net", "--random-init", "--out", out, expect=1)
        self.assertTrue(err.startswith("error: --timm no_such_net: not a timm model name"), err)
        bad = self.root / "bad.pth"
        bad.write_bytes(b"not a checkpoint")
        _, err = script("export_classifier.py", "--torchvision", "resnet18", "--checkpoint", bad, "--out", out, expect=1)
        self.assertTrue(err.startswith(f"error: --checkpoint {bad}: cannot read it"), err)
        _, err = script("export_clip.py", "--open-clip", "no-such-clip", "--random-init", "--out", out, expect=1)
        self.assertTrue(err.startswith("error: --open-clip no-such-clip: not an open_clip model name"), err)
        _, err = script("export_clip.py", "--open-clip", "ViT-B-32", "--out", out, expect=2)
        self.assertIn("give the weights with --pretrained", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
