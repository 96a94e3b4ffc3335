//! Showing a run as it happens. A run or a course prints its sessions
//! (turn by turn when stdout is a terminal); a batch shows progress bars on
//! stderr (plain log lines when stderr is not a terminal) and a summary at
//! the end.

use crate::emit;
use anyhow::Result;
use cbtsim::estimate::Estimate;
use cbtsim::model::spec::Price;
use cbtsim::plan::{PlanKind, RunPlan};
use cbtsim::runner::{
    CourseInfo, CourseStatus, RoleModels, RunObserver, RunOutcome, SessionResult,
};
use cbtsim::session::SafetyEvent;
use cbtsim::store::TokenTotal;
use cbtsim::text_format;
use cbtsim::turn::Turn;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

pub struct Display {
    kind: PlanKind,
    json: bool,
    /// Turns are printed as they are spoken (stdout is a terminal).
    stream: bool,
    started: Instant,
    /// Sessions printed so far (they are separated by a blank line).
    printed: Mutex<u32>,
    bars: Option<Bars>,
    prices: BTreeMap<String, Price>,
    sessions_total: u64,
    sessions_done: Mutex<u64>,
    /// The side a person plays: they are shown its carry-over.
    played_by: Option<cbtsim::Speaker>,
}

/// A batch's progress bars: one for the whole batch, one per running course.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    courses: Mutex<HashMap<i64, ProgressBar>>,
}

impl Display {
    pub fn new(
        plan: &RunPlan,
        models: &RoleModels,
        json: bool,
        stdout_is_terminal: bool,
    ) -> Display {
        let batch = plan.kind == PlanKind::Batch;
        let bars = (batch && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(plan.total_sessions()));
            overall.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} sessions  {per_sec}  ETA {eta}  {msg}",
                )
                .expect("a valid template"),
            );
            Bars {
                multi,
                overall,
                courses: Mutex::new(HashMap::new()),
            }
        });
        Display {
            kind: plan.kind,
            json,
            stream: stdout_is_terminal && !json && !batch,
            started: Instant::now(),
            printed: Mutex::new(0),
            bars,
            prices: prices(plan, models),
            sessions_total: plan.total_sessions(),
            sessions_done: Mutex::new(0),
            played_by: plan.played_by,
        }
    }

    fn batch(&self) -> bool {
        self.kind == PlanKind::Batch
    }

    fn log(&self, line: &str) {
        match &self.bars {
            Some(bars) => bars.multi.suspend(|| eprintln!("cbtsim: {line}")),
            None => eprintln!("cbtsim: {line}"),
        }
    }

    fn course_bar(&self, course: &CourseInfo, message: String) {
        if let Some(bars) = &self.bars {
            let mut lines = bars.courses.lock().unwrap_or_else(|e| e.into_inner());
            let bar = lines.entry(course.id).or_insert_with(|| {
                let bar = bars.multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {msg}").expect("a valid template"));
                bar
            });
            bar.set_message(message);
        }
    }

    /// After the run: the batch's summary (runs and courses printed their
    /// sessions as they went).
    pub fn finish(&self, outcome: &RunOutcome) -> Result<()> {
        if let Some(bars) = &self.bars {
            bars.overall.finish_and_clear();
            for bar in bars
                .courses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
            {
                bar.finish_and_clear();
            }
        }
        if self.batch() && !self.json {
            emit(&describe_outcome(outcome, &self.prices))?;
        }
        Ok(())
    }
}

/// The config's prices (by model spec) by the name the store gives each
/// model (its description: `local:/path/model.gguf`, `https://...#model`).
fn prices(plan: &RunPlan, models: &RoleModels) -> BTreeMap<String, Price> {
    let mut out = BTreeMap::new();
    let roles = [
        (&plan.models.therapist, Some(&models.therapist)),
        (&plan.models.patient, Some(&models.patient)),
        (&plan.models.summarizer, models.summarizer.as_ref()),
    ];
    for (spec, model) in roles {
        if let (Some(price), Some(model)) = (plan.config.prices.get(spec), model) {
            out.insert(model.describe(), *price);
        }
    }
    out
}

/// "persona#repeat session N: how it ended (T turns)", as logs say it.
fn session_ended(course: &CourseInfo, session: &SessionResult) -> String {
    format!(
        "{} session {}: {} ({} turns)",
        label(course),
        session.transcript.session_number,
        session
            .transcript
            .termination
            .as_ref()
            .map_or("unfinished", |t| t.display_name()),
        session.transcript.turns.len()
    )
}

