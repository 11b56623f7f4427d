//! Loading a BERT-family model folder into the layouts the encoder's forward pass wants.
//!
//! candle reads the weights (safetensors through `VarBuilder`, F32); they
//! are then copied out once: Q, K and V concatenated into one fused layer (Q pre-scaled
//! by 1/sqrt(head size)), the linear layers packed by [`crate::kernels::qgemm`], and token type 0
//! folded into the position embeddings. Only what the forward pass supports is accepted
//! (absolute positions, erf GELU, head sizes 16/32/64/128); anything else is refused at
//! load with [`ClassifyError::InvalidModel`] rather than computed wrongly.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::ClassifyError;
use crate::kernels::bert::{Layer, LayerNorm, Weights};
use crate::kernels::qgemm::{Linear, Precision};

/// The subset of a Hugging Face BERT `config.json` this forward pass depends on.
#[derive(Deserialize)]
struct BertConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// Reads `config.json` and `model.safetensors` from `dir` and checks that this forward
/// pass can run the model reading up to `max_tokens` tokens at `precision`.
pub(crate) fn load(
    dir: &Path,
    max_tokens: usize,
    precision: Precision,
) -> Result<Weights, ClassifyError> {
    let invalid = |reason: String| ClassifyError::InvalidModel {
        path: dir.to_path_buf(),
        reason,
    };
    let cfg_path = dir.join("config.json");
    let raw = std::fs::read_to_string(&cfg_path).map_err(|source| ClassifyError::ModelFile {
        path: cfg_path.clone(),
        source,
    })?;
    let cfg: BertConfig =
        serde_json::from_str(&raw).map_err(|e| invalid(format!("config.json: {e}")))?;
    if cfg.hidden_act != "gelu" {
        return Err(invalid(format!(
            "hidden_act {:?} is not supported (only \"gelu\")",
            cfg.hidden_act
        )));
    }
    if cfg
        .position_embedding_type
        .as_deref()
        .is_some_and(|p| p != "absolute")
    {
        return Err(invalid(
            "only absolute position embeddings are supported".into(),
        ));
    }
    let head_dim = cfg.hidden_size / cfg.num_attention_heads.max(1);
    if !cfg
        .hidden_size
        .is_multiple_of(cfg.num_attention_heads.max(1))
        || !matches!(head_dim, 16 | 32 | 64 | 128)
    {
        return Err(invalid(format!(
            "head size {head_dim} is not one of 16, 32, 64, 128"
        )));
    }
    if max_tokens < 3 || max_tokens > cfg.max_position_embeddings {
        return Err(ClassifyError::InvalidConfig(format!(
            "max_tokens {} must be in 3..={}",
            max_tokens, cfg.max_position_embeddings
        )));
    }
    let st = dir.join("model.safetensors");
    // Read, not memory-mapped: the weights are copied out into their packed layouts
    // once, so a map would save nothing but would need `unsafe` (a file truncated
    // under a map is undefined behaviour).
    let bytes = std::fs::read(&st).map_err(|source| ClassifyError::ModelFile {
        path: st.clone(),
        source,
    })?;
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)?;
    load_weights(&vb, &cfg, precision).map_err(|e| invalid(format!("model.safetensors: {e}")))
}

fn load_weights(
    vb: &VarBuilder,
    cfg: &BertConfig,
    precision: Precision,
) -> candle_core::Result<Weights> {
    let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
        vb.clone()
    } else {
        vb.pp("bert")
    };
    let (h, inter) = (cfg.hidden_size, cfg.intermediate_size);
    let get = |shape: &[usize], name: &str| -> candle_core::Result<Vec<f32>> {
        vb.get(shape, name)?.flatten_all()?.to_vec1::<f32>()
    };
    let ln = |prefix: &str| -> candle_core::Result<LayerNorm> {
        // Old BERT checkpoints name the layer-norm parameters gamma/beta.
        let (g, b) = if vb.contains_tensor(&format!("{prefix}.weight")) {
            ("weight", "bias")
        } else {
            ("gamma", "beta")
        };
        Ok(LayerNorm {
            gamma: get(&[h], &format!("{prefix}.{g}"))?,
            beta: get(&[h], &format!("{prefix}.{b}"))?,
        })
    };
    let linear = |prefix: &str, k: usize, n: usize| -> candle_core::Result<Linear> {
        Ok(Linear::new(
            get(&[n, k], &format!("{prefix}.weight"))?,
            get(&[n], &format!("{prefix}.bias"))?,
            k,
            n,
            precision,
        ))
    };
    let word = get(&[cfg.vocab_size, h], "embeddings.word_embeddings.weight")?;
    let pos = get(
        &[cfg.max_position_embeddings, h],
        "embeddings.position_embeddings.weight",
    )?;
    let type0 = vb
        .get(
            (cfg.type_vocab_size, h),
            "embeddings.token_type_embeddings.weight",
        )?
        .get(0)?
        .to_vec1::<f32>()?;
    let pos_type = pos
        .chunks_exact(h)
        .flat_map(|row| row.iter().zip(&type0).map(|(p, t)| p + t))
        .collect();
    let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
    for i in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{i}");
        let (mut w, mut b) = (Vec::with_capacity(3 * h * h), Vec::with_capacity(3 * h));
        // Scaling Q by 1/sqrt(head size) here saves a multiply per attention score.
        let q_scale = 1.0 / ((h / cfg.num_attention_heads) as f32).sqrt();
        for part in ["query", "key", "value"] {
            let s = if part == "query" { q_scale } else { 1.0 };
            w.extend(
                get(&[h, h], &format!("{p}.attention.self.{part}.weight"))?
                    .iter()
                    .map(|v| v * s),
            );
            b.extend(
                get(&[h], &format!("{p}.attention.self.{part}.bias"))?
                    .iter()
                    .map(|v| v * s),
            );
        }
        layers.push(Layer {
            qkv: Linear::new(w, b, h, 3 * h, precision),
            attn_out: linear(&format!("{p}.attention.output.dense"), h, h)?,
            ln_attn: ln(&format!("{p}.attention.output.LayerNorm"))?,
            up: linear(&format!("{p}.intermediate.dense"), h, inter)?,
            down: linear(&format!("{p}.output.dense"), inter, h)?,
            ln_out: ln(&format!("{p}.output.LayerNorm"))?,
        });
    }
    #[cfg(target_arch = "x86_64")]
    let avx512 = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    Ok(Weights {
        hidden: h,
        heads: cfg.num_attention_heads,
        intermediate: inter,
        eps: cfg.layer_norm_eps as f32,
        word,
        pos_type,
        ln_emb: ln("embeddings.LayerNorm")?,
        layers,
        avx512,
    })
}
