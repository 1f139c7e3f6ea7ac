"""A notebook-sized tour of the probelog Python package: a probe set, an index, two transformers
classifiers probed from Python (built from configs, random weights), a search by entry and one by
raw logits. With --check-cli PATH it also runs probelog-tool's search on the same file and checks
that the results are the same.

    pip install "./python[torch]" transformers
    python python/examples/quickstart.py [--dir DIR] [--check-cli target/release/probelog-tool]
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import transformers

import probelog

ap = argparse.ArgumentParser()
ap.add_argument("--dir", default=None)
ap.add_argument("--check-cli", default=None)
args = ap.parse_args()
work = Path(args.dir or tempfile.mkdtemp())

# 1. A probe set. Real ones come from `probelog-tool probes build --images DIR --out probes.pset`;
#    here, 64 random 32x32 images.
rng = np.random.default_rng(0)
pixels = rng.integers(0, 256, size=(64, 3, 32, 32), dtype=np.uint8)
probes = probelog.ProbeSet.from_pixels([f"probe-{i}.png" for i in range(64)], pixels)
probes.write(str(work / "probes.pset"))

# 2. An index for that probe set.
hub = str(work / "hub.plog")
probelog.create(hub, probes=str(work / "probes.pset"))

# 3. Two classifiers, probed from Python: no export step. Labels come from config.id2label.
labels = ["cat", "dog", "car", "tree", "boat"]
vit = transformers.ViTForImageClassification(transformers.ViTConfig(
    image_size=32, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
    intermediate_size=96, num_labels=5, id2label=dict(enumerate(labels)),
    label2id={l: i for i, l in enumerate(labels)}))
resnet = transformers.ResNetForImageClassification(transformers.ResNetConfig(
    embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=3,
    id2label={0: "dog", 1: "cat", 2: "plane"}, label2id={"dog": 0, "cat": 1, "plane": 2}))
mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
with probelog.Writer(hub) as w:                     # one atomic commit for both
    for name, model in [("vit-tiny", vit), ("resnet-tiny", resnet)]:
        logits = probelog.probe(model, probes, batch_size=32, mean=mean, std=std, progress=False)
        w.add_model(name, logits, meta={"arch": name.split("-")[0]}, source=f"config://{name}")

# 4. Search.
idx = probelog.Index(hub)
print(idx, [(m.name, m.logit_count) for m in idx.models])
by_entry = idx.search(1, top=5)                     # what else behaves like vit-tiny's "dog"?
for h in by_entry:
    print(f"  {h.rank}. entry {h.entry}: {h.model} logit {h.logit} ({h.label}) score {h.score:.4f}")
query = probelog.probe(resnet, probes, mean=mean, std=std, progress=False)[:, 0]
by_logits = idx.search(query, top=3, per_model=True)
print("raw-logit query:", [(h.model, h.label, round(h.score, 4)) for h in by_logits])

# 5. The same searches through the command line, on the same file.
if args.check_cli:
    np.save(work / "q.npy", np.asarray(query, dtype=np.float32))
    for cli_args, hits in [(["--entry", "1", "--top", "5"], by_entry),
                           (["--query-logits", str(work / "q.npy"), "--top", "3", "--per-model"],
                            by_logits)]:
        out = json.loads(subprocess.run([args.check_cli, "search", hub, *cli_args, "--json"],
                                        check=True, capture_output=True, text=True).stdout)
        cli = [(r["entry"], r["model"], r["label"]) for r in out["results"]]
        assert cli == [(h.entry, h.model, h.label) for h in hits], (cli, hits)
        assert np.allclose([r["score"] for r in out["results"]], [h.score for h in hits], atol=1e-5)
    print("the CLI's results are the same")
