//! The reference transcript's text format: a renderer that writes its
//! canonical form and a forgiving parser that reads it back.
//!
//! Canonical layout (what [`render`] writes, byte for byte):
//!
//! ```text
//! Session Number: 1
//!
//! Patient: first paragraph
//!
//! Therapist: first paragraph
//!
//! second paragraph
//!
//!
//! Termination Details:
//! Reason: Natural Session End
//! Details: Detected end phrase: '\btake care\b'
//!
//!
//! Session Summary:
//!
//! Main topics discussed:
//! - item
//!
//! Homework assigned:
//! 1. item
//! ...
//! ```
//!
//! The parser also takes CRLF line ends, trailing spaces, runs of blank lines,
//! either speaker first, a missing termination or summary, missing or empty
//! summary sections, and repeated headers (reported as [`Anomaly`]s, which the
//! linter turns into findings).

use crate::speaker::Speaker;
use crate::summary::{SessionSummary, SummarySection};
use crate::termination::TerminationReason;
use crate::transcript::Transcript;
use crate::turn::Turn;
use std::fmt::Write as _;

pub const SESSION_NUMBER_HEADER: &str = "Session Number:";
pub const TERMINATION_HEADER: &str = "Termination Details:";
pub const SUMMARY_HEADER: &str = "Session Summary:";

/// Writes a transcript in the canonical text form.
pub fn render(transcript: &Transcript) -> String {
    let mut out = format!("{SESSION_NUMBER_HEADER} {}\n", transcript.session_number);
    for turn in &transcript.turns {
        out.push('\n');
        out.push_str(&render_turn(turn));
    }
    if let Some(reason) = &transcript.termination {
        let _ = write!(
            out,
            "\n\n{TERMINATION_HEADER}\nReason: {}\nDetails: {}\n",
            reason.display_name(),
            reason.details()
        );
    }
    if let Some(summary) = &transcript.summary {
        out.push_str("\n\n");
        out.push_str(&render_summary(summary));
    }
    out
}

/// One turn as it appears in a transcript: `Label: text` and a newline.
pub fn render_turn(turn: &Turn) -> String {
    if turn.text.is_empty() {
        format!("{}:\n", turn.speaker.label())
    } else {
        format!("{}: {}\n", turn.speaker.label(), turn.text)
    }
}

/// The `Session Summary:` block, header once.
pub fn render_summary(summary: &SessionSummary) -> String {
    let mut out = format!("{SUMMARY_HEADER}\n");
    for section in SummarySection::ALL {
        let _ = write!(out, "\n{}:\n", section.heading());
        for (i, item) in summary.items(section).iter().enumerate() {
            if section.is_numbered() {
                let _ = writeln!(out, "{}. {item}", i + 1);
            } else {
                let _ = writeln!(out, "- {item}");
            }
        }
    }
    out
}

/// Something in a file that parses but is not canonical; the linter reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// A header line written again, like the reference's second "Session Summary:".
    DuplicateHeader { header: String, line: usize },
}

/// A transcript read from text, with what was odd about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub transcript: Transcript,
    pub anomalies: Vec<Anomaly>,
}

/// Why a file could not be read as a transcript; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Turns,
    Termination,
    Summary,
}

/// Reads a transcript in the reference text format.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = normalized.lines().map(str::trim_end).collect();

    let mut parser = Parser::default();
    let mut rest = lines.iter().enumerate().map(|(i, l)| (i + 1, *l));
    let session_number = loop {
        match rest.next() {
            None => return Err(error(lines.len().max(1), "no 'Session Number: N' header")),
            Some((_, "")) => continue,
            Some((n, line)) => break parse_session_number(n, line)?,
        }
    };
    for (n, line) in rest {
        parser.line(n, line)?;
    }
    parser.finish(session_number)
}

fn parse_session_number(n: usize, line: &str) -> Result<u32, ParseError> {
    let Some(value) = line.strip_prefix(SESSION_NUMBER_HEADER) else {
        return Err(error(
            n,
            format!(
                "expected 'Session Number: N' as the first line, found '{}'",
                clip(line)
            ),
        ));
    };
    value.trim().parse::<u32>().map_err(|_| {
        error(
            n,
            format!(
                "session number must be a whole number, found '{}'",
                value.trim()
            ),
        )
    })
}

#[derive(Default)]
struct Parser {
    block: Option<Block>,
    turns: Vec<(Speaker, Vec<String>)>,
    reason: Option<String>,
    details: Option<String>,
    /// The line of the first `Termination Details:` header.
    termination_at: Option<usize>,
    summary: Option<SessionSummary>,
    section: Option<SummarySection>,
    anomalies: Vec<Anomaly>,
}

