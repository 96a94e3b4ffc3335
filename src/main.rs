//! The `cbtsim` command: argument parsing and output over the library.

use anyhow::{Context, Result, bail};
use cbtsim::lint::{Finding, lint_parsed};
use cbtsim::persona::{self, LIBRARY, Persona};
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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read, write and check transcripts in the reference text format.
    #[command(subcommand)]
    Transcript(TranscriptCommand),
    /// List, show and check patient personas.
    #[command(subcommand)]
    Persona(PersonaCommand),
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

fn main() -> ExitCode {
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
    match cli.command {
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

fn read(path: &Path) -> Result<String> {
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

fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    emit(&format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// Writes to stdout; a closed pipe (`cbtsim ... | head`) is not an error.
fn emit(text: &str) -> Result<()> {
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
    let path = Path::new(spec);
    let looks_like_file = spec.ends_with(".toml") || spec.contains(std::path::MAIN_SEPARATOR);
    let loaded = if looks_like_file || path.is_file() {
        persona::load_file(path)
    } else {
        match persona::library_persona(spec) {
            Some(loaded) => loaded,
            None => {
                let ids: Vec<&str> = LIBRARY.iter().map(|(id, _)| *id).collect();
                bail!(
                    "no persona '{spec}': not a library id ({}) and not a file",
                    ids.join(", ")
                );
            }
        }
    };
    loaded.map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("invalid persona:\n{}", lines.join("\n"))
    })
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
