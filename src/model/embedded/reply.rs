//! One reply being sampled, a token at a time: its samplers, its text so
//! far, and when it is done. Whoever owns the llama.cpp context decodes the
//! tokens it picks: a conversation's own context (`serial`), or the shared
//! context where several conversations decode together (`batched`).

use super::super::{Completion, FinishReason, ModelError, Request, Sampling, Usage};
use super::super::{find_stop, safe_prefix_len};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use std::time::Instant;

/// Tokens of recent history the repetition penalty looks at.
pub(super) const PENALTY_WINDOW: i32 = 64;

pub(super) struct Reply {
    sampling: Sampling,
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
    text: String,
    /// Bytes of a character split across tokens, waiting for the rest.
    pending: Vec<u8>,
    /// How much of `text` has been streamed.
    shown: usize,
    completion_tokens: u32,
    finish_reason: FinishReason,
    prompt_tokens: u32,
    cached_prompt_tokens: u32,
    prefill_ms: u64,
    started: Instant,
}

impl Reply {
    /// Starts a reply to `request` once its `prompt` has been read
    /// (`cached` of its tokens were in the cache already).
    pub(super) fn new(
        model: &LlamaModel,
        request: &Request,
        prompt: &[LlamaToken],
        cached: usize,
        prefill_ms: u64,
    ) -> Result<Reply, ModelError> {
        let mut chain = sampler_chain(&request.sampling, model.n_vocab());
        let history = prompt.len().saturating_sub(PENALTY_WINDOW as usize);
        chain.accept_many(&prompt[history..]);
        let grammar = match &request.json_schema {
            Some(schema) => Some(grammar(model, schema)?),
            None => None,
        };
        Ok(Reply {
            sampling: request.sampling.clone(),
            chain,
            grammar,
            text: String::new(),
            pending: Vec::new(),
            shown: 0,
            completion_tokens: 0,
            finish_reason: FinishReason::Length,
            prompt_tokens: prompt.len() as u32,
            cached_prompt_tokens: cached as u32,
            prefill_ms,
            started: Instant::now(),
        })
    }

    /// Picks the next token from the logits at batch index `logits_at` and
    /// streams what it adds. Returns the token to decode next, or `None`
    /// when the reply is done: the end of text, a stop sequence, its token
    /// limit, or no `room` left in the context.
    pub(super) fn advance(
        &mut self,
        model: &LlamaModel,
        ctx: &LlamaContext<'_>,
        logits_at: i32,
        room: bool,
        on_delta: &mut dyn FnMut(&str),
    ) -> Option<LlamaToken> {
        if self.completion_tokens >= self.sampling.max_tokens || !room {
            return None;
        }
        let vocab = model.vocab();
        let token = next_token(ctx, &mut self.chain, self.grammar.as_mut(), logits_at);
        if vocab.is_eog(token) {
            self.finish_reason = FinishReason::Stop;
            return None;
        }
        self.completion_tokens += 1;
        vocab.token_to_piece_into(token, &mut self.pending, false, None);
        take_utf8(&mut self.pending, &mut self.text);
        if let Some((at, _)) = find_stop(&self.text, &self.sampling.stop) {
            self.text.truncate(at);
            self.finish_reason = FinishReason::StopSequence;
            return None;
        }
        let safe = safe_prefix_len(&self.text, &self.sampling.stop);
        if safe > self.shown {
            on_delta(&self.text[self.shown..safe]);
            self.shown = safe;
        }
        // The last token allowed is not decoded: nothing would read it.
        (self.completion_tokens < self.sampling.max_tokens).then_some(token)
    }

    /// The finished reply: what was held back is streamed.
    pub(super) fn finish(mut self, on_delta: &mut dyn FnMut(&str)) -> Completion {
        if self.finish_reason != FinishReason::StopSequence && !self.pending.is_empty() {
            self.text.push_str(&String::from_utf8_lossy(&self.pending));
        }
        if self.text.len() > self.shown {
            on_delta(&self.text[self.shown..]);
        }
        Completion {
            text: self.text,
            finish_reason: self.finish_reason,
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                cached_prompt_tokens: self.cached_prompt_tokens,
                completion_tokens: self.completion_tokens,
                estimated: false,
            },
            prefill_ms: self.prefill_ms,
            decode_ms: self.started.elapsed().as_millis() as u64,
        }
    }
}

