//! The embedded llama.cpp backend on the real default model.

use cbtsim::model::embedded::{EmbeddedConfig, EmbeddedModel};
use cbtsim::model::{
    ChatModel, Completion, FinishReason, ModelError, Request, default_model, schema,
};
use std::sync::OnceLock;

/// The default model, loaded once for all tests here.
fn default_model() -> &'static EmbeddedModel {
    static MODEL: OnceLock<EmbeddedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path =
            default_model::locate().unwrap_or_else(|e| panic!("{e} (scripts/test fetches it)"));
        EmbeddedModel::load(&path, EmbeddedConfig::default()).expect("the default model loads")
    })
}

const SESSION: &str = "Session Number: 1\n\nPatient: Hi. I've been feeling down since my grandmother died, and work has been a lot.\n\nTherapist:";

fn request(prompt: &str, max_tokens: u32, seed: u32) -> Request {
    let mut request = Request::text(prompt);
    request.sampling.max_tokens = max_tokens;
    request.sampling.seed = seed;
    request
}

#[test]
fn a_fixed_seed_gives_the_same_text() {
    let _real_model = super::util::real_model();
    let model = default_model();
    let r = request(SESSION, 40, 7);
    let a = model.conversation().unwrap().complete(&r).unwrap();
    let b = model.conversation().unwrap().complete(&r).unwrap();
    assert_eq!(a.text, b.text);
    assert!(a.usage.completion_tokens > 0);
    let other = model
        .conversation()
        .unwrap()
        .complete(&request(SESSION, 40, 8))
        .unwrap();
    assert_ne!(a.text, other.text, "another seed samples differently");
}

#[test]
fn stop_sequences_end_the_reply_before_them() {
    let _real_model = super::util::real_model();
    let model = default_model();
    let mut r = request("Shopping list:\n1. apples\n2. pears\n3.", 60, 1);
    r.sampling.stop = vec!["\n".into()];
    let done = model.conversation().unwrap().complete(&r).unwrap();
    assert_eq!(
        done.finish_reason,
        FinishReason::StopSequence,
        "{:?}",
        done.text
    );
    assert!(!done.text.contains('\n'));
    let mut streamed = String::new();
    let again = model
        .conversation()
        .unwrap()
        .stream(&r, &mut |piece| streamed.push_str(piece))
        .unwrap();
    assert_eq!(
        streamed, again.text,
        "the streamed pieces add up to the text"
    );
}

#[test]
fn a_json_schema_constrains_the_reply() {
    let _real_model = super::util::real_model();
    let schema = serde_json::json!({
        "type": "object",
        "required": ["mood", "topics"],
        "additionalProperties": false,
        "properties": {
            "mood": {"type": "integer", "minimum": 0, "maximum": 10},
            "topics": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string", "minLength": 1, "maxLength": 40}}
        }
    });
    let mut r = request(
        "Patient: I feel about a 4 out of 10 today; work and sleep are the problems.\nSummary as JSON:",
        120,
        3,
    );
    r.json_schema = Some(schema.clone());
    let done = default_model()
        .conversation()
        .unwrap()
        .complete(&r)
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&done.text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", done.text));
    schema::validate(&schema, &value).unwrap();
    assert_eq!(
        done.finish_reason,
        FinishReason::Stop,
        "the grammar ends the reply: {}",
        done.text
    );
}

/// Runs a first request, then one that extends its prompt and reply, on
/// one conversation; returns both completions.
fn extend(model: &EmbeddedModel) -> (Completion, Completion, String) {
    let mut conversation = model.conversation().unwrap();
    let first = conversation.complete(&request(SESSION, 24, 5)).unwrap();
    assert_eq!(first.usage.cached_prompt_tokens, 0);
    let extended = format!(
        "{SESSION}{}\n\nPatient: I think it started when I got promoted.\n\nTherapist:",
        first.text
    );
    let second = conversation.complete(&request(&extended, 24, 6)).unwrap();
    (first, second, extended)
}

#[test]
fn exact_reuse_gives_the_text_of_a_cache_less_run() {
    let _real_model = super::util::real_model();
    let model = default_model();
    let chunk = EmbeddedConfig::default().batch_size;
    let (first, second, extended) = extend(model);
    // Whole aligned chunks of the first prompt come from the cache.
    assert!(second.usage.cached_prompt_tokens > 0);
    assert_eq!(
        second.usage.cached_prompt_tokens,
        first.usage.prompt_tokens / chunk * chunk
    );
    let fresh = model
        .conversation()
        .unwrap()
        .complete(&request(&extended, 24, 6))
        .unwrap();
    assert_eq!(fresh.usage.cached_prompt_tokens, 0);
    assert_eq!(second.text, fresh.text);
}