fn label(course: &CourseInfo) -> String {
    format!("{}#{}", course.persona, course.repeat + 1)
}

impl RunObserver for Display {
    fn course_started(&self, course: &CourseInfo) {
        if self.batch() {
            self.course_bar(course, format!("{}: starting", label(course)));
            if self.bars.is_none() {
                self.log(&format!(
                    "course {} ({}) started",
                    course.index + 1,
                    label(course)
                ));
            }
        }
    }

    fn session_started(&self, course: &CourseInfo, number: u32, continued_after: usize) {
        if continued_after > 0 {
            self.log(&format!(
                "{}session {number} continues after turn {continued_after}",
                if self.batch() {
                    format!("{}: ", label(course))
                } else {
                    String::new()
                }
            ));
        }
        if self.stream {
            let mut printed = self.printed.lock().unwrap_or_else(|e| e.into_inner());
            if *printed > 0 {
                let _ = emit("\n");
            }
            *printed += 1;
            let _ = emit(&format!("Session Number: {number}\n"));
            drop(printed);
        }
        self.course_bar(course, format!("{}: session {number}", label(course)));
    }

    fn carry_over(&self, _course: &CourseInfo, _number: u32, notes: &cbtsim::session::CarryOver) {
        let notes = match self.played_by {
            Some(cbtsim::Speaker::Therapist) => &notes.therapist,
            Some(cbtsim::Speaker::Patient) => &notes.patient,
            None => return,
        };
        if !notes.is_empty() {
            eprintln!("cbtsim: from the earlier sessions (what the model would be told):");
            for note in notes {
                eprintln!("  {note}");
            }
        }
    }

    fn turn(&self, course: &CourseInfo, number: u32, position: usize, turn: &Turn) {
        if self.batch() {
            self.course_bar(
                course,
                format!("{}: session {number}, turn {}", label(course), position + 1),
            );
        } else if self.stream {
            let _ = emit(&format!("\n{}", text_format::render_turn(turn)));
        } else {
            self.log(&format!(
                "turn {} ({}) after {:.1} s",
                position + 1,
                turn.speaker,
                self.started.elapsed().as_secs_f64()
            ));
        }
    }

    fn safety_event(&self, course: &CourseInfo, number: u32, event: &SafetyEvent) {
        self.log(&format!(
            "safety: {}session {number} turn {} flagged {} ({} risk); the therapist's next turn answers it (the safety protocol, or a follow-up if this session's protocol covered it)",
            if self.batch() { format!("{} ", label(course)) } else { String::new() },
            event.turn,
            event.category,
            event.level
        ));
    }

    fn summarizing(&self, course: &CourseInfo, number: u32) {
        if self.batch() {
            self.course_bar(
                course,
                format!("{}: session {number}, summary", label(course)),
            );
        } else {
            self.log(&format!("writing the summary of session {number}"));
        }
    }

    fn session_finished(&self, course: &CourseInfo, session: &SessionResult) {
        if let Some(error) = &session.summary_error
            && !session.read_back
        {
            self.log(&format!("warning: no summary: {error}"));
        }
        if session
            .transcript
            .summary
            .as_ref()
            .is_some_and(|s| s.extracted)
            && !session.read_back
        {
            self.log(
                "note: the summarizer gave no usable summary; this one was extracted from the \
                 transcript",
            );
        }
        if self.batch() {
            let mut done = self.sessions_done.lock().unwrap_or_else(|e| e.into_inner());
            *done += 1;
            match &self.bars {
                Some(bars) => bars.overall.inc(1),
                None => self.log(&format!(
                    "[{}/{}] {}",
                    *done,
                    self.sessions_total,
                    session_ended(course, session)
                )),
            }
            return;
        }
        if self.json {
            return;
        }
        let streamed = self.stream && !session.read_back;
        let mut printed = self.printed.lock().unwrap_or_else(|e| e.into_inner());
        if !streamed && *printed > 0 {
            let _ = emit("\n");
        }
        if !streamed {
            *printed += 1;
        }
        let _ = print_session(&session.transcript, streamed);
    }