impl Parser {
    fn line(&mut self, n: usize, line: &str) -> Result<(), ParseError> {
        if line.starts_with(SESSION_NUMBER_HEADER) {
            self.duplicate(SESSION_NUMBER_HEADER, n);
            return Ok(());
        }
        if line == TERMINATION_HEADER {
            if self.termination_at.is_some() {
                self.duplicate(TERMINATION_HEADER, n);
            }
            self.termination_at.get_or_insert(n);
            self.block = Some(Block::Termination);
            return Ok(());
        }
        if line == SUMMARY_HEADER {
            if self.summary.is_some() {
                self.duplicate(SUMMARY_HEADER, n);
            }
            self.summary.get_or_insert_with(SessionSummary::default);
            self.block = Some(Block::Summary);
            return Ok(());
        }
        match self.block {
            None | Some(Block::Turns) => self.turn_line(n, line),
            Some(Block::Termination) => self.termination_line(n, line),
            Some(Block::Summary) => self.summary_line(n, line),
        }
    }

    fn duplicate(&mut self, header: &str, line: usize) {
        self.anomalies.push(Anomaly::DuplicateHeader {
            header: header.to_string(),
            line,
        });
    }

    fn turn_line(&mut self, n: usize, line: &str) -> Result<(), ParseError> {
        if let Some((speaker, rest)) = turn_label(line) {
            self.block = Some(Block::Turns);
            self.turns
                .push((speaker, vec![rest.trim_start().to_string()]));
            return Ok(());
        }
        match self.turns.last_mut() {
            Some((_, lines)) => lines.push(line.to_string()),
            None if line.is_empty() => {}
            None => {
                return Err(error(
                    n,
                    format!(
                        "expected a turn starting with 'Patient:' or 'Therapist:', found '{}'",
                        clip(line)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn termination_line(&mut self, n: usize, line: &str) -> Result<(), ParseError> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some(reason) = line.strip_prefix("Reason:") {
            self.reason = Some(reason.trim().to_string());
        } else if let Some(details) = line.strip_prefix("Details:") {
            self.details = Some(details.trim().to_string());
        } else {
            return Err(error(
                n,
                format!(
                    "expected 'Reason:' or 'Details:' under Termination Details, found '{}'",
                    clip(line)
                ),
            ));
        }
        Ok(())
    }

    fn summary_line(&mut self, n: usize, line: &str) -> Result<(), ParseError> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some(section) = SummarySection::from_heading(line) {
            self.section = Some(section);
            return Ok(());
        }
        let summary = self.summary.get_or_insert_with(SessionSummary::default);
        let Some(section) = self.section else {
            return Err(error(
                n,
                format!(
                    "expected a summary section heading such as 'Main topics discussed:', found '{}'",
                    clip(line)
                ),
            ));
        };
        let items = summary.items_mut(section);
        match list_item(line) {
            Some(item) => items.push(item.to_string()),
            // A wrapped item: the line continues the one before it.
            None => match items.last_mut() {
                Some(last) => {
                    last.push(' ');
                    last.push_str(line.trim());
                }
                None => items.push(line.trim().to_string()),
            },
        }
        Ok(())
    }

    fn finish(self, session_number: u32) -> Result<Parsed, ParseError> {
        let turns: Vec<Turn> = self
            .turns
            .into_iter()
            .map(|(speaker, lines)| Turn::new(speaker, join_paragraphs(&lines)))
            .collect();
        let last_speaker = turns.last().map(|t| t.speaker);
        let termination = match (self.termination_at, self.reason) {
            (None, _) => None,
            (Some(at), None) => {
                return Err(error(at, "'Termination Details:' has no 'Reason:' line"));
            }
            (Some(_), Some(reason)) => Some(TerminationReason::from_parts(
                &reason,
                self.details.as_deref().unwrap_or(""),
                last_speaker,
            )),
        };
        Ok(Parsed {
            transcript: Transcript {
                session_number,
                turns,
                termination,
                summary: self.summary,
            },
            anomalies: self.anomalies,
        })
    }
}

/// `Patient: ...` or `Therapist: ...` at the start of a line.
fn turn_label(line: &str) -> Option<(Speaker, &str)> {
    [Speaker::Patient, Speaker::Therapist]
        .into_iter()
        .find_map(|s| Some((s, line.strip_prefix(s.label())?.strip_prefix(':')?)))
}

/// `- item`, `* item`, `1. item` or `1) item`.
fn list_item(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    if let Some(rest) = trimmed
        .strip_prefix('-')
        .or_else(|| trimmed.strip_prefix('*'))
    {
        return Some(rest.trim());
    }
    let digits = trimmed.len()
        - trimmed
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    if digits == 0 {
        return None;
    }
    let rest = &trimmed[digits..];
    rest.strip_prefix('.')
        .or_else(|| rest.strip_prefix(')'))
        .map(str::trim)
}

/// A turn's lines as text: no leading or trailing blank lines, and at most
/// one blank line between paragraphs.
fn join_paragraphs(lines: &[String]) -> String {
    let mut out = String::new();
    let mut pending_blank = false;
    for line in lines {
        if line.is_empty() {
            pending_blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if pending_blank { "\n\n" } else { "\n" });
        }
        out.push_str(line);
        pending_blank = false;
    }
    // The text starts right after "Label: ", so it cannot keep an indent.
    match out.find(|c: char| !c.is_whitespace()) {
        Some(start) if start > 0 => out[start..].to_string(),
        _ => out,
    }
}

fn error(line: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        line,
        message: message.into(),
    }
}

fn clip(line: &str) -> String {
    const MAX: usize = 60;
    match line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}
