//! `bench quality`: how much the sessions read as CBT with the persona at
//! hand, over a grid of personas × seeds — the measures of the default
//! model's quality issue, printed before and after a change to the engine.
//!
//! Each measure is mechanical and says what it counts; none is a judge's
//! opinion (`cbtsim eval` has the judge).

use crate::eval::metrics;
use crate::lint;
use crate::model::spec::{Config, ModelSpec, Models};
use crate::plan::PlanKind;
use crate::runner::{RoleModels, RunError, RunOutcome};
use crate::session::grounding::{specific_words, words};
use crate::speaker::Speaker;
use crate::store::Store;
use crate::summary::{SessionSummary, SummarySection};
use crate::transcript::Transcript;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// What to run.
#[derive(Debug, Clone)]
pub struct QualitySettings {
    pub model: ModelSpec,
    /// Library ids or persona files.
    pub personas: Vec<String>,
    /// Sessions per persona, each with a seed of its own.
    pub seeds: u32,
    pub turns: u32,
    pub concurrency: u32,
    pub config: Config,
}

/// One session's measures.
#[derive(Debug, Clone, Serialize)]
pub struct SessionQuality {
    pub session: i64,
    pub persona: String,
    pub turns: usize,
    pub patient_turns: usize,
    /// Patient turns that name something of this persona's own: a word of
    /// its description that no other library persona's has.
    pub persona_specific_turns: usize,
    /// Therapist turns that still address the patient by a role word.
    pub role_word_turns: usize,
    /// Role words the guards replaced with the name.
    pub role_word_repairs: usize,
    /// Of the seven CBT session elements (docs/evaluation.md).
    pub elements: usize,
    /// Therapist turns that answered a disclosure with the safety protocol,
    /// and with a follow-up: each takes a phase's place (a protocol turn
    /// also the fixed words of the turn after it).
    pub protocol_turns: usize,
    pub follow_up_turns: usize,
    pub summary_items: usize,
    /// Items the summarizer itself would take as cut off
    /// (`summarize::is_cut_off`, one definition for both).
    pub summary_cut_off: usize,
    /// Items of five words or more found word for word in a turn.
    pub summary_copied: usize,
    /// Items said twice in the summary (any sections).
    pub summary_duplicated: usize,
    /// The summary was extracted from the transcript, the summarizer's
    /// being unusable.
    pub summary_extracted: bool,
    pub lint_findings: usize,
    pub replies: i64,
    pub rejected_replies: i64,
    pub repaired_replies: i64,
}

/// The grid's measures, each session's and the totals the targets name.
#[derive(Debug, Clone, Serialize)]
pub struct QualityBench {
    pub model: String,
    pub sessions: Vec<SessionQuality>,
    pub failed_courses: usize,
    /// Share of patient turns naming something of their persona's own.
    pub persona_specific_share: f64,
    pub role_word_turns: usize,
    pub role_word_repairs: usize,
    /// Mean number of the seven CBT elements per session.
    pub elements_mean: f64,
    pub summary_items: usize,
    pub summary_cut_off: usize,
    pub summary_copied: usize,
    pub summary_duplicated: usize,
    /// Sessions whose summary was extracted from the transcript.
    pub summaries_extracted: usize,
    pub lint_clean_sessions: usize,
    pub repaired_reply_share: f64,
    pub rejected_reply_share: f64,
    /// Wall time over the sessions run (at the concurrency given).
    pub wall_s_per_session: f64,
}

