//! Reading sessions back, listing, and token totals. Reads are lossless:
//! a stored row that does not decode is `StoreError::Corrupt`, naming the
//! table and the row, never a default.

use super::db::{Row, params};
use super::{Store, StoreError, mood};
use crate::persona::Mood;
use crate::risk::RiskLevel;
use crate::safety::Category;
use crate::session::SafetyEvent;
use crate::speaker::Speaker;
use crate::termination::TerminationReason;
use crate::transcript::Transcript;
use crate::turn::{Turn, TurnMeta};
use serde::Serialize;

/// A row of `cbtsim list`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub kind: &'static str,
    pub id: i64,
    pub persona: String,
    /// The session's number, or for a course the number of sessions stored.
    pub session_number: i64,
    pub turns: i64,
    pub termination_reason: Option<String>,
    pub started_at: String,
    /// The patient's scores as the session started (for a course, its
    /// latest session); none for imported sessions.
    pub mood: Option<Mood>,
}

impl Store {
    /// Courses and the sessions outside courses, then each course's
    /// sessions, oldest first.
    pub fn list(&self) -> Result<Vec<Listed>, StoreError> {
        // Both queries give: id, persona, session number, started, ended,
        // turns, PHQ-9, GAD-7.
        let listed = |kind: &'static str| {
            move |r: &Row| {
                Ok(Listed {
                    kind,
                    id: r.get(0)?,
                    persona: r.get(1)?,
                    session_number: r.get(2)?,
                    started_at: r.get(3)?,
                    termination_reason: r.get(4)?,
                    turns: r.get(5)?,
                    mood: mood(r.get(6)?, r.get(7)?),
                })
            }
        };
        let mut rows = self.rows(
            "SELECT c.id, p.persona_id,
                    (SELECT COUNT(*) FROM sessions s WHERE s.course_id = c.id),
                    c.started_at,
                    (SELECT s.termination_reason FROM sessions s WHERE s.course_id = c.id ORDER BY s.session_number DESC LIMIT 1),
                    (SELECT COUNT(*) FROM turns t JOIN sessions s ON t.session_id = s.id WHERE s.course_id = c.id),
                    (SELECT s.phq9 FROM sessions s WHERE s.course_id = c.id ORDER BY s.session_number DESC LIMIT 1),
                    (SELECT s.gad7 FROM sessions s WHERE s.course_id = c.id ORDER BY s.session_number DESC LIMIT 1)
             FROM courses c JOIN personas p ON p.id = c.persona JOIN runs r ON r.id = c.run_id
             -- A single run's course is its one session, listed below.
             WHERE r.command != 'run' ORDER BY c.id",
            params![],
            listed("course"),
        )?;
        rows.extend(self.rows(
            "SELECT s.id, COALESCE(p.persona_id, ''), s.session_number, s.started_at, s.termination_reason,
                    (SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id), s.phq9, s.gad7
             FROM sessions s LEFT JOIN personas p ON p.id = s.persona ORDER BY s.id",
            params![],
            listed("session"),
        )?);
        Ok(rows)
    }

    pub fn last_session(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .row("SELECT MAX(id) FROM sessions", params![], |r| r.get(0))?
            .flatten())
    }

    /// A stored session as a transcript.
    pub fn transcript(&self, session: i64) -> Result<Transcript, StoreError> {
        let head = self
            .row(
                "SELECT session_number, termination_reason, termination_details, termination_speaker, summary FROM sessions WHERE id = ?1",
                params![session],
                |r| {
                    Ok((
                        r.get::<u32>(0)?,
                        r.get::<Option<String>>(1)?,
                        r.get::<Option<String>>(2)?,
                        r.get::<Option<String>>(3)?,
                        r.get::<Option<String>>(4)?,
                    ))
                },
            )?
            .ok_or_else(|| StoreError::NoSuchSession {
                path: self.path.clone(),
                id: session,
            })?;
        let (number, reason, details, speaker, summary) = head;
        let corrupt = |table: &'static str, row: String, message: String| StoreError::Corrupt {
            path: self.path.clone(),
            table,
            row,
            message,
        };
        let rows = self.rows(
            "SELECT position, speaker, text, meta FROM turns WHERE session_id = ?1 ORDER BY position",
            params![session],
            |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<String>(2)?, r.get::<String>(3)?)),
        )?;
        let mut turns = Vec::new();
        for (position, speaker, text, meta) in rows {
            let row = || format!("session {session} position {position}");
            turns.push(Turn {
                speaker: speaker_named(&speaker).map_err(|m| corrupt("turns", row(), m))?,
                text,
                meta: serde_json::from_str::<TurnMeta>(&meta)
                    .map_err(|e| corrupt("turns", row(), format!("metadata: {e}")))?,
            });
        }
        let speaker = speaker
            .as_deref()
            .map(speaker_named)
            .transpose()
            .map_err(|m| corrupt("sessions", session.to_string(), m))?;
        let termination = reason.map(|reason| {
            let mut parsed =
                TerminationReason::from_parts(&reason, details.as_deref().unwrap_or(""), speaker);
            if let TerminationReason::NaturalEnd { speaker: s, .. } = &mut parsed {
                *s = speaker;
            }
            parsed
        });
        let summary = summary
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| corrupt("sessions", session.to_string(), format!("summary: {e}")))?;
        Ok(Transcript {
            session_number: number,
            turns,
            termination,
            summary,
        })
    }
}

/// A stored session with what it belongs to.
#[derive(Debug, Clone)]
pub struct StoredSession {
    pub id: i64,
    pub persona: Option<String>,
    pub course: Option<i64>,
    /// The patient's scores as it started; none for imported sessions.
    pub mood: Option<Mood>,
    pub transcript: Transcript,
    /// The crisis detector's findings, in order.
    pub safety_events: Vec<SafetyEvent>,
}