#[test]
fn full_reuse_skips_the_whole_previous_prompt_and_reply_and_is_reproducible() {
    let _real_model = super::util::real_model();
    let path = default_model::locate().unwrap();
    let config = EmbeddedConfig {
        exact_reuse: false,
        batch_size: 512,
        ..EmbeddedConfig::default()
    };
    let model = EmbeddedModel::load(&path, config).unwrap();
    let (first, second, _) = extend(&model);
    assert!(
        second.usage.cached_prompt_tokens
            >= first.usage.prompt_tokens + first.usage.completion_tokens - 1,
        "cached {} of a first prompt+reply of {}+{}",
        second.usage.cached_prompt_tokens,
        first.usage.prompt_tokens,
        first.usage.completion_tokens
    );
    let (first_again, second_again, _) = extend(&model);
    assert_eq!(
        (first.text, second.text),
        (first_again.text, second_again.text)
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let _real_model = super::util::real_model();
    // One conversation's context, whether requests run one at a time or
    // batched in a shared cache.
    for parallel in [1, 2] {
        let small = batched(parallel, 256);
        let long = "I keep thinking about work. ".repeat(200);
        let error = small
            .conversation()
            .unwrap()
            .complete(&request(&long, 10, 0))
            .unwrap_err();
        assert!(
            matches!(error, ModelError::ContextTooLong { context: 256, .. }),
            "parallel {parallel}: {error}"
        );
    }
}

#[test]
fn missing_and_corrupt_model_files_are_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.gguf");
    let error = EmbeddedModel::load(&missing, EmbeddedConfig::default())
        .err()
        .unwrap();
    assert!(error.to_string().contains("absent.gguf"), "{error}");

    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, "hello, this is not a model").unwrap();
    let error = EmbeddedModel::load(&not_gguf, EmbeddedConfig::default())
        .err()
        .unwrap();
    assert!(error.to_string().contains("not a GGUF"), "{error}");

    // A real header followed by garbage: llama.cpp must refuse it cleanly.
    let truncated = dir.path().join("truncated.gguf");
    let real = std::fs::read(default_model::locate().unwrap()).unwrap();
    std::fs::write(&truncated, &real[..4096]).unwrap();
    let error = EmbeddedModel::load(&truncated, EmbeddedConfig::default())
        .err()
        .unwrap();
    assert!(error.to_string().contains("truncated.gguf"), "{error}");
}

#[test]
fn chat_prompts_need_a_template_and_work_with_a_named_one() {
    let _real_model = super::util::real_model();
    use cbtsim::model::{Message, Role};
    let chat = Request::chat(vec![
        Message::new(Role::System, "You are a CBT therapist."),
        Message::new(Role::User, "I can't sleep."),
    ]);
    let error = default_model()
        .conversation()
        .unwrap()
        .complete(&chat)
        .unwrap_err();
    assert!(error.to_string().contains("no chat template"), "{error}");

    let path = default_model::locate().unwrap();
    let templated = EmbeddedModel::load(
        &path,
        EmbeddedConfig {
            chat_template: Some("gemma".into()),
            ..EmbeddedConfig::default()
        },
    )
    .unwrap();
    let mut r = chat.clone();
    r.sampling.max_tokens = 16;
    let done = templated.conversation().unwrap().complete(&r).unwrap();
    // The gemma template folds the system message into the user turn.
    assert!(done.usage.prompt_tokens > 10);
    assert!(done.usage.completion_tokens > 0);
}

#[test]
fn the_crisis_detectors_model_layer_gives_schema_valid_verdicts() {
    let _real_model = super::util::real_model();
    use cbtsim::safety::model::ModelLayer;
    let model = default_model();
    let mut layer = ModelLayer::new(model).unwrap();
    for text in [
        "I've been saving my tablets for a few weeks now.",
        "This traffic is killing me.",
    ] {
        let d = layer.judge(None, text).unwrap();
        assert_eq!(
            d.flagged,
            d.category != cbtsim::safety::Category::None,
            "{text}"
        );
    }
    // Constrained decoding: the 270M model's answers always fit the schema.
    assert_eq!(layer.invalid, 0);
    // What it used is counted, as the embedded tokenizer counts it.
    assert_eq!(layer.usage.replies, 2);
    assert!(layer.usage.prompt_tokens > 0 && layer.usage.completion_tokens > 0);
    assert_eq!(layer.usage.estimated_replies, 0);
    assert!(layer.model.starts_with("local:"), "{}", layer.model);
}

