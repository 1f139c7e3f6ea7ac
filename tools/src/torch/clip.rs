//! Text queries through a CLIP-style text encoder: a Hugging Face `tokenizer.json` and a
//! TorchScript module.
//!
//! The interface the text encoder must follow: input int64 token ids `[N, T]`, plus the int64
//! attention mask `[N, T]` (1 for tokens, 0 for padding) when its `forward` takes two inputs;
//! output `[N, d]` (or `[d]` for one text). The ids are the tokenizer's, special tokens
//! included, padded (on the right) or truncated to T. The pad id is the one the tokenizer.json
//! declares in its `padding` section, else 0, as in OpenAI's CLIP.
//!
//! With [`MaskArg::Auto`] the module is first given the ids alone; only when TorchScript
//! answers that an argument is missing is it run again with the mask. Any other failure is
//! reported as it is.

use std::path::Path;

use anyhow::{Result, anyhow, bail, ensure};
use tch::{CModule, Device, Kind, Tensor};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use super::{MaskArg, TextEmbedding, TextSpec, device, torch_message};

/// A text's token ids and attention mask, both of length T.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<i64>,
    pub mask: Vec<i64>,
}

impl Tokens {
    /// Tokens before the padding.
    pub fn unpadded(&self) -> usize {
        self.mask.iter().filter(|&&m| m != 0).count()
    }
}

/// Reads a `tokenizer.json` and sets it to pad and truncate to `context_length`.
pub fn load_tokenizer(path: &Path, context_length: usize) -> Result<Tokenizer> {
    ensure!(context_length > 0, "--context-length must be at least 1");
    ensure!(
        path.is_file(),
        "--tokenizer {}: no such file",
        path.display()
    );
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| {
        anyhow!(
            "--tokenizer {}: not a Hugging Face tokenizer.json: {}",
            path.display(),
            first_line(&e.to_string())
        )
    })?;
    let (pad_id, pad_type_id, pad_token) = match tokenizer.get_padding() {
        Some(p) => (p.pad_id, p.pad_type_id, p.pad_token.clone()),
        None => (0, 0, tokenizer.id_to_token(0).unwrap_or_default()),
    };
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(context_length),
        direction: PaddingDirection::Right,
        pad_to_multiple_of: None,
        pad_id,
        pad_type_id,
        pad_token,
    }));
    tokenizer
        .with_truncation(Some(TruncationParams {
            direction: TruncationDirection::Right,
            max_length: context_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        }))
        .map_err(|e| {
            anyhow!(
                "--tokenizer {}: cannot truncate to {context_length} tokens: {}",
                path.display(),
                first_line(&e.to_string())
            )
        })?;
    Ok(tokenizer)
}

/// Tokenizes `text` (special tokens added) to exactly the tokenizer's fixed length.
pub fn tokenize(tokenizer: &Tokenizer, text: &str) -> Result<Tokens> {
    let enc = tokenizer
        .encode(text, true)
        .map_err(|e| anyhow!("cannot tokenize {text:?}: {}", first_line(&e.to_string())))?;
    Ok(Tokens {
        ids: enc.get_ids().iter().map(|&i| i64::from(i)).collect(),
        mask: enc
            .get_attention_mask()
            .iter()
            .map(|&m| i64::from(m))
            .collect(),
    })
}

/// Tokenizes `text`, loads the text encoder and runs it: the embedding `[d]`.
pub fn embed_text(text: &str, spec: &TextSpec<'_>) -> Result<TextEmbedding> {
    let tokenizer = load_tokenizer(spec.tokenizer, spec.context_length)?;
    let encoder = spec.encoder;
    ensure!(
        encoder.is_file(),
        "--clip-text {}: no such file",
        encoder.display()
    );
    let device = device::resolve(spec.device)?;
    let mut module = CModule::load_on_device(encoder, device).map_err(|e| {
        anyhow!(
            "--clip-text {}: cannot load TorchScript module: {}",
            encoder.display(),
            torch_message(&e)
        )
    })?;
    module.set_eval();
    let tokens = tokenize(&tokenizer, text)?;
    let (out, with_mask) = run_encoder(&module, &tokens, device, spec.mask)
        .map_err(|e| anyhow!("--clip-text {}: {e}", encoder.display()))?;
    let values =
        check_output(&out).map_err(|e| anyhow!("--clip-text {}: {e}", encoder.display()))?;
    Ok(TextEmbedding {
        values,
        tokens: tokens.unpadded(),
        with_mask,
        device: match device {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".to_string(),
        },
    })
}

