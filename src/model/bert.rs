//! The sentence encoder's forward pass (all-MiniLM-L6-v2 is a BERT), one
//! sentence at a time, with its matrix weights in 8 bits.
//!
//! Why not candle-transformers' `BertModel`, which it replaced: a sentence
//! is a few dozen word pieces, so each matrix product reads far more weight
//! than activation, and with f32 weights gemm repacked each weight matrix on
//! every call (two fifths of the encoder's time in a profile). Q8_0 weights
//! are a quarter of the bytes and run on the CPU's 8-bit dot products (VNNI)
//! where it has them: the matrix products take about 2.5 times less time.
//! The vectors differ from f32's by a little (cosine 0.998 on average over
//! the test split's lines, 0.991 at least), so the caches of vectors are
//! keyed by `encoder::ENCODING`, which says so.
//!
//! One sentence at a time, never a padded batch: a session encodes one
//! utterance, and encoding the tuning split the same way makes its vectors
//! exactly those a session would make for the same words.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder, layer_norm};
use candle_transformers::models::bert::{Config, HiddenAct};

/// candle's 8-bit kernels for many rows (the VNNI ones) take inputs whose
/// length is a multiple of this; shorter ones are padded with zeros, which
/// add nothing to a dot product.
const BLOCK: usize = 256;

/// A dense layer, y = W·x + b, with W in Q8_0.
struct Linear {
    weight: QMatMul,
    bias: Tensor,
    inputs: usize,
    padded: usize,
}

impl Linear {
    /// A layer from its f32 weight (outputs × inputs) and bias.
    fn new(weight: Tensor, bias: Tensor) -> Result<Linear> {
        let (_, inputs) = weight.dims2()?;
        let padded = inputs.div_ceil(BLOCK) * BLOCK;
        let weight = weight.pad_with_zeros(1, 0, padded - inputs)?;
        Ok(Linear {
            weight: QMatMul::from_qtensor(QTensor::quantize(&weight, GgmlDType::Q8_0)?)?,
            bias,
            inputs,
            padded,
        })
    }

    fn load(vb: VarBuilder, inputs: usize, outputs: usize) -> Result<Linear> {
        Linear::new(
            vb.get((outputs, inputs), "weight")?,
            vb.get(outputs, "bias")?,
        )
    }

    /// `xs` is pieces × inputs.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let padded = xs.pad_with_zeros(D::Minus1, 0, self.padded - self.inputs)?;
        self.weight.forward(&padded)?.broadcast_add(&self.bias)
    }
}

/// One of the encoder's layers: self-attention, then a feed-forward
/// block, each added to its input and normalised (BERT's post-norm).
struct Layer {
    /// Query, key and value in one product (query pre-scaled by
    /// 1/√head size, which the attention would otherwise do).
    query_key_value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, config: &Config) -> Result<Layer> {
        let (hidden, inner, eps) = (
            config.hidden_size,
            config.intermediate_size,
            config.layer_norm_eps,
        );
        let attention = vb.pp("attention");
        let own = attention.pp("self");
        let scale = 1.0 / ((hidden / config.num_attention_heads) as f64).sqrt();
        let part = |name: &str| -> Result<(Tensor, Tensor)> {
            let vb = own.pp(name);
            Ok((vb.get((hidden, hidden), "weight")?, vb.get(hidden, "bias")?))
        };
        let (query_weight, query_bias) = part("query")?;
        let (key_weight, key_bias) = part("key")?;
        let (value_weight, value_bias) = part("value")?;
        let query_key_value = Linear::new(
            Tensor::cat(&[(query_weight * scale)?, key_weight, value_weight], 0)?,
            Tensor::cat(&[(query_bias * scale)?, key_bias, value_bias], 0)?,
        )?;
        Ok(Layer {
            query_key_value,
            attention_out: Linear::load(attention.pp("output.dense"), hidden, hidden)?,
            attention_norm: layer_norm(hidden, eps, attention.pp("output.LayerNorm"))?,
            up: Linear::load(vb.pp("intermediate.dense"), hidden, inner)?,
            down: Linear::load(vb.pp("output.dense"), inner, hidden)?,
            out_norm: layer_norm(hidden, eps, vb.pp("output.LayerNorm"))?,
        })
    }

    /// `xs` is pieces × hidden.
    fn forward(&self, xs: &Tensor, heads: usize) -> Result<Tensor> {
        let (pieces, hidden) = xs.dims2()?;
        let head_size = hidden / heads;
        let qkv = self.query_key_value.forward(xs)?;
        // pieces × hidden → heads × pieces × head size
        let split = |at: usize| -> Result<Tensor> {
            qkv.narrow(1, at * hidden, hidden)?
                .reshape((pieces, heads, head_size))?
                .transpose(0, 1)?
                .contiguous()
        };
        let (query, key, value) = (split(0)?, split(1)?, split(2)?);
        let scores = query.matmul(&key.t()?)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights
            .matmul(&value)?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((pieces, hidden))?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + xs)?)?;
        let inner = gelu(&self.up.forward(&attended)?)?;
        self.out_norm
            .forward(&(self.down.forward(&inner)? + attended)?)
    }
}

