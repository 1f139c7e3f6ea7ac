"""Helpers shared by export_clip.py and export_classifier.py: errors, checked tracing, the CLIP
BPE tokenizer.json, the check that a tokenizer.json gives the ids probelog-tool will feed, and
atomic output.

The interface probelog-tool expects (README, "Probing models with libtorch"):
- image models take float32 [N, 3, S, S], RGB in [0, 1], then (x - mean) / std per channel when
  `--mean`/`--std` are given, and return [N, K];
- text encoders take int64 ids [N, T] (and the int64 attention mask [N, T] when `forward` has two
  inputs) and return [N, d]. probelog-tool tokenizes with the tokenizer.json (special tokens
  added by its post-processor), truncates on the right to T keeping the special tokens, and pads
  on the right to T with the pad id of the file's `padding` section (0 when it has none).
"""

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


class ExportError(Exception):
    """A user-facing error: printed as one `error:` line, exit status 1."""


def main_guard(main):
    """Runs `main()`, turning ExportError into `error: ...` on stderr and exit status 1."""
    try:
        main()
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


def import_torch():
    try:
        import torch
    except ImportError as e:
        raise ExportError(
            f"cannot import torch ({e}); run tools/setup-python.sh and use .venv-py/bin/python"
        ) from None
    return torch


# Texts every exported tokenizer is checked on: prompts, case, punctuation, contractions, digits,
# accents, CJK, emoji, curly quotes, ligatures, full-width forms, HTML entities, whitespace, an
# empty text and texts longer than any context.
SAMPLE_TEXTS = [
    "a photo of a dog",
    "A PHOTO of   a Cat!!",
    "a blurry photo of the {} in a field.",
    "it's a dog's life, isn't it? we'll see; they'd've",
    "naïve café résumé, Ærøskøbing, straße",
    "北京的猫和狗",
    "🐶 emoji 🚀🚀 ✨",
    "123456 7.5kg 3/4 #1 100%",
    "C++ & Rust <3 >_< a-b_c",
    "http://example.com/a?b=c&d=e",
    "don’t “quote” me ‘please’",
    "ﬁne ﬂowers ĳssel ＦＵＬＬ－ｗｉｄｔｈ　ｔｅｘｔ",
    "tom &amp; jerry &lt;3 &quot;hi&quot; it&#39;s",
    "ΟΔΟΣ σοφός ΣΟΦΟΣ",
    "tab\tnew\nline\r\nend",
    "  leading and trailing  ",
    "",
    "x" * 300,
    " ".join(["word"] * 100),
    "a photo of " + ", ".join(f"object number {i}" for i in range(40)),
]


def clip_bpe_tokenizer(bpe_path, context_length):
    """A Hugging Face `tokenizers.Tokenizer` equal to OpenAI CLIP's BPE tokenizer (open_clip's
    `SimpleTokenizer`, clean="lower"), built from its `bpe_simple_vocab_16e6.txt.gz`.

    Ids: the 256 byte symbols, the same with `</w>`, one per merge, then <|startoftext|> (49406)
    and <|endoftext|> (49407), as in open_clip and in Hugging Face's openai/clip-* files. Text is
    cleaned as open_clip does where a normalizer can: ftfy's ligature, full-width and quote fixes
    (from ftfy's own tables), common HTML entities (twice, as open_clip unescapes twice), NFC,
    whitespace runs to one space, the final sigma, lower case. Padding: id 0, as open_clip pads;
    truncation keeps <|endoftext|> last, as open_clip does.
    """
    import gzip

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    # open_clip: the first line is a version header; 49152 - 256 - 2 merges follow.
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    if len(merges) != 48894 or any(len(m) != 2 for m in merges):
        raise ExportError(f"{bpe_path}: not CLIP's BPE merges file (expected 48894 merge pairs)")
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    ids = {token: i for i, token in enumerate(vocab)}
    if len(ids) != len(vocab):
        raise ExportError(f"{bpe_path}: the merges give duplicate tokens")

    tok = Tokenizer(
        models.BPE(
            vocab=ids,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token="<|endoftext|>",
        )
    )
    tok.normalizer = normalizers.Sequence(_open_clip_cleaning())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|startoftext|>", "<|endoftext|>"])
    sot, eot = ids["<|startoftext|>"], ids["<|endoftext|>"]
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        pair="<|startoftext|> $A <|endoftext|> $B:1 <|endoftext|>:1",
        special_tokens=[("<|startoftext|>", sot), ("<|endoftext|>", eot)],
    )
    tok.enable_padding(length=context_length, pad_id=0, pad_token=vocab[0])
    tok.enable_truncation(max_length=context_length)
    return tok