impl Store {
    /// The sessions of one course, or of the whole store, in order.
    pub fn sessions(&self, course: Option<i64>) -> Result<Vec<StoredSession>, StoreError> {
        // The heads first, each transcript read after. Sessions outside a
        // course come first: SQLite sorts NULL first and PostgreSQL last,
        // so the order says so itself.
        let mut sessions = self.rows(
            "SELECT s.id, p.persona_id, s.course_id, s.phq9, s.gad7 FROM sessions s LEFT JOIN personas p ON p.id = s.persona
                 WHERE CAST(?1 AS BIGINT) IS NULL OR s.course_id = ?1 ORDER BY s.course_id IS NOT NULL, s.course_id, s.session_number, s.id",
            params![course],
            |r| {
                Ok(StoredSession {
                    id: r.get(0)?,
                    persona: r.get(1)?,
                    course: r.get(2)?,
                    mood: mood(r.get(3)?, r.get(4)?),
                    transcript: Transcript::new(0),
                    safety_events: Vec::new(),
                })
            },
        )?;
        if let Some(course) = course
            && sessions.is_empty()
        {
            return Err(StoreError::NoSuchCourse {
                path: self.path.clone(),
                id: course,
            });
        }
        for session in &mut sessions {
            session.transcript = self.transcript(session.id)?;
            session.safety_events = self.safety_events(session.id)?;
        }
        Ok(sessions)
    }
}

/// Tokens a store records for one role and model, summed over sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenTotal {
    pub role: String,
    pub model: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Whether some of these counts are estimates (the server gave none).
    pub estimated: bool,
}

impl Store {
    /// Token usage per role and model over the whole store, or one run.
    pub fn token_totals(&self, run: Option<i64>) -> Result<Vec<TokenTotal>, StoreError> {
        let mut totals = self.rows(
            // PostgreSQL sums BIGINTs as NUMERIC: cast back.
            "SELECT u.role, u.model, CAST(SUM(u.prompt_tokens) AS BIGINT),
                    CAST(SUM(u.completion_tokens) AS BIGINT), SUM(u.estimated_replies) > 0
                 FROM token_usage u JOIN sessions s ON s.id = u.session_id
                 WHERE CAST(?1 AS BIGINT) IS NULL OR s.run_id = ?1
                 GROUP BY u.role, u.model",
            params![run],
            |r| {
                Ok(TokenTotal {
                    role: r.get(0)?,
                    model: r.get(1)?,
                    prompt_tokens: r.get(2)?,
                    completion_tokens: r.get(3)?,
                    estimated: r.get(4)?,
                })
            },
        )?;
        // Sorted here: the two databases order text by different rules.
        totals.sort_by(|a, b| (&a.role, &a.model).cmp(&(&b.role, &b.model)));
        Ok(totals)
    }
}

/// How the guards fared with a session's speakers' replies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReplyCounts {
    /// Replies generated, every candidate counted.
    pub replies: i64,
    /// Of those, rejected by the guards.
    pub rejected: i64,
    /// Of those, accepted after a repair.
    pub repaired: i64,
}

impl Store {
    /// The guards' counts over a session's therapist and patient replies
    /// (not the summarizer's or the safety model's).
    pub fn reply_counts(&self, session: i64) -> Result<ReplyCounts, StoreError> {
        let counts = self.rows(
            "SELECT CAST(COALESCE(SUM(replies), 0) AS BIGINT),
                    CAST(COALESCE(SUM(rejected_replies), 0) AS BIGINT),
                    CAST(COALESCE(SUM(repaired_replies), 0) AS BIGINT)
                 FROM token_usage WHERE session_id = ?1 AND role IN ('therapist', 'patient')",
            params![session],
            |r| {
                Ok(ReplyCounts {
                    replies: r.get(0)?,
                    rejected: r.get(1)?,
                    repaired: r.get(2)?,
                })
            },
        )?;
        Ok(counts.into_iter().next().unwrap_or_default())
    }

    /// A session's safety events, in order.
    pub fn safety_events(&self, session: i64) -> Result<Vec<SafetyEvent>, StoreError> {
        let rows = self.rows(
            "SELECT rowid, turn, category, level, words, protocol_turn FROM safety_events
                 WHERE session_id = ?1 ORDER BY turn, rowid",
            params![session],
            |r| {
                Ok((
                    r.get::<i64>(0)?,
                    r.get::<i64>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<String>(4)?,
                    r.get::<Option<i64>>(5)?,
                ))
            },
        )?;
        rows.into_iter()
            .map(|(row, turn, category, level, words, protocol_turn)| {
                let corrupt = |message: String| StoreError::Corrupt {
                    path: self.path.clone(),
                    table: "safety_events",
                    row: row.to_string(),
                    message,
                };
                Ok(SafetyEvent {
                    turn: turn as usize,
                    category: Category::from_stored(&category)
                        .ok_or_else(|| corrupt(format!("unknown category {category:?}")))?,
                    level: RiskLevel::from_name(&level)
                        .ok_or_else(|| corrupt(format!("unknown risk level {level:?}")))?,
                    words: serde_json::from_str(&words)
                        .map_err(|e| corrupt(format!("words: {e}")))?,
                    protocol_turn: protocol_turn.map(|t| t as usize),
                })
            })
            .collect()
    }
}

/// A speaker as the store writes it ("patient", "therapist").
fn speaker_named(name: &str) -> Result<Speaker, String> {
    match name {
        "therapist" => Ok(Speaker::Therapist),
        "patient" => Ok(Speaker::Patient),
        other => Err(format!("unknown speaker {other:?}")),
    }
}
