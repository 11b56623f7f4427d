//! WordPiece tokenisation with our own length policy.
//!
//! The packaged `tokenizer.json` pads every input to 128 tokens and silently cuts at 128.
//! Both are switched off here: a single text needs no padding (the encoder runs one
//! sequence at a time, so there is nothing to align), and long prompts are shortened by
//! [`head_tail`] instead of losing their end, because the end of a prompt (the actual
//! question after a pasted document) often decides its intent.

use std::path::Path;

use tokenizers::Tokenizer;

use super::ClassifyError;

/// Bytes of text kept per token of the limit before tokenising (see [`encode`]).
const BYTES_PER_TOKEN: usize = 256;

/// A tokenised text ready for the encoder.
pub(crate) struct Tokens {
    /// Token ids including `[CLS]` and `[SEP]`.
    pub ids: Vec<u32>,
    /// Whether wordpieces were dropped to fit the limit.
    pub truncated: bool,
}

pub(crate) fn load(path: &Path) -> Result<Tokenizer, ClassifyError> {
    let mut tok = Tokenizer::from_file(path).map_err(|e| ClassifyError::InvalidModel {
        path: path.to_path_buf(),
        reason: format!("tokenizer.json: {e}"),
    })?;
    tok.with_padding(None);
    tok.with_truncation(None)
        .map_err(|e| ClassifyError::Tokenizer(e.to_string()))?;
    Ok(tok)
}

/// Tokenises `text` (adding `[CLS]`/`[SEP]`) and applies [`head_tail`] with `max_tokens`.
pub(crate) fn encode(
    tok: &Tokenizer,
    text: &str,
    max_tokens: usize,
) -> Result<Tokens, ClassifyError> {
    if text.trim().is_empty() {
        return Err(ClassifyError::EmptyText);
    }
    // Tokenising a megabyte prompt only to keep 256 of its wordpieces would hold a worker
    // for a long time, so very long texts are first cut to a head and a tail of bytes.
    // A wordpiece never spans more than BYTES_PER_TOKEN bytes in practice (BERT's
    // WordPiece maps any word over 100 characters to a single [UNK]), so both halves still
    // hold more wordpieces than `head_tail` keeps.
    let budget = max_tokens * BYTES_PER_TOKEN;
    let cut = text.len() > budget;
    let owned;
    let text = if cut {
        let head = &text[..text.floor_char_boundary(budget / 2)];
        let tail = &text[text.ceil_char_boundary(text.len() - budget / 2)..];
        owned = format!("{head} {tail}");
        owned.as_str()
    } else {
        text
    };
    let enc = tok
        .encode(text, true)
        .map_err(|e| ClassifyError::Tokenizer(e.to_string()))?;
    let ids = enc.get_ids();
    let truncated = cut || ids.len() > max_tokens;
    let ids = if ids.len() > max_tokens {
        head_tail(ids, max_tokens)
    } else {
        ids.to_vec()
    };
    Ok(Tokens { ids, truncated })
}

/// Keeps `[CLS]`, the first ⌈(max−2)/2⌉ and the last ⌊(max−2)/2⌋ wordpieces, and `[SEP]`.
///
/// Head + tail is the strongest simple policy for long-text classification in Sun et al.,
/// "How to Fine-Tune BERT for Text Classification?" (2019), and prompts often put the
/// instruction at one end and pasted material in the middle. `ids` must start with
/// `[CLS]` and end with `[SEP]`, and `max` must be at least 3.
pub(crate) fn head_tail(ids: &[u32], max: usize) -> Vec<u32> {
    debug_assert!(max >= 3 && ids.len() > max);
    let body = &ids[1..ids.len() - 1];
    let keep = max - 2;
    let head = keep.div_ceil(2);
    let tail = keep - head;
    let mut out = Vec::with_capacity(max);
    out.push(ids[0]);
    out.extend_from_slice(&body[..head]);
    out.extend_from_slice(&body[body.len() - tail..]);
    out.push(ids[ids.len() - 1]);
    out
}

#[cfg(test)]
mod tests {
    use super::head_tail;

    #[test]
    fn head_tail_keeps_both_ends_and_specials() {
        let ids: Vec<u32> = (0..20).collect(); // 0 = CLS, 19 = SEP
        let out = head_tail(&ids, 8);
        assert_eq!(out, vec![0, 1, 2, 3, 16, 17, 18, 19]);
        let out = head_tail(&ids, 7);
        assert_eq!(out, vec![0, 1, 2, 3, 17, 18, 19]);
    }
}