/// The default model in batched mode: `parallel` replies decoded together.
fn batched(parallel: u32, context_size: u32) -> EmbeddedModel {
    let path = default_model::locate().unwrap();
    let config = EmbeddedConfig {
        parallel,
        context_size,
        ..EmbeddedConfig::default()
    };
    EmbeddedModel::load(&path, config).unwrap()
}

#[test]
fn batched_mode_decodes_concurrent_replies_together() {
    let _real_model = super::util::real_model();
    let model = batched(2, 2048);
    let schema = serde_json::json!({
        "type": "object",
        "required": ["mood"],
        "additionalProperties": false,
        "properties": {"mood": {"type": "integer", "minimum": 0, "maximum": 10}}
    });
    let mut structured = request(
        "Patient: I feel about a 4 out of 10 today.\nMood as JSON:",
        40,
        3,
    );
    structured.json_schema = Some(schema.clone());
    let start = std::sync::Barrier::new(2);
    let (plain, streamed, json) = std::thread::scope(|s| {
        let plain = s.spawn(|| {
            let mut conversation = model.conversation().unwrap();
            start.wait();
            let mut streamed = String::new();
            let done = conversation
                .stream(&request(SESSION, 48, 7), &mut |piece| {
                    streamed.push_str(piece)
                })
                .unwrap();
            (done, streamed)
        });
        let json = s.spawn(|| {
            let mut conversation = model.conversation().unwrap();
            start.wait();
            conversation.complete(&structured).unwrap()
        });
        let (plain, streamed) = plain.join().unwrap();
        (plain, streamed, json.join().unwrap())
    });
    assert!(plain.usage.completion_tokens > 0, "{plain:?}");
    assert_eq!(
        streamed, plain.text,
        "the streamed pieces add up to the text"
    );
    let value: serde_json::Value = serde_json::from_str(&json.text)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", json.text));
    schema::validate(&schema, &value).unwrap();
    // Both replies were being written at once, in the same batches.
    let batching = model.batching();
    assert_eq!(batching.widest, 2, "{batching:?}");
    assert!(batching.reply_tokens > batching.batches, "{batching:?}");
    // The serial default never batches replies.
    assert_eq!(default_model().batching().widest, 0);
}

/// A text prompt of at least `tokens` tokens.
fn long_prompt(model: &EmbeddedModel, tokens: usize) -> String {
    let mut text = String::from("Patient:");
    while model.count_tokens(&text) < tokens {
        text.push_str(" I keep going over what my manager said.");
    }
    text
}

#[test]
fn batched_mode_reuses_and_shares_caches_until_others_need_the_room() {
    let _real_model = super::util::real_model();
    // Two conversations of 512 tokens fit in the shared cache.
    let model = batched(2, 512);
    let mut first = model.conversation().unwrap();
    let opening = first.complete(&request(SESSION, 16, 5)).unwrap();
    let extended = format!("{SESSION}{} Go on.\n\nPatient:", opening.text);
    let again = first.complete(&request(&extended, 8, 6)).unwrap();
    // The whole previous prompt and reply come from the cache.
    assert!(
        again.usage.cached_prompt_tokens
            >= opening.usage.prompt_tokens + opening.usage.completion_tokens - 1,
        "{:?} after {:?}",
        again.usage,
        opening.usage
    );

    // Another conversation with the same prompt shares those cells.
    let twin = model
        .conversation()
        .unwrap()
        .complete(&request(&extended, 8, 7))
        .unwrap();
    assert_eq!(
        twin.usage.cached_prompt_tokens,
        twin.usage.prompt_tokens - 1
    );

    // Two long conversations need the room the first two hold.
    let long = long_prompt(&model, 490);
    let mut others = Vec::new();
    for seed in 0..2 {
        let mut conversation = model.conversation().unwrap();
        let done = conversation.complete(&request(&long, 8, seed)).unwrap();
        assert!(done.usage.completion_tokens > 0);
        others.push(conversation);
    }
    let after = first.complete(&request(&extended, 8, 6)).unwrap();
    assert_eq!(
        after.usage.cached_prompt_tokens, 0,
        "its cache was given up"
    );
    assert!(after.usage.completion_tokens > 0);

    // More conversations than sequences (4 per request in flight): the
    // ones idle longest give theirs up, and every one still gets replies.
    let many: Vec<_> = (0..8)
        .map(|seed| {
            let mut conversation = model.conversation().unwrap();
            let done = conversation.complete(&request(SESSION, 4, seed)).unwrap();
            assert!(done.usage.completion_tokens > 0);
            conversation
        })
        .collect();
    assert_eq!(many.len(), 8);
    let back = others[0].complete(&request(&long, 4, 9)).unwrap();
    assert_eq!(
        back.usage.cached_prompt_tokens, 0,
        "its sequence was given up"
    );
    assert!(back.usage.completion_tokens > 0);
}