    fn course_finished(&self, course: &CourseInfo, status: &CourseStatus) {
        if let Some(bars) = &self.bars
            && let Some(bar) = bars
                .courses
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&course.id)
        {
            bar.finish_and_clear();
            bars.multi.remove(&bar);
        }
        if self.batch() && *status != CourseStatus::Finished {
            self.log(&format!(
                "course {} ({}) {}",
                course.index + 1,
                label(course),
                describe_status(status)
            ));
        }
    }
}

fn describe_status(status: &CourseStatus) -> String {
    match status {
        CourseStatus::Finished => "finished".into(),
        CourseStatus::Interrupted => "interrupted (resume continues it)".into(),
        CourseStatus::BackendFailure(e) => format!("stopped by a backend failure: {e}"),
        CourseStatus::Failed(e) => format!("failed: {e}"),
        CourseStatus::NotStarted => "not started".into(),
        CourseStatus::Elsewhere => "left to the worker that holds it".into(),
        CourseStatus::TakenOver => "taken over by another worker (this one's lease ran out)".into(),
    }
}

/// A worker's log: a line per course leased and ended, and per session.
pub struct WorkerLog;

impl RunObserver for WorkerLog {
    fn course_started(&self, course: &CourseInfo) {
        eprintln!("cbtsim: course {} ({}) leased", course.id, label(course));
    }

    fn session_started(&self, course: &CourseInfo, number: u32, continued_after: usize) {
        if continued_after > 0 {
            eprintln!(
                "cbtsim: course {} ({}) session {number} continues after turn {continued_after}",
                course.id,
                label(course)
            );
        }
    }

    fn session_finished(&self, course: &CourseInfo, session: &SessionResult) {
        eprintln!(
            "cbtsim: course {} {}",
            course.id,
            session_ended(course, session)
        );
    }

    fn course_finished(&self, course: &CourseInfo, status: &CourseStatus) {
        eprintln!(
            "cbtsim: course {} ({}) {}",
            course.id,
            label(course),
            describe_status(status)
        );
    }
}

/// Each batch's courses by where they stand, as a table.
pub fn describe_batches(statuses: &[cbtsim::store::BatchStatus]) -> String {
    let mut out = format!(
        "{:<6} {:>4}  {:>6} {:>7} {:>8} {:>6}  {:<30} workers\n",
        "batch", "run", "queued", "running", "finished", "failed", "started"
    );
    for s in statuses {
        let running: u64 = s.running.iter().map(|w| w.courses).sum();
        let workers = s
            .running
            .iter()
            .map(|w| format!("{} ({})", w.worker, w.courses))
            .collect::<Vec<_>>()
            .join(", ");
        out += &format!(
            "{:<6} {:>4}  {:>6} {:>7} {:>8} {:>6}  {:<30} {}\n",
            "batch", s.run, s.queued, running, s.finished, s.failed, s.started_at, workers
        );
    }
    out
}

/// Prints a finished session: the whole text, or (when its turns were
/// streamed) what follows them.
fn print_session(transcript: &cbtsim::Transcript, streamed: bool) -> Result<()> {
    let text = text_format::render(transcript);
    if streamed {
        // The turns are on screen, each with its newline.
        let tail = text
            .find("\n\n\nTermination Details:")
            .map_or("", |at| &text[at + 1..]);
        emit(tail)
    } else {
        emit(&text)
    }
}

/// `batch --json`: each course's status and sessions (not their texts:
/// `cbtsim export` has those), and the token totals.
pub fn batch_summary(outcome: &RunOutcome) -> serde_json::Value {
    let courses: Vec<_> = outcome
        .courses
        .iter()
        .map(|c| {
            let sessions: Vec<_> = c
                .sessions
                .iter()
                .map(|s| {
                    serde_json::json!({
                        "id": s.id,
                        "session_number": s.transcript.session_number,
                        "turns": s.transcript.turns.len(),
                        "termination": s.transcript.termination.as_ref().map(|t| t.display_name()),
                        "safety_events": s.safety_events.len(),
                    })
                })
                .collect();
            serde_json::json!({
                "course": c.course,
                "status": c.status,
                "sessions": sessions,
            })
        })
        .collect();
    serde_json::json!({
        "run": outcome.run,
        "finished": outcome.finished,
        "courses": courses,
        "tokens": outcome.tokens,
    })
}