impl QualityBench {
    /// The figures as text, one per line, with what each counts.
    pub fn describe(&self) -> String {
        let patient_turns: usize = self.sessions.iter().map(|s| s.patient_turns).sum();
        let specific: usize = self.sessions.iter().map(|s| s.persona_specific_turns).sum();
        let mut out = format!(
            "model: {}\n{} sessions ({} courses failed), {:.1} s each\n",
            self.model,
            self.sessions.len(),
            self.failed_courses,
            self.wall_s_per_session
        );
        out += &format!(
            "patient turns naming something of their own persona: {specific} of {patient_turns} ({:.0}%)\n",
            self.persona_specific_share * 100.0
        );
        out += &format!(
            "therapist turns addressing the patient by a role word: {} (the guards replaced {})\n",
            self.role_word_turns, self.role_word_repairs
        );
        out += &format!(
            "CBT session elements per session: {:.1} of 7\n",
            self.elements_mean
        );
        out += &format!(
            "therapist turns answering a disclosure: {} with the protocol, {} with a follow-up\n",
            self.sessions
                .iter()
                .map(|s| s.protocol_turns)
                .sum::<usize>(),
            self.sessions
                .iter()
                .map(|s| s.follow_up_turns)
                .sum::<usize>()
        );
        out += &format!(
            "summary items: {} ({} cut off, {} copied from a turn, {} said twice)\n",
            self.summary_items, self.summary_cut_off, self.summary_copied, self.summary_duplicated
        );
        out += &format!(
            "summaries extracted from the transcript (the summarizer's unusable): {} of {}\n",
            self.summaries_extracted,
            self.sessions.len()
        );
        out += &format!(
            "sessions that lint clean: {} of {}\n",
            self.lint_clean_sessions,
            self.sessions.len()
        );
        out += &format!(
            "replies repaired: {:.1}%, rejected: {:.1}%\n",
            self.repaired_reply_share * 100.0,
            self.rejected_reply_share * 100.0
        );
        out
    }
}

/// Runs the grid into `store` (in memory unless the caller keeps one) and
/// measures every session.
pub fn bench_quality(settings: &QualitySettings, store: Store) -> Result<QualityBench, RunError> {
    // Default settings but the length: a session may end naturally first.
    let mut plan = super::one_model_plan(
        PlanKind::Batch,
        settings.personas.clone(),
        &settings.model,
        &settings.config,
    );
    plan.session.max_turns = settings.turns;
    plan.repeats = settings.seeds.max(1);
    plan.concurrency = settings.concurrency.max(1);
    let roles = RoleModels::open(&plan, &mut Models::new(settings.config.clone()))?;
    let store = Mutex::new(store);
    let (outcome, wall) = super::run_timed_in(&store, &plan, &roles)?;
    let store = store.into_inner().unwrap_or_else(|e| e.into_inner());
    measure_run(
        &store,
        &outcome,
        roles.therapist.describe(),
        wall.as_secs_f64(),
    )
}

fn measure_run(
    store: &Store,
    outcome: &RunOutcome,
    model: String,
    wall_s: f64,
) -> Result<QualityBench, RunError> {
    let library = crate::persona::library().unwrap_or_default();
    let mut sessions = Vec::new();
    for course in store.courses(outcome.run)? {
        let specific = specific_words(&course.persona, &library);
        for stored in store.sessions(Some(course.id))? {
            let counts = store.reply_counts(stored.id)?;
            let mut quality = measure(&stored.transcript, &specific);
            quality.session = stored.id;
            quality.persona = course.persona.id.clone();
            quality.replies = counts.replies;
            quality.rejected_replies = counts.rejected;
            quality.repaired_replies = counts.repaired;
            sessions.push(quality);
        }
    }
    let sum = |f: fn(&SessionQuality) -> usize| sessions.iter().map(f).sum::<usize>();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let replies: i64 = sessions.iter().map(|s| s.replies).sum();
    Ok(QualityBench {
        model,
        failed_courses: outcome.count(|s| matches!(s, crate::runner::CourseStatus::Failed(_))),
        persona_specific_share: ratio(
            sum(|s| s.persona_specific_turns) as f64,
            sum(|s| s.patient_turns) as f64,
        ),
        role_word_turns: sum(|s| s.role_word_turns),
        role_word_repairs: sum(|s| s.role_word_repairs),
        elements_mean: ratio(sum(|s| s.elements) as f64, sessions.len() as f64),
        summary_items: sum(|s| s.summary_items),
        summary_cut_off: sum(|s| s.summary_cut_off),
        summary_copied: sum(|s| s.summary_copied),
        summary_duplicated: sum(|s| s.summary_duplicated),
        summaries_extracted: sessions.iter().filter(|s| s.summary_extracted).count(),
        lint_clean_sessions: sessions.iter().filter(|s| s.lint_findings == 0).count(),
        repaired_reply_share: ratio(
            sessions.iter().map(|s| s.repaired_replies).sum::<i64>() as f64,
            replies as f64,
        ),
        rejected_reply_share: ratio(
            sessions.iter().map(|s| s.rejected_replies).sum::<i64>() as f64,
            replies as f64,
        ),
        wall_s_per_session: ratio(wall_s, sessions.len() as f64),
        sessions,
    })
}