/// GELU as the model was trained with it, x·Φ(x) with the exact (erf)
/// normal distribution: candle's `gelu_erf` calls libm's erf, a fifth of
/// the encoder's time, where this approximation is a few multiplications.
fn gelu(xs: &Tensor) -> Result<Tensor> {
    let values = xs.flatten_all()?.to_vec1::<f32>()?;
    let values: Vec<f32> = values
        .into_iter()
        .map(|x| 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)))
        .collect();
    Tensor::from_vec(values, xs.shape(), xs.device())
}

/// The error function by a rational function of x² (the published
/// approximation in Eigen and XLA), within about 1e-7 of it for f32 and
/// without a branch, so the compiler vectorises the loop above.
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = [
        -2.726_142_3e-10,
        2.770_681_4e-08,
        -2.101_024e-06,
        -5.692_506_4e-05,
        -7.349_906_3e-04,
        -2.954_6e-3,
        -1.609_603_3e-02,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * x2 + c);
    let q = [
        -1.456_607_2e-05,
        -2.133_740_6e-04,
        -1.682_827e-03,
        -7.373_329e-03,
        -1.426_474e-02,
    ]
    .iter()
    .fold(0.0, |acc, c| acc * x2 + c);
    x * p / q
}

/// all-MiniLM-L6-v2's encoder, loaded.
pub struct Bert {
    word_embeddings: Tensor,
    /// Each position's embedding plus the first segment's (a sentence is
    /// all one segment): added to the word pieces' embeddings.
    position_embeddings: Tensor,
    embedding_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
}

impl Bert {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Bert> {
        if config.hidden_act != HiddenAct::Gelu {
            candle_core::bail!("only GELU (erf) activations are supported");
        }
        let hidden = config.hidden_size;
        let embeddings = vb.pp("embeddings");
        let segment = embeddings
            .get(
                (config.type_vocab_size, hidden),
                "token_type_embeddings.weight",
            )?
            .narrow(0, 0, 1)?;
        let position_embeddings = embeddings
            .get(
                (config.max_position_embeddings, hidden),
                "position_embeddings.weight",
            )?
            .broadcast_add(&segment)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            word_embeddings: embeddings
                .get((config.vocab_size, hidden), "word_embeddings.weight")?,
            position_embeddings,
            embedding_norm: layer_norm(hidden, config.layer_norm_eps, embeddings.pp("LayerNorm"))?,
            layers,
            heads: config.num_attention_heads,
        })
    }

    /// The last hidden states of one sentence's word pieces
    /// (pieces × hidden).
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let device = self.word_embeddings.device();
        let ids = Tensor::new(ids, device)?;
        let pieces = ids.dim(0)?;
        let embedded = (self.word_embeddings.index_select(&ids, 0)?
            + self.position_embeddings.narrow(0, 0, pieces)?)?;
        let mut hidden = self.embedding_norm.forward(&embedded)?;
        for layer in &self.layers {
            hidden = layer.forward(&hidden, self.heads)?;
        }
        debug_assert_eq!(hidden.dtype(), DType::F32);
        Ok(hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_matches_its_tabled_values() {
        for (x, expected) in [
            (0.0, 0.0),
            (0.1, 0.112_462_92),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (1.5, 0.966_105_1),
            (2.0, 0.995_322_3),
            (3.0, 0.999_977_9),
            (5.0, 1.0),
            (40.0, 1.0),
        ] {
            assert!((erf(x) - expected).abs() < 1e-6, "erf({x}) = {}", erf(x));
            assert!((erf(-x) + expected).abs() < 1e-6, "erf(-{x}) = {}", erf(-x));
        }
    }
}