/// Picks the next token and records it in the samplers' state.
///
/// With a grammar, it samples without the grammar first and checks only
/// the chosen token against it; only when that token is rejected is the
/// grammar applied to the whole vocabulary (as llama.cpp's own common
/// sampler does: a grammar over all 262,144 entries at every step is
/// several times slower).
fn next_token(
    ctx: &LlamaContext<'_>,
    chain: &mut LlamaSampler,
    grammar: Option<&mut LlamaSampler>,
    logits_at: i32,
) -> LlamaToken {
    let Some(grammar) = grammar else {
        // `sample` applies the chain and also accepts the token: accepting
        // it again would advance the sampler state twice.
        return chain.sample(ctx, logits_at);
    };
    let mut candidates = ctx.token_data_array_ith(logits_at);
    candidates.apply_sampler(chain);
    let mut token = selected(&candidates);
    let mut single = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
    single.apply_sampler(grammar);
    if !single.data.first().is_some_and(|d| d.logit().is_finite()) {
        let mut candidates = ctx.token_data_array_ith(logits_at);
        candidates.apply_sampler(grammar);
        candidates.apply_sampler(chain);
        token = selected(&candidates);
    }
    chain.accept(token);
    grammar.accept(token);
    token
}

fn grammar(model: &LlamaModel, schema: &serde_json::Value) -> Result<LlamaSampler, ModelError> {
    let gbnf = llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|e| {
        ModelError::Backend(format!("cannot turn the JSON schema into a grammar: {e}"))
    })?;
    LlamaSampler::grammar(model, &gbnf, "root")
        .map_err(|e| ModelError::Backend(format!("invalid grammar: {e}")))
}

pub(super) fn sampler_chain(sampling: &Sampling, n_vocab: i32) -> LlamaSampler {
    let mut samplers = Vec::new();
    // The penalty sampler visits the whole vocabulary at every step; at
    // 1.0 it changes nothing, so it is left out.
    if sampling.repeat_penalty != 1.0 {
        samplers.push(LlamaSampler::penalties(
            n_vocab,
            PENALTY_WINDOW,
            sampling.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if sampling.temperature <= 0.0 {
        samplers.push(LlamaSampler::greedy());
    } else {
        samplers.push(LlamaSampler::top_k(sampling.top_k as i32));
        samplers.push(LlamaSampler::top_p(sampling.top_p, 1));
        samplers.push(LlamaSampler::temp(sampling.temperature));
        samplers.push(LlamaSampler::dist(sampling.seed));
    }
    LlamaSampler::chain_simple(samplers)
}

fn selected(candidates: &LlamaTokenDataArray) -> LlamaToken {
    candidates
        .selected_token()
        .or_else(|| candidates.data.first().map(|d| d.id()))
        .expect("a sampler chain ending in greedy or dist selects a token")
}

/// Moves the complete UTF-8 characters at the start of `pending` into
/// `text`; a character split across tokens waits for its next bytes.
fn take_utf8(pending: &mut Vec<u8>, text: &mut String) {
    match std::str::from_utf8(pending) {
        Ok(s) => {
            text.push_str(s);
            pending.clear();
        }
        Err(e) if e.error_len().is_none() => {
            let valid = e.valid_up_to();
            text.push_str(std::str::from_utf8(&pending[..valid]).expect("checked valid"));
            pending.drain(..valid);
        }
        Err(_) => {
            text.push_str(&String::from_utf8_lossy(pending));
            pending.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::take_utf8;

    #[test]
    fn characters_split_across_tokens_wait_for_their_bytes() {
        let mut pending = Vec::new();
        let mut text = String::new();
        let bytes = "é!".as_bytes();
        pending.extend_from_slice(&bytes[..1]);
        take_utf8(&mut pending, &mut text);
        assert_eq!(text, "");
        pending.extend_from_slice(&bytes[1..]);
        take_utf8(&mut pending, &mut text);
        assert_eq!(text, "é!");
        assert!(pending.is_empty());
    }
}