def bytes_to_unicode():
    """GPT-2's byte -> printable character table, as CLIP uses it."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# HTML entities open_clip's html.unescape most often meets; each pass replaces &amp; last so that
# "&amp;lt;" takes two passes, as with two html.unescape calls.
_HTML_ENTITIES = [
    ("&lt;", "<"),
    ("&gt;", ">"),
    ("&quot;", '"'),
    ("&#39;", "'"),
    ("&#x27;", "'"),
    ("&apos;", "'"),
    ("&nbsp;", "\u00a0"),
    ("&amp;", "&"),
]


def _open_clip_cleaning():
    """Normalizers that approximate open_clip's `whitespace_clean(basic_clean(text)).lower()`
    (ftfy.fix_text, html.unescape twice, whitespace runs to one space, str.lower)."""
    from tokenizers import Regex, normalizers

    steps = []
    try:
        import ftfy.chardata as chardata
    except ImportError:
        chardata = None
    if chardata is not None:
        # ftfy's fixers in ftfy's order: control characters, ligatures, character width, quotes.
        controls = "".join(f"\\x{{{c:x}}}" for c in sorted(chardata.CONTROL_CHARS))
        steps.append(normalizers.Replace(Regex(f"[{controls}]"), ""))
        for code, text in sorted(chardata.LIGATURES.items()):
            steps.append(normalizers.Replace(chr(code), text))
        for code, text in sorted(chardata.WIDTH_MAP.items()):
            steps.append(normalizers.Replace(chr(code), text))
        steps.append(normalizers.Replace(Regex(chardata.SINGLE_QUOTE_RE.pattern), "'"))
        steps.append(normalizers.Replace(Regex(chardata.DOUBLE_QUOTE_RE.pattern), '"'))
    steps.append(normalizers.NFC())
    for _ in range(2):
        steps.extend(normalizers.Replace(a, b) for a, b in _HTML_ENTITIES)
    steps.append(normalizers.Replace(Regex(r"\s+"), " "))
    # Python's str.lower() turns a capital sigma that ends a word into the final form.
    # Python's rule (Unicode Final_Sigma): after a cased letter, and not before case-ignorable
    # characters followed by a cased letter. Here the letter before must be adjacent.
    cased = r"[\p{Lu}\p{Ll}\p{Lt}]"
    ignorable = r"[\p{Mn}\p{Me}\p{Cf}\p{Lm}\p{Sk}'.:\x{b7}\x{2018}\x{2019}\x{2024}\x{2027}]"
    steps.append(
        normalizers.Replace(Regex(f"(?<={cased})\u03a3(?!{ignorable}*{cased})"), "\u03c2")
    )
    steps.append(normalizers.Lowercase())
    return steps


def set_fixed_padding(tok, context_length, pad_id, pad_token):
    """Declares `pad_id` in the tokenizer's `padding` section (probelog-tool pads with it) and
    truncation to `context_length`."""
    tok.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token)
    tok.enable_truncation(max_length=context_length)


def tool_token_ids(tokenizer_json, texts, context_length):
    """The ids and masks probelog-tool's `search --text` feeds for `texts`: the tokenizer.json's
    own pipeline, truncated on the right to T, padded on the right to T with the `padding`
    section's pad id (0 when there is none). Mirrors tools/src/torch/clip.rs."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    padding = tok.padding
    if padding is None:
        pad_id, pad_token = 0, tok.id_to_token(0) or ""
    else:
        pad_id, pad_token = padding["pad_id"], padding["pad_token"]
    tok.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token, direction="right")
    tok.enable_truncation(max_length=context_length, direction="right")
    encs = [tok.encode(t) for t in texts]
    return [e.ids for e in encs], [e.attention_mask for e in encs]