fn describe_outcome(outcome: &RunOutcome, prices: &BTreeMap<String, Price>) -> String {
    let count = |f: fn(&CourseStatus) -> bool| outcome.count(f);
    let sessions: usize = outcome.courses.iter().map(|c| c.sessions.len()).sum();
    let mut out = format!(
        "run {}: {} courses, {sessions} sessions: {} finished, {} failed, {} stopped by a backend, {} interrupted, {} not started\n",
        outcome.run,
        outcome.courses.len(),
        count(|s| *s == CourseStatus::Finished),
        count(|s| matches!(s, CourseStatus::Failed(_))),
        count(|s| matches!(s, CourseStatus::BackendFailure(_))),
        count(|s| *s == CourseStatus::Interrupted),
        count(|s| *s == CourseStatus::NotStarted),
    );
    out += &describe_tokens(&outcome.tokens, prices);
    out
}

/// Tokens per model and role, with the cost where the config has a price.
fn describe_tokens(tokens: &[TokenTotal], prices: &BTreeMap<String, Price>) -> String {
    let mut out = format!(
        "{:<11} {:>12} {:>12} {:>10}  model\n",
        "role", "prompt", "completion", "cost"
    );
    let mut total = Some(0.0);
    for t in tokens {
        let model = t.model.clone().unwrap_or_default();
        let cost = prices
            .get(&model)
            .map(|p| p.cost(t.prompt_tokens as u64, t.completion_tokens as u64));
        total = total.zip(cost).map(|(a, b)| a + b);
        let mark = if t.estimated { "~" } else { "" };
        out += &format!(
            "{:<11} {:>12} {:>12} {:>10}  {model}\n",
            t.role,
            format!("{mark}{}", t.prompt_tokens),
            format!("{mark}{}", t.completion_tokens),
            cost.map_or("-".into(), |c| format!("{mark}${c:.4}"))
        );
    }
    if tokens.iter().any(|t| t.estimated) {
        out += "~ estimated: the server gave no token counts (about 4 characters a token)\n";
    }
    if let Some(total) = total.filter(|_| !tokens.is_empty()) {
        out += &format!("total cost: ${total:.4}\n");
    }
    out
}

/// `batch --dry-run`, in words.
pub fn describe_estimate(plan: &RunPlan, estimate: &Estimate) -> String {
    let mut out = format!(
        "{} personas ({}) x {} repeats = {} courses of {} sessions: {} sessions, at most {} turns\n",
        plan.personas.len(),
        plan.personas.join(", "),
        plan.repeats,
        estimate.courses,
        plan.sessions,
        estimate.sessions,
        estimate.turns
    );
    out += "estimated tokens (as billed, every session to its last turn):\n";
    for m in &estimate.models {
        out += &format!(
            "  {} ({}): {} prompt, {} completion{}\n",
            m.model,
            m.roles.join(", "),
            m.prompt_tokens,
            m.completion_tokens,
            m.cost.map_or(String::new(), |c| format!(", ${c:.2}"))
        );
    }
    if let Some(cost) = estimate.cost {
        out += &format!("estimated cost: ${cost:.2}\n");
    }
    out
}

/// A crisis detector's evaluation, for people.
pub fn describe_evaluation(name: &str, e: &cbtsim::safety::eval::Evaluation) -> String {
    let mut out = format!(
        "{name}: {} utterances ({} risk, {} safe)\n\
         recall {:.3}   false-positive rate {:.3}   category agreement {:.3}\n\n\
         {:<28} {:>5} {:>7} {:>7} {:>5} {:>7}\n",
        e.utterances,
        e.risk,
        e.safe,
        e.recall,
        e.false_positive_rate,
        e.category_agreement,
        "category",
        "risk",
        "flagged",
        "recall",
        "safe",
        "alarms"
    );
    for s in &e.per_category {
        out += &format!(
            "{:<28} {:>5} {:>7} {:>7.3} {:>5} {:>7}\n",
            s.category.as_str(),
            s.risk,
            s.flagged,
            s.recall,
            s.safe,
            s.false_alarms
        );
    }
    if !e.misses.is_empty() {
        out += &format!("\n{} misses:\n", e.misses.len());
        for m in &e.misses {
            out += &format!(
                "  line {:>4} {:<11} {:<26} (said {}) {}\n",
                m.line,
                m.kind,
                m.category.as_str(),
                m.detected,
                m.text
            );
        }
    }
    out
}
