//! `bench model`'s yardstick: a bare llama-cpp-2 decoding loop, with none of
//! the backend's machinery. See [`super::EmbeddedModel::bare_decode`].

use super::reply::{PENALTY_WINDOW, sampler_chain};
use super::{Shared, decode, decode_failed, new_context};
use crate::model::{ModelError, Sampling};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use std::sync::mpsc;
use std::time::Instant;

/// A bare run, sent to the model's thread like every request.
pub(super) struct BareJob {
    pub prompt: String,
    pub sampling: Sampling,
    pub sequences: u32,
    /// (tokens of all sequences, milliseconds)
    pub done: mpsc::Sender<Result<(u32, f64), ModelError>>,
}

impl BareJob {
    pub(super) fn run(self, shared: &Shared) {
        let result = bare_decode(shared, &self.prompt, &self.sampling, self.sequences);
        let _ = self.done.send(result);
    }
}

fn bare_decode(
    shared: &Shared,
    prompt: &str,
    sampling: &Sampling,
    sequences: u32,
) -> Result<(u32, f64), ModelError> {
    let config = &shared.config;
    let width = config.batch_size.max(sequences);
    // One cache for all sequences: the prompt is stored once.
    let mut ctx = new_context(shared, config.context_size, width, sequences)?;
    let batch_error = |e| ModelError::Backend(format!("batch: {e}"));
    let vocab = shared.model.vocab();
    let tokens = vocab.tokenize(prompt.as_bytes(), true, false);
    let all: Vec<i32> = (0..sequences as i32).collect();

    // Reading the prompt is not what is measured: the backend's own code
    // does it. Its tokens belong to every sequence.
    let mut batch = LlamaBatch::new(width as usize, sequences as i32);
    let mut last = 0;
    for (i, chunk) in tokens.chunks(config.batch_size as usize).enumerate() {
        batch.clear();
        for (j, &token) in chunk.iter().enumerate() {
            let position = i * config.batch_size as usize + j;
            let wants_logits = position + 1 == tokens.len();
            batch
                .add(token, position as i32, &all, wants_logits)
                .map_err(batch_error)?;
        }
        decode(&mut ctx, &mut batch).map_err(decode_failed)?;
        last = batch.n_tokens() - 1;
    }

    let history = tokens.len().saturating_sub(PENALTY_WINDOW as usize);
    let mut chains: Vec<LlamaSampler> = (0..sequences)
        .map(|i| {
            let seeded = Sampling {
                seed: sampling.seed.wrapping_add(i),
                ..sampling.clone()
            };
            let mut chain = sampler_chain(&seeded, shared.model.n_vocab());
            chain.accept_many(&tokens[history..]);
            chain
        })
        .collect();
    // (sequence, where its logits are in the last batch, tokens it has made)
    let mut live: Vec<(usize, i32, u32)> = (0..sequences as usize).map(|s| (s, last, 0)).collect();
    let mut generated = 0;
    let started = Instant::now();
    while !live.is_empty() {
        batch.clear();
        let mut next = Vec::with_capacity(live.len());
        for &(seq, logits_at, made) in &live {
            if made >= sampling.max_tokens {
                continue;
            }
            let token = chains[seq].sample(&ctx, logits_at);
            if vocab.is_eog(token) {
                continue;
            }
            let position = (tokens.len() as u32 + made) as i32;
            batch
                .add(token, position, &[seq as i32], true)
                .map_err(batch_error)?;
            next.push((seq, batch.n_tokens() - 1, made + 1));
            generated += 1;
        }
        if next.is_empty() {
            break;
        }
        // The backend's decode takes the same lock: the same work.
        decode(&mut ctx, &mut batch).map_err(decode_failed)?;
        live = next;
    }
    Ok((generated, started.elapsed().as_secs_f64() * 1000.0))
}
