//! The `model` and `bench` commands, on the real default model.

use super::util::{cbtsim, run};
use serde_json::Value;

#[test]
fn model_info_describes_the_default_model() {
    let (code, stdout, stderr) = run(&["model", "info", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let info: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(info["size"], 253113024);
    assert_eq!(info["sha256_verified"], true);
    assert_eq!(info["architecture"], "gemma3");
    assert_eq!(info["chat_template"], false);
    assert!(info["parameters"].as_u64().unwrap() > 200_000_000);
    assert_eq!(info["context_length"], 32768);
    assert!(
        info["path"]
            .as_str()
            .unwrap()
            .ends_with("gemma-3-270m-q4_k_m.gguf")
    );
}

#[test]
fn model_info_of_another_file_does_not_claim_a_hash_check() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.gguf");
    std::fs::copy(cbtsim::model::default_model::locate().unwrap(), &copy).unwrap();
    let (code, stdout, _) = run(&["model", "info", "--json", copy.to_str().unwrap()]);
    assert_eq!(code, 0);
    let info: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(info["sha256_verified"], Value::Null);

    let bad = dir.path().join("bad.gguf");
    std::fs::write(&bad, "GGUF but not really").unwrap();
    let (code, _, stderr) = run(&["model", "info", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.gguf"), "{stderr}");
}

#[test]
fn a_missing_default_model_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["model", "info"],
        vec!["model", "complete", "--prompt", "Hi"],
        vec!["bench", "model"],
    ] {
        let output = cbtsim()
            .args(&args)
            .env("CBTSIM_MODEL_DIR", dir.path())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("cbtsim model fetch"), "{args:?}: {stderr}");
    }
}

#[test]
fn model_complete_prints_the_documented_json() {
    let _real_model = super::util::real_model();
    let args = [
        "model",
        "complete",
        "--prompt",
        "Session Number: 1\n\nPatient: I feel stuck.\n\nTherapist:",
        "--max-tokens",
        "16",
        "--seed",
        "3",
        "--json",
    ];
    let (code, stdout, stderr) = run(&args);
    assert_eq!(code, 0, "{stderr}");
    let done: Value = serde_json::from_str(&stdout).unwrap();
    for key in [
        "text",
        "finish_reason",
        "prompt_tokens",
        "cached_prompt_tokens",
        "completion_tokens",
        "prefill_ms",
        "decode_ms",
    ] {
        assert!(!done[key].is_null(), "{key} in {done}");
    }
    assert!(done["completion_tokens"].as_u64().unwrap() <= 16);
    let (_, again, _) = run(&args);
    let again: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(done["text"], again["text"], "a fixed seed repeats");
}

#[test]
fn model_complete_streams_text_and_takes_any_spec() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.txt");
    std::fs::write(&script, "First reply.\n---\nSecond reply.\n").unwrap();
    let spec = format!("scripted:{}", script.display());
    let (code, stdout, _) = run(&["model", "complete", "--model", &spec, "--prompt", "x"]);
    assert_eq!((code, stdout.as_str()), (0, "First reply.\n"));

    let (code, _, stderr) = run(&["model", "complete", "--model", "gguf:x", "--prompt", "x"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("local:PATH.gguf"), "{stderr}");
}

#[test]
fn bench_model_reports_kv_reuse_on_the_default_model() {
    let _real_model = super::util::real_model();
    let (code, stdout, stderr) = run(&["bench", "model", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let bench: Value = serde_json::from_str(&stdout).unwrap();
    assert!(bench["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(bench["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    // The bare loop is measured with each sampler the backend is.
    let bare = bench["decode_vs_bare"].as_array().unwrap();
    let samplers: Vec<&str> = bare
        .iter()
        .map(|b| b["sampler"].as_str().unwrap())
        .collect();
    assert_eq!(samplers, ["greedy", "session"]);
    for b in bare {
        assert!(b["tokens"].as_u64().unwrap() > 0, "{b}");
        assert!(b["ratio"].as_f64().unwrap() > 0.0, "{b}");
    }
    // Several sequences decoded together: every one of them made tokens.
    let batched = bench["batched_decode"].as_array().unwrap();
    let sequences: Vec<u64> = batched
        .iter()
        .map(|b| b["sequences"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 4, 8]);
    for b in batched {
        assert!(
            b["tokens"].as_u64().unwrap() >= b["sequences"].as_u64().unwrap(),
            "{b}"
        );
    }
    assert_eq!(batched[0]["vs_one"], 1.0);
    // Every sequence decodes, not only the first: 4 and 8 sequences make
    // more tokens than one does (each may make up to 128).
    let tokens = |i: usize| batched[i]["tokens"].as_u64().unwrap();
    assert!(
        tokens(2) > tokens(0) && tokens(3) > tokens(2),
        "{batched:?}"
    );
    let m = &bench["multi_turn"];
    assert_eq!(m["turns"], 20);
    assert!(m["transcript_tokens"].as_u64().unwrap() > 500);
    let kept = m["kept"]["prompt_tokens_processed"].as_u64().unwrap();
    let dropped = m["dropped"]["prompt_tokens_processed"].as_u64().unwrap();
    // Token counts, not times: keeping the cache reads far fewer tokens.
    assert!(kept * 3 < dropped, "kept {kept}, dropped {dropped}");
    assert_eq!(m["same_text"], true, "the cache must not change the text");
    assert!(m["kept"]["wall_ms"].as_u64().is_some() && m["dropped"]["wall_ms"].as_u64().is_some());
    assert!(m["speedup"].as_f64().is_some());
}

#[test]
fn bench_session_reports_a_stored_session_on_the_default_model() {
    let _real_model = super::util::real_model();
    let (code, stdout, stderr) = run(&[
        "bench",
        "session",
        "--turns",
        "4",
        "--max-tokens",
        "48",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let bench: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(bench["turns"], 4, "no natural end before the last turn");
    for field in [
        "wall_s",
        "startup_ms",
        "model_load_ms",
        "model_ms_per_turn",
        "orchestration_ms_per_turn",
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "ideal_s",
        "peak_rss_mb",
    ] {
        assert!(bench[field].as_f64().unwrap() > 0.0, "{field}: {bench}");
    }
    // Token counts, not times: each agent read at least its final prompt,
    // and the cache kept it from reading the whole transcript every turn.
    let processed = bench["prompt_tokens_processed"].as_u64().unwrap();
    let final_prompts = bench["final_prompt_tokens"].as_u64().unwrap();
    assert!(processed >= final_prompts, "{bench}");
    assert!(processed < 2 * final_prompts, "{bench}");
    assert!(bench["transcript_tokens"].as_u64().unwrap() > 20, "{bench}");
    assert!(bench["generated_tokens"].as_u64().unwrap() > 0, "{bench}");
}

#[test]
fn bench_batch_runs_each_level_side_by_side() {
    let (code, stdout, stderr) = run(&[
        "bench",
        "batch",
        "--model",
        "scripted?delay_ms=5",
        "--concurrency",
        "1,3",
        "--sessions",
        "3",
        "--turns",
        "4",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let bench: Value = serde_json::from_str(&stdout).unwrap();
    let levels = bench["levels"].as_array().unwrap();
    let concurrency: Vec<u64> = levels
        .iter()
        .map(|l| l["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(concurrency, [1, 3]);
    for level in levels {
        assert_eq!(level["failed_courses"], 0, "{level}");
        assert!(
            level["sessions_per_hour"].as_f64().unwrap() > 0.0,
            "{level}"
        );
        assert!(
            level["completion_tokens_per_s"].as_f64().unwrap() > 0.0,
            "{level}"
        );
    }
}
