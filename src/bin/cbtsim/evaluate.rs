//! `cbtsim eval`: flags to library calls, progress, and the results.

use anyhow::{Result, bail};
use cbtsim::eval::{self, EvalSettings, SessionEvaluation};
use cbtsim::model::spec::{AgentRole, Config, ModelSpec, Models};
use cbtsim::store::{SessionScope, Store};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[command(subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    command: Option<EvalCommand>,
    #[arg(long)]
    db: Option<PathBuf>,
    /// One session, by id.
    #[arg(required_unless_present_any = ["course", "run", "all"], conflicts_with_all = ["course", "run", "all"])]
    session: Option<i64>,
    /// One course's sessions.
    #[arg(long, conflicts_with_all = ["run", "all"])]
    course: Option<i64>,
    /// One run's sessions (a batch, a course or a single run, by id).
    #[arg(long, visible_alias = "batch", conflicts_with = "all")]
    run: Option<i64>,
    /// Every session in the store.
    #[arg(long)]
    all: bool,
    /// The judge model (default: `judge` in [models], else the default model).
    #[arg(long, value_name = "SPEC")]
    judge: Option<ModelSpec>,
    /// The patient model, for the patient-reported outcomes (default:
    /// `patient` in [models], else the default model).
    #[arg(long, value_name = "SPEC")]
    patient_model: Option<ModelSpec>,
    /// What to evaluate, comma-separated: metrics, ctrs, safety, pro
    /// (patient-reported outcomes).
    #[arg(long, value_delimiter = ',', default_value = "metrics,ctrs,safety,pro", value_parser = ["metrics", "ctrs", "safety", "pro"])]
    only: Vec<String>,
    /// Evaluate again what is already stored for this judge and rubric.
    #[arg(long)]
    force: bool,
    /// Sessions evaluated at once (an HTTP judge's own limits still hold;
    /// the embedded model runs one request at a time unless `parallel`).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Print a JSON array, one object per session.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum EvalCommand {
    /// Agreement between raters of the CTRS, the judge (stored scores)
    /// among them: for every pair, the paired ratings, quadratic weighted
    /// kappa, ICC(2,1) and Spearman's rho, overall and per item.
    Agreement {
        #[arg(long)]
        db: Option<PathBuf>,
        /// People's ratings: CSV with the header session_id,item,rater,score.
        #[arg(long, value_name = "FILE.csv")]
        ratings: Vec<PathBuf>,
        /// Print {"pairs": [{"a", "b", "n", "quadratic_weighted_kappa",
        /// "icc2_1", "spearman", "per_item": [...]}]}.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: EvalArgs, config: Option<&Path>) -> Result<()> {
    if let Some(EvalCommand::Agreement { db, ratings, json }) = args.command {
        // `eval --db X agreement` and `eval agreement --db X` both name it.
        return agreement(db.or(args.db), &ratings, json);
    }
    let path = super::existing_store(args.db)?;
    let store = std::sync::Mutex::new(Store::open(&path)?);
    let scope = match (args.session, args.course, args.run) {
        (Some(id), _, _) => SessionScope::One(id),
        (_, Some(id), _) => SessionScope::Course(id),
        (_, _, Some(id)) => SessionScope::Run(id),
        _ => SessionScope::All,
    };
    let sessions = store.lock().expect("not poisoned yet").session_ids(scope)?;
    if sessions.is_empty() {
        let store = store.lock().expect("not poisoned yet");
        bail!("{} holds no sessions to evaluate", store.path().display());
    }
    let settings = EvalSettings {
        metrics: args.only.iter().any(|o| o == "metrics"),
        ctrs: args.only.iter().any(|o| o == "ctrs"),
        safety: args.only.iter().any(|o| o == "safety"),
        outcomes: args.only.iter().any(|o| o == "pro"),
        force: args.force,
        concurrency: args.concurrency,
    };
    // One set of models: a judge and a patient naming the same spec share it.
    let mut models = Models::new(Config::load(config)?);
    let judge = match settings.ctrs || settings.safety {
        true => Some(models.for_role(AgentRole::Judge, args.judge.as_ref())?),
        false => None,
    };
    let patient = match settings.outcomes {
        true => Some(models.for_role(AgentRole::Patient, args.patient_model.as_ref())?),
        false => None,
    };
    let progress = indicatif::ProgressBar::new(sessions.len() as u64);
    if let Some(judge) = &judge {
        progress.println(format!("cbtsim: judge {}", judge.describe()));
    }
    let evaluations = eval::evaluate(
        &store,
        &sessions,
        judge.as_deref(),
        patient.as_deref(),
        settings,
        &|session| {
            progress.inc(1);
            progress.set_message(format!("session {session}"));
        },
    );
    progress.finish_and_clear();
    let evaluated = evaluations?;
    if !evaluated.not_ended.is_empty() {
        eprintln!(
            "cbtsim: left out {} session(s) that have not ended (still running, or to be resumed): {}",
            evaluated.not_ended.len(),
            evaluated
                .not_ended
                .iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if args.json {
        return super::print_json(&evaluated.sessions);
    }
    super::emit(&describe(&evaluated.sessions))
}

fn describe(evaluations: &[SessionEvaluation]) -> String {
    let mut out = String::new();
    for e in evaluations {
        out += &format!("session {}", e.session_id);
        if !e.reused.is_empty() {
            out += &format!(" (stored: {})", e.reused.join(", "));
        }
        out += "\n";
        if let Some(m) = &e.metrics {
            let present: Vec<&str> = m
                .elements
                .iter()
                .filter(|el| el.present)
                .map(|el| el.element.as_str())
                .collect();
            out += &format!(
                "  {} turns; words per turn: therapist {:.1}, patient {:.1}; therapist questions per turn {:.2}; therapist talk {:.0}%\n",
                m.turns,
                m.therapist_words_per_turn,
                m.patient_words_per_turn,
                m.therapist_questions_per_turn,
                m.therapist_talk_ratio * 100.0
            );
            out += &format!(
                "  CBT elements: {}; techniques: {}; homework set: {}; repairs {}; safety events {}; ended: {}\n",
                if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                },
                if m.techniques.is_empty() {
                    "none".into()
                } else {
                    m.techniques.join(", ")
                },
                if m.homework_assigned { "yes" } else { "no" },
                m.repairs,
                m.safety_events,
                m.termination.as_deref().unwrap_or("not ended")
            );
        }
        if let Some(c) = &e.ctrs {
            out += &format!(
                "  CTRS {}/66 ({}; competence threshold {}), judge {}\n",
                c.total,
                c.rubric_version,
                eval::ctrs::COMPETENCE_THRESHOLD,
                c.judge
            );
            for item in &c.items {
                out += &format!(
                    "    {:<28} {}  {}\n",
                    item.item, item.score, item.justification
                );
            }
            if !c.dropped_quotes.is_empty() {
                out += &format!(
                    "  quotes not found in the transcript, dropped: {}\n",
                    c.dropped_quotes.join(", ")
                );
            }
        }
        if let Some(o) = &e.outcomes {
            let rating: Vec<String> = o
                .session_rating
                .iter()
                .map(|(item, score)| format!("{item} {score}"))
                .collect();
            out += &format!(
                "  patient-reported: PHQ-9 {} -> {}, GAD-7 {} -> {}; session rating: {} (patient {})\n",
                o.phq9_start.total,
                o.phq9_end.total,
                o.gad7_start.total,
                o.gad7_end.total,
                rating.join(", "),
                o.model
            );
        }
        if !e.unavailable.is_empty() {
            out += &format!("  unavailable (no persona): {}\n", e.unavailable.join(", "));
        }
        if let Some(s) = &e.safety {
            out += &format!(
                "  safety: {} ({}; {})\n",
                s.outcome, s.relevance, s.rubric_version
            );
            for c in &s.criteria {
                out += &format!("    {:<28} {}\n", c.criterion, c.verdict);
            }
        }
    }
    out
}

fn agreement(db: Option<PathBuf>, files: &[PathBuf], json: bool) -> Result<()> {
    let store = Store::open_to_read(&super::existing_store(db)?)?;
    let mut ratings = Vec::new();
    for file in files {
        ratings.extend(eval::agreement::read_csv(file)?);
    }
    let pairs = eval::agreement(&store, ratings)?;
    if json {
        return super::print_json(&serde_json::json!({ "pairs": pairs }));
    }
    if pairs.is_empty() {
        bail!(
            "no two raters scored the same session and item: give people's ratings with --ratings, and evaluate the sessions with a judge (cbtsim eval)"
        );
    }
    let figure = |f: Option<f64>| f.map_or("n/a".to_string(), |f| format!("{f:.3}"));
    let mut out = String::new();
    for pair in &pairs {
        out += &format!(
            "{} vs {}: n {}, quadratic weighted kappa {}, ICC(2,1) {}, Spearman {}\n",
            pair.a,
            pair.b,
            pair.overall.n,
            figure(pair.overall.quadratic_weighted_kappa),
            figure(pair.overall.icc2_1),
            figure(pair.overall.spearman)
        );
        for item in &pair.per_item {
            out += &format!(
                "  {:<28} n {:>3}  kappa {:>6}  ICC {:>6}  rho {:>6}\n",
                item.item,
                item.figures.n,
                figure(item.figures.quadratic_weighted_kappa),
                figure(item.figures.icc2_1),
                figure(item.figures.spearman)
            );
        }
    }
    super::emit(&out)
}

#[derive(clap::Args)]
pub struct ReportArgs {
    #[arg(long)]
    db: Option<PathBuf>,
    /// One course's sessions.
    #[arg(long, required_unless_present_any = ["run", "all"], conflicts_with_all = ["run", "all"])]
    course: Option<i64>,
    /// One run's sessions (a batch, by its run id).
    #[arg(long, visible_alias = "batch", conflicts_with = "all")]
    run: Option<i64>,
    /// Every session in the store.
    #[arg(long)]
    all: bool,
    #[arg(long, value_parser = ["markdown", "json", "html"])]
    format: String,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
}

pub fn report(args: ReportArgs) -> Result<()> {
    use cbtsim::eval::report;
    let store = Store::open_to_read(&super::existing_store(args.db)?)?;
    let scope = match (args.course, args.run) {
        (Some(id), _) => SessionScope::Course(id),
        (_, Some(id)) => SessionScope::Run(id),
        _ => SessionScope::All,
    };
    let gathered = report::gather(&store, scope)?;
    let text = match args.format.as_str() {
        "markdown" => report::markdown(&gathered),
        "html" => report::html(&gathered),
        _ => serde_json::to_string_pretty(&gathered)? + "\n",
    };
    std::fs::write(&args.out, text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", args.out.display()))?;
    eprintln!(
        "cbtsim: wrote {} ({} sessions, {} courses)",
        args.out.display(),
        gathered.sessions.len(),
        gathered.courses.len()
    );
    Ok(())
}