/// One transcript's measures (the caller fills in the session, persona and
/// reply counts).
pub fn measure(transcript: &Transcript, specific: &HashSet<String>) -> SessionQuality {
    let turns = &transcript.turns;
    let of = |speaker: Speaker| turns.iter().filter(move |t| t.speaker == speaker);
    let persona_specific_turns = of(Speaker::Patient)
        .filter(|t| words(&t.text).any(|w| specific.contains(&w)))
        .count();
    let role_word_turns = of(Speaker::Therapist)
        .filter(|t| !lint::role_word_addresses(&t.text).is_empty())
        .count();
    let role_word_repairs = turns
        .iter()
        .flat_map(|t| &t.meta.repairs)
        .filter(|r| r.kind == "role_word_address")
        .count();
    let elements = metrics::measure(transcript, 0)
        .elements
        .iter()
        .filter(|e| e.present)
        .count();
    let answered = |answer: &str| {
        turns
            .iter()
            .filter(|t| t.meta.safety.as_deref() == Some(answer))
            .count()
    };
    let summary = summary_quality(transcript.summary.as_ref(), transcript);
    SessionQuality {
        session: 0,
        persona: String::new(),
        turns: turns.len(),
        patient_turns: of(Speaker::Patient).count(),
        persona_specific_turns,
        role_word_turns,
        role_word_repairs,
        elements,
        protocol_turns: answered(crate::session::SAFETY_PROTOCOL),
        follow_up_turns: answered(crate::session::SAFETY_FOLLOW_UP),
        summary_items: summary.0,
        summary_cut_off: summary.1,
        summary_copied: summary.2,
        summary_duplicated: summary.3,
        summary_extracted: transcript.summary.as_ref().is_some_and(|s| s.extracted),
        lint_findings: lint::lint_transcript(transcript).len(),
        replies: 0,
        rejected_replies: 0,
        repaired_replies: 0,
    }
}

/// (items, cut off, copied from a turn, said twice).
fn summary_quality(
    summary: Option<&SessionSummary>,
    transcript: &Transcript,
) -> (usize, usize, usize, usize) {
    let Some(summary) = summary else {
        return (0, 0, 0, 0);
    };
    let plain = |text: &str| words(text).collect::<Vec<_>>().join(" ");
    let turns: Vec<String> = transcript.turns.iter().map(|t| plain(&t.text)).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let (mut items, mut cut, mut copied) = (0, 0, 0);
    for section in SummarySection::ALL {
        for item in summary.items(section) {
            items += 1;
            if crate::summarize::is_cut_off(item) {
                cut += 1;
            }
            let text = plain(item);
            if text.split(' ').count() >= 5 && turns.iter().any(|t| t.contains(&text)) {
                copied += 1;
            }
            *seen.entry(text).or_default() += 1;
        }
    }
    let duplicated = seen.values().filter(|&&n| n > 1).map(|n| n - 1).sum();
    (items, cut, copied, duplicated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::Turn;

    #[test]
    fn a_transcript_is_measured_as_documented() {
        let specific: HashSet<String> = ["grandmother".to_string()].into();
        let mut transcript = Transcript::new(1);
        let said = |speaker, text: &str| Turn::new(speaker, text);
        transcript.turns = vec![
            said(Speaker::Patient, "My grandmother died in the spring."),
            said(Speaker::Therapist, "Thank you for telling me, patient."),
            said(Speaker::Patient, "I just feel tired all the time."),
            said(Speaker::Therapist, "What would you like to work on today?"),
        ];
        transcript.turns[1].meta.safety = Some("protocol".into());
        transcript.turns[3].meta.safety = Some("follow_up".into());
        transcript.summary = Some(SessionSummary {
            main_topics: vec!["Grief".into(), "grief".into()],
            techniques: vec!["Thought record_".into()],
            helpful: vec!["I just feel tired all the time.".into()],
            homework: vec![],
            insights: vec![],
            extracted: false,
        });
        let q = measure(&transcript, &specific);
        assert_eq!((q.patient_turns, q.persona_specific_turns), (2, 1));
        assert_eq!(q.role_word_turns, 1);
        assert_eq!((q.protocol_turns, q.follow_up_turns), (1, 1));
        assert_eq!(q.lint_findings, 1, "the role word is a lint finding");
        assert_eq!(
            (
                q.summary_items,
                q.summary_cut_off,
                q.summary_copied,
                q.summary_duplicated
            ),
            (4, 1, 1, 1)
        );
    }
}