#[test]
fn bench_batch_compares_batched_sessions_with_one_request_at_a_time() {
    let _real_model = super::util::real_model();
    use cbtsim::bench::BenchSessions;
    use cbtsim::bench::batch::{BatchBenchSettings, bench_batch};
    let settings = BatchBenchSettings {
        each: BenchSessions {
            model: "local".parse().unwrap(),
            persona: "alicia-rodriguez".into(),
            turns: 2,
            max_tokens: 24,
            candidates: 1,
            config: cbtsim::model::spec::Config::default(),
        },
        sessions: 2,
        levels: vec![2],
        batched: vec![false, true],
    };
    let report = bench_batch(&settings, &mut |_| {}).unwrap();
    let modes: Vec<(u32, bool)> = report
        .levels
        .iter()
        .map(|l| (l.concurrency, l.batched))
        .collect();
    assert_eq!(modes, [(2, false), (2, true)]);
    for level in &report.levels {
        assert_eq!(level.failed_courses, 0, "{level:?}");
        assert!(level.completion_tokens_per_s > 0.0, "{level:?}");
    }
    assert_eq!(report.levels[0].replies_per_batch, None);
    // Two sessions side by side: more than one reply per batch on average.
    let mean = report.levels[1].replies_per_batch.unwrap();
    assert!(mean > 1.0, "{mean}");
}

#[test]
fn batched_mode_never_shares_a_prefix_whose_sliding_window_cells_were_reused() {
    let _real_model = super::util::real_model();
    // gemma-3's sliding-window layers attend to the last 512 positions.
    let model = batched(2, 2048);
    assert_eq!(model.info().sliding_window, 512);
    let long = long_prompt(&model, 1500);
    let short = long_prompt(&model, 300);
    // A first conversation holds the first cells; a second, long one the
    // cells after them.
    let mut first = model.conversation().unwrap();
    first
        .complete(&request(&format!("Session Number: 7\n\n{short}"), 4, 1))
        .unwrap();
    let mut holder = model.conversation().unwrap();
    holder.complete(&request(&long, 4, 2)).unwrap();
    // The first goes away: llama.cpp looks for free cells from the start
    // again, and a third conversation's tokens fill those, then the cells of
    // the long one's positions that fell out of its window (in the
    // sliding-window layers only).
    drop(first);
    model
        .conversation()
        .unwrap()
        .complete(&request(
            &long_prompt(&model, 600).replace("Patient", "Doctor"),
            4,
            3,
        ))
        .unwrap();
    // A prompt that begins like the long one for 400 tokens and then
    // differs would need those lost positions: it is read, not shared.
    let mut opening: String = long.chars().take(long.len() / 4).collect();
    opening.push_str(" Then something else happened entirely.\n\nTherapist:");
    let diverging = model
        .conversation()
        .unwrap()
        .complete(&request(&opening, 8, 4))
        .unwrap();
    assert!(diverging.usage.prompt_tokens > 300);
    assert_eq!(
        diverging.usage.cached_prompt_tokens, 0,
        "{:?}",
        diverging.usage
    );
    // The whole long prompt is still whole in the window: that is shared.
    let same = model
        .conversation()
        .unwrap()
        .complete(&request(&long, 8, 5))
        .unwrap();
    assert_eq!(
        same.usage.cached_prompt_tokens,
        same.usage.prompt_tokens - 1
    );
}
