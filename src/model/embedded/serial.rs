//! The default way of running requests: each conversation has a llama.cpp
//! context of its own, and the model's thread runs one request at a time.
//! A conversation's text depends only on its requests, never on what other
//! conversations do, so runs are reproducible.

use super::reply::Reply;
use super::{Event, Job, Shared, decode, decode_failed, new_context, reused_prefix};
use crate::model::{Completion, ModelError, Request};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Instant;

/// The model's thread: every conversation's context, one request at a time.
pub(super) fn work(shared: &Shared, inbox: &mpsc::Receiver<Job>) {
    let mut sessions: HashMap<u64, Session<'_>> = HashMap::new();
    for job in inbox {
        match job {
            Job::Open { id, ready } => match Session::new(shared) {
                Ok(session) => {
                    sessions.insert(id, session);
                    let _ = ready.send(Ok(()));
                }
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
            },
            Job::Run {
                id,
                request,
                events,
            } => {
                let result = match sessions.get_mut(&id) {
                    Some(session) => session.run(&request, &mut |text| {
                        let _ = events.send(Event::Delta(text.to_string()));
                    }),
                    None => Err(ModelError::Backend(format!("no conversation {id}"))),
                };
                let _ = events.send(Event::Done(result));
            }
            Job::Forget { id } => {
                if let Some(session) = sessions.get_mut(&id) {
                    session.forget();
                }
            }
            Job::Close { id } => {
                sessions.remove(&id);
            }
            Job::Bare(bare) => bare.run(shared),
        }
    }
}

/// The state of one conversation on the model's thread.
struct Session<'m> {
    shared: &'m Shared,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// The tokens whose keys and values are in the context, in order.
    cached: Vec<LlamaToken>,
    /// How many of `cached` were read as whole aligned chunks of a prompt,
    /// and so can be reused exactly (the rest: a prompt's last partial chunk
    /// and the reply, decoded one token at a time). See `exact_reuse`.
    reusable: usize,
}

impl<'m> Session<'m> {
    fn new(shared: &'m Shared) -> Result<Session<'m>, ModelError> {
        let config = &shared.config;
        let ctx = new_context(shared, config.context_size, config.batch_size, 1)?;
        Ok(Session {
            shared,
            ctx,
            batch: LlamaBatch::new(config.batch_size as usize, 1),
            cached: Vec::new(),
            reusable: 0,
        })
    }

    fn forget(&mut self) {
        self.ctx.clear_kv_cache();
        self.cached.clear();
        self.reusable = 0;
    }

    fn run(
        &mut self,
        request: &Request,
        on_delta: &mut dyn FnMut(&str),
    ) -> Result<Completion, ModelError> {
        let prompt = self.shared.prompt_tokens(&request.prompt)?;
        let config = &self.shared.config;
        let chunk = config.batch_size.max(1) as usize;
        let exactly = config.exact_reuse.then_some((self.reusable, chunk));
        let mut keep = reused_prefix(&self.cached, &prompt, exactly);
        if keep < self.cached.len() {
            let cut = self
                .ctx
                .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
                .unwrap_or(false);
            if !cut {
                self.forget();
                keep = 0;
            }
            self.cached.truncate(keep);
        }

        let started = Instant::now();
        let mut logits_at = self.decode(&prompt[keep..])?;
        self.reusable = prompt.len() / chunk * chunk;
        let prefill_ms = started.elapsed().as_millis() as u64;

        let model = &self.shared.model;
        let mut reply = Reply::new(model, request, &prompt, keep, prefill_ms)?;
        let context = self.shared.config.context_size as usize;
        while let Some(token) = reply.advance(
            model,
            &self.ctx,
            logits_at,
            self.cached.len() < context,
            on_delta,
        ) {
            logits_at = self.decode(&[token])?;
        }
        Ok(reply.finish(on_delta))
    }

    /// Decodes `tokens` after the cached ones, in chunks of `batch_size`
    /// (aligned, when the cached tokens are a whole number of chunks);
    /// returns the batch index of the last token's logits.
    fn decode(&mut self, tokens: &[LlamaToken]) -> Result<i32, ModelError> {
        let chunk_size = self.shared.config.batch_size as usize;
        let mut last = 0;
        for (i, chunk) in tokens.chunks(chunk_size).enumerate() {
            let final_chunk = (i + 1) * chunk_size >= tokens.len();
            self.batch.clear();
            for (j, &token) in chunk.iter().enumerate() {
                let position = (self.cached.len() + j) as i32;
                let wants_logits = final_chunk && j + 1 == chunk.len();
                self.batch
                    .add(token, position, &[0], wants_logits)
                    .map_err(|e| ModelError::Backend(format!("batch: {e}")))?;
            }
            decode(&mut self.ctx, &mut self.batch).map_err(decode_failed)?;
            self.cached.extend_from_slice(chunk);
            last = self.batch.n_tokens() - 1;
        }
        Ok(last)
    }
}