def check_token_ids(tokenizer_json, reference, texts, context_length):
    """Compares `tool_token_ids` with `reference(texts) -> [[int]]` (the model's own tokenizer).
    Returns a list of (text, expected, got) for the texts that differ."""
    got, _ = tool_token_ids(tokenizer_json, texts, context_length)
    want = reference(texts)
    return [(t, w, g) for t, w, g in zip(texts, want, got) if list(w) != list(g)]


def describe_mismatch(text, want, got):
    for i, (w, g) in enumerate(zip(want, got)):
        if w != g:
            return f"{text!r}: position {i}: the model's tokenizer gives {list(want[i:i + 6])}, tokenizer.json {list(got[i:i + 6])}"
    return f"{text!r}: lengths {len(want)} and {len(got)}"


def trace_checked(torch, module, example, checks, what, rtol=1e-4):
    """Traces `module` (eval mode, no grad) on the `example` inputs (a tuple), then runs the traced
    and the eager module on each tuple of `checks` (other batch sizes and contents) and requires
    equal shapes and values within rtol of the output's largest magnitude."""
    import warnings

    module.eval()
    with torch.no_grad():
        # Tracing warns about every shape-dependent branch; the checks below run the traced
        # module on the inputs probelog-tool gives (other batch sizes, same S or T) instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", torch.jit.TracerWarning)
            try:
                traced = torch.jit.trace(module, example, check_trace=False)
            except Exception as e:  # torch raises many types here
                raise ExportError(f"cannot trace the {what}: {first_line(e)}") from None
        for w in caught:
            if not issubclass(w.category, torch.jit.TracerWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        for inputs in checks:
            want = module(*inputs)
            got = traced(*inputs)
            if not isinstance(want, torch.Tensor) or not isinstance(got, torch.Tensor):
                raise ExportError(
                    f"the {what} returns {type(want).__name__}, not one tensor; probelog-tool "
                    "needs a module that returns one [N, K] tensor"
                )
            if want.shape != got.shape:
                raise ExportError(
                    f"the traced {what} returns shape {list(got.shape)} where the model returns "
                    f"{list(want.shape)} (for inputs of shape {[list(x.shape) for x in inputs]}); "
                    "the model has shape-dependent Python code that tracing froze"
                )
            scale = max(1.0, float(want.abs().max()))
            diff = float((want - got).abs().max())
            if not diff <= rtol * scale:
                raise ExportError(
                    f"the traced {what} differs from the model by {diff:.3g} (largest output "
                    f"{scale:.3g}) on inputs of shape {[list(x.shape) for x in inputs]}"
                )
    return traced


def first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def rgb(values):
    return ",".join(format_float(v) for v in values)


def format_float(v):
    return repr(float(v))


class Staging:
    """Files written into a temporary directory inside `out`, moved into `out` by `commit()` only
    when every check passed; otherwise `out` keeps what it had."""

    def __init__(self, out):
        self.out = Path(out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ExportError(f"--out {out}: cannot create the directory: {e.strerror}") from None
        self.tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=self.out))
        self.names = []

    def path(self, name):
        self.names.append(name)
        return self.tmp / name

    def commit(self):
        for name in self.names:
            os.replace(self.tmp / name, self.out / name)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return [self.out / n for n in self.names]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False


def write_json(path, value):
    Path(path).write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