/// Runs the encoder on one text: ids alone or with the mask, as `mask` says. Returns the output
/// and whether the mask was given.
fn run_encoder(
    module: &CModule,
    tokens: &Tokens,
    device: Device,
    mask: MaskArg,
) -> Result<(Tensor, bool)> {
    let t = tokens.ids.len() as i64;
    let tensor = |v: &[i64]| {
        Tensor::f_from_slice(v)
            .and_then(|x| x.f_view([1, t]))
            .and_then(|x| x.f_to_kind(Kind::Int64))
            .and_then(|x| x.f_to_device(device))
            .map_err(|e| anyhow!("cannot build the input tensor: {}", torch_message(&e)))
    };
    let ids = tensor(&tokens.ids)?;
    let forward = |inputs: &[Tensor]| tch::no_grad(|| module.forward_ts(inputs));
    let with_mask = |ids: Tensor| -> Result<(Tensor, bool)> {
        let out = forward(&[ids, tensor(&tokens.mask)?]).map_err(|e| {
            anyhow!(
                "the text encoder failed on token ids and attention mask (int64 [1, {t}] \
                 each): {}",
                torch_message(&e)
            )
        })?;
        Ok((out, true))
    };
    match mask {
        MaskArg::Always => with_mask(ids),
        MaskArg::Never | MaskArg::Auto => match forward(std::slice::from_ref(&ids)) {
            Ok(out) => Ok((out, false)),
            Err(e) if mask == MaskArg::Auto && missing_argument(&torch_message(&e)) => {
                with_mask(ids)
            }
            Err(e) => Err(anyhow!(
                "the text encoder failed on token ids (int64 [1, {t}]): {}",
                torch_message(&e)
            )),
        },
    }
}

/// Whether a TorchScript error says that `forward` wants another argument.
fn missing_argument(message: &str) -> bool {
    message.contains("missing value for argument")
}

/// The text encoder's output as `[d]`: `[1, d]` or `[d]`, finite.
fn check_output(out: &Tensor) -> Result<Vec<f32>> {
    let shape = out.size();
    let d = match shape.as_slice() {
        [1, d] | [d] => usize::try_from(*d).unwrap_or(0),
        _ => bail!(
            "the text encoder returned shape {shape:?} for one text; a text encoder must return \
             [N, d] embeddings, here [1, d]"
        ),
    };
    ensure!(d > 0, "the text encoder returned an empty embedding");
    let host = out
        .f_to_device(Device::Cpu)
        .and_then(|t| t.f_to_kind(Kind::Float))
        .and_then(|t| t.f_contiguous())
        .map_err(|e| {
            anyhow!(
                "cannot read the text encoder's output: {}",
                torch_message(&e)
            )
        })?;
    let mut values = vec![0f32; d];
    host.f_copy_data(&mut values, d).map_err(|e| {
        anyhow!(
            "cannot read the text encoder's output: {}",
            torch_message(&e)
        )
    })?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        bail!("the text encoder returned {} for dimension {i}", values[i]);
    }
    Ok(values)
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WordLevel tokenizer with whitespace splitting, [UNK] and a [CLS] ... [SEP] template,
    /// with `padding` as its padding section.
    fn tokenizer_json(padding: &str) -> String {
        include_str!("../../tests/data/word-level-tokenizer.json")
            .replace("\"padding\": null", &format!("\"padding\": {padding}"))
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn pads_truncates_and_maps_unknown_words() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "tokenizer.json", &tokenizer_json("null"));
        let tok = load_tokenizer(&path, 8).unwrap();
        let t = tokenize(&tok, "A photo of a DOG").unwrap();
        assert_eq!(t.ids, [1, 4, 5, 6, 4, 7, 2, 0]);
        assert_eq!(t.mask, [1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(t.unpadded(), 7);
        let t = tokenize(&tok, "a horse").unwrap();
        assert_eq!(t.ids, [1, 4, 3, 2, 0, 0, 0, 0]);
        // Truncated to T, the closing special token kept.
        let tok = load_tokenizer(&path, 4).unwrap();
        let t = tokenize(&tok, "a photo of a dog").unwrap();
        assert_eq!(t.ids, [1, 4, 5, 2]);
        assert_eq!(t.mask, [1; 4]);
    }

    #[test]
    fn uses_the_declared_pad_id() {
        let dir = tempfile::tempdir().unwrap();
        let padding = r#"{"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": null, "pad_id": 2, "pad_type_id": 0, "pad_token": "[SEP]"}"#;
        let path = write(dir.path(), "tokenizer.json", &tokenizer_json(padding));
        let tok = load_tokenizer(&path, 6).unwrap();
        let t = tokenize(&tok, "dog").unwrap();
        assert_eq!(t.ids, [1, 7, 2, 2, 2, 2]);
        assert_eq!(t.mask, [1, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn bad_tokenizers_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_tokenizer(&dir.path().join("none.json"), 77).unwrap_err();
        assert!(e.to_string().ends_with("none.json: no such file"), "{e}");
        let path = write(dir.path(), "bad.json", "{\"model\": 3");
        let e = load_tokenizer(&path, 77).unwrap_err().to_string();
        assert!(e.contains("not a Hugging Face tokenizer.json"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let path = write(dir.path(), "ok.json", &tokenizer_json("null"));
        assert!(load_tokenizer(&path, 0).is_err());
    }
}
