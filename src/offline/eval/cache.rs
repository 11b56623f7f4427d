//! An on-disk cache of prompt embeddings for `eval`, so a second run over the
//! same dataset skips the encoder (minutes on 2 cores for a few thousand prompts).
//!
//! One file per encoder setting under `target/eval-cache/`: its name is a hash
//! of what changes an embedding (the model's config and weight file sizes,
//! `max_tokens`, full or static mode and the table's size), so a different
//! model or setting never reads another's vectors. Records are
//! `sha256(text) ‖ dim × f32 LE`, appended as new texts are embedded; a torn
//! last record (a run killed mid-write) is ignored on load.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

pub type TextKey = [u8; 32];

pub fn text_key(text: &str) -> TextKey {
    Sha256::digest(text.as_bytes()).into()
}

pub struct EmbeddingCache {
    path: PathBuf,
    dim: usize,
    vectors: HashMap<TextKey, Vec<f32>>,
}

impl EmbeddingCache {
    /// Opens (or starts) the cache for this encoder setting in `dir`.
    pub fn open(
        dir: &Path,
        model_dir: &Path,
        max_tokens: usize,
        static_table: Option<&Path>,
        dim: usize,
    ) -> anyhow::Result<EmbeddingCache> {
        let mut h = Sha256::new();
        h.update(std::fs::read(model_dir.join("config.json")).unwrap_or_default());
        for f in ["model.safetensors", "tokenizer.json"] {
            let len = std::fs::metadata(model_dir.join(f)).map_or(0, |m| m.len());
            h.update(len.to_le_bytes());
        }
        h.update((max_tokens as u64).to_le_bytes());
        match static_table {
            Some(t) => {
                h.update(b"static");
                h.update(std::fs::metadata(t).map_or(0, |m| m.len()).to_le_bytes());
            }
            None => h.update(b"full"),
        }
        let digest = h.finalize();
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(format!("{name}-{dim}.bin"));
        let mut vectors = HashMap::new();
        if let Ok(bytes) = std::fs::read(&path) {
            let rec = 32 + 4 * dim;
            for r in bytes.chunks_exact(rec) {
                let mut key = [0u8; 32];
                key.copy_from_slice(&r[..32]);
                let v = r[32..]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                vectors.insert(key, v);
            }
        }
        Ok(EmbeddingCache { path, dim, vectors })
    }

    pub fn get(&self, key: &TextKey) -> Option<&Vec<f32>> {
        self.vectors.get(key)
    }

    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Adds vectors and appends them to the file.
    pub fn insert_all(&mut self, items: Vec<(TextKey, Vec<f32>)>) -> anyhow::Result<()> {
        let mut buf = Vec::with_capacity(items.len() * (32 + 4 * self.dim));
        for (k, v) in &items {
            anyhow::ensure!(v.len() == self.dim, "embedding of the wrong size");
            buf.extend_from_slice(k);
            for x in v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| format!("opening {}", self.path.display()))?;
        f.write_all(&buf)?;
        self.vectors.extend(items);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_survive_a_reopen_and_settings_do_not_mix() {
        let tmp = tempfile::tempdir().unwrap();
        let model = tmp.path().join("m");
        std::fs::create_dir_all(&model).unwrap();
        let dir = tmp.path().join("cache");
        let mut c = EmbeddingCache::open(&dir, &model, 256, None, 3).unwrap();
        c.insert_all(vec![(text_key("a"), vec![1.0, 2.0, 3.0])])
            .unwrap();
        let c = EmbeddingCache::open(&dir, &model, 256, None, 3).unwrap();
        assert_eq!(c.get(&text_key("a")), Some(&vec![1.0, 2.0, 3.0]));
        assert_eq!(c.get(&text_key("b")), None);
        let other = EmbeddingCache::open(&dir, &model, 128, None, 3).unwrap();
        assert!(other.is_empty());
    }
}
