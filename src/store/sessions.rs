//! Writing sessions as they happen (each turn in its own transaction, so
//! a kill loses at most the turn being spoken), and reading back how far
//! each session of a course got.

use super::db::{Conn, DbError, params};
use super::{Lease, Store, StoreError, mood, now};
use crate::course::{HomeworkDone, PatientState};
use crate::persona::Mood;
use crate::session::{RoleUsage, SafetyEvent};
use crate::speaker::Speaker;
use crate::summary::SessionSummary;
use crate::termination::TerminationReason;
use crate::turn::Turn;

/// A session of a run, as far as it got.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub id: i64,
    pub session_number: u32,
    pub termination_reason: Option<String>,
    pub has_summary: bool,
    pub summary_error: Option<String>,
    pub mood: Option<Mood>,
    /// How many safety events it recorded.
    pub safety_events: u32,
}

impl SessionState {
    /// Whether it stopped short (Ctrl-C, a failed backend) or never ended:
    /// such a session is continued, not run again.
    pub fn resumable(&self) -> bool {
        self.termination_reason.as_deref().is_none_or(|r| {
            r == crate::termination::INTERRUPTED || r == crate::termination::BACKEND_FAILURE
        })
    }
}

impl Store {
    /// A new session, with where the patient stands as it starts.
    pub fn start_session(
        &self,
        fence: Option<Lease>,
        run: i64,
        course: Option<i64>,
        persona: i64,
        session_number: u32,
        state: &PatientState,
    ) -> Result<i64, StoreError> {
        self.fenced(fence, |tx| {
            tx.insert(
            "INSERT INTO sessions (run_id, course_id, persona, session_number, started_at, phq9, gad7, homework_done)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
            params![
                run,
                course,
                persona,
                session_number,
                now(),
                state.mood.phq9,
                state.mood.gad7,
                state.homework.map(HomeworkDone::as_str)
            ],
        )
        })
    }

    /// Stores a turn the moment it is spoken (one transaction per turn).
    /// With a lease, only while it is held (see `queue.rs`).
    pub fn add_turn(
        &self,
        fence: Option<Lease>,
        session: i64,
        position: usize,
        turn: &Turn,
    ) -> Result<(), StoreError> {
        let meta = serde_json::to_string(&turn.meta).expect("metadata serialises");
        let insert = "INSERT INTO turns (session_id, position, speaker, text, meta) VALUES (?1, ?2, ?3, ?4, ?5)";
        let params = params![session, position, turn.speaker.as_str(), turn.text, meta];
        match fence {
            // One statement is its own transaction.
            None => self.execute(insert, params).map(|_| ()),
            Some(_) => self.fenced(fence, |tx| tx.execute(insert, params).map(|_| ())),
        }
    }

    /// Replaces a session's stored safety events with `events`: the
    /// session stores them whenever they change, so one that stops before
    /// its end (a crash, a full disk) still shows its disclosures.
    pub fn replace_safety_events(
        &self,
        fence: Option<Lease>,
        session: i64,
        events: &[SafetyEvent],
    ) -> Result<(), StoreError> {
        self.fenced(fence, |tx| replace_safety_events(tx, session, events))
    }

    /// Records how a session ended, what each agent used (per role and
    /// model) and its safety events, in one transaction: a session is never
    /// stored as ended without them. The events replace those stored as
    /// they happened (a resumed session finds its earlier ones again).
    pub fn finish_session(
        &mut self,
        fence: Option<Lease>,
        session: i64,
        reason: &TerminationReason,
        usage: &[RoleUsage],
        events: &[SafetyEvent],
    ) -> Result<(), StoreError> {
        let speaker = match reason {
            TerminationReason::NaturalEnd { speaker, .. } => speaker.map(Speaker::as_str),
            _ => None,
        };
        self.fenced(fence, |tx| {
            tx.execute(
                "UPDATE sessions SET finished_at = ?1, termination_reason = ?2, termination_details = ?3, termination_speaker = ?4 WHERE id = ?5",
                params![now(), reason.display_name(), reason.details(), speaker, session],
            )?;
            for share in usage {
                add_usage(tx, session, share)?;
            }
            replace_safety_events(tx, session, events)
        })
    }

    /// Stores a session's summary (or why there is none) with what the
    /// summarizer used, in one transaction: a summary is never written
    /// without its usage, nor its usage twice.
    pub fn set_summary(
        &mut self,
        fence: Option<Lease>,
        session: i64,
        summary: Result<&SessionSummary, &str>,
        usage: Option<&RoleUsage>,
    ) -> Result<(), StoreError> {
        let (json, error) = match summary {
            Ok(s) => (
                Some(serde_json::to_string(s).expect("a summary serialises")),
                None,
            ),
            Err(e) => (None, Some(e)),
        };
        self.fenced(fence, |tx| {
            tx.execute(
                "UPDATE sessions SET summary = ?1, summary_error = ?2 WHERE id = ?3",
                params![json, error, session],
            )?;
            if let Some(share) = usage {
                add_usage(tx, session, share)?;
            }
            Ok(())
        })
    }

    /// The sessions of a course, in order.
    pub fn course_sessions(&self, course: i64) -> Result<Vec<SessionState>, StoreError> {
        self.rows(
            "SELECT id, session_number, termination_reason, summary IS NOT NULL, summary_error, phq9, gad7,
                    (SELECT COUNT(*) FROM safety_events e WHERE e.session_id = sessions.id)
                 FROM sessions WHERE course_id = ?1 ORDER BY session_number, id",
            params![course],
            |r| {
                Ok(SessionState {
                    id: r.get(0)?,
                    session_number: r.get(1)?,
                    termination_reason: r.get(2)?,
                    has_summary: r.get(3)?,
                    summary_error: r.get(4)?,
                    mood: mood(r.get(5)?, r.get(6)?),
                    safety_events: r.get(7)?,
                })
            },
        )
    }

    /// Opens a stopped session again for more turns: its ending, usage,
    /// safety events, evaluations and ratings are cleared (they are recorded anew
    /// when it ends, and it can be evaluated and rated again; its safety
    /// events as soon as it resumes, found again in its turns); its turns stay.
    pub fn reopen_session(&mut self, fence: Option<Lease>, session: i64) -> Result<(), StoreError> {
        self.fenced(fence, |tx| {
            tx.execute(
                "UPDATE sessions SET finished_at = NULL, termination_reason = NULL, termination_details = NULL, termination_speaker = NULL WHERE id = ?1",
                params![session],
            )?;
            for table in ["token_usage", "safety_events", "evaluations", "ratings"] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE session_id = ?1"),
                    params![session],
                )?;
            }
            Ok(())
        })
    }
}

fn replace_safety_events(
    conn: &mut Conn,
    session: i64,
    events: &[SafetyEvent],
) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM safety_events WHERE session_id = ?1",
        params![session],
    )?;
    for event in events {
        conn.execute(
            "INSERT INTO safety_events (session_id, turn, category, level, words, protocol_turn) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session,
                event.turn,
                event.category.as_str(),
                event.level.as_str(),
                serde_json::to_string(&event.words).expect("words serialise"),
                event.protocol_turn
            ],
        )?;
    }
    Ok(())
}

fn add_usage(conn: &mut Conn, session: i64, share: &RoleUsage) -> Result<(), DbError> {
    let u = &share.usage;
    conn.execute(
        "INSERT INTO token_usage (session_id, role, model, prompt_tokens, cached_prompt_tokens,
             completion_tokens, replies, rejected_replies, repaired_replies, estimated_replies)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            session,
            share.role.as_str(),
            share.model,
            u.prompt_tokens as i64,
            u.cached_prompt_tokens as i64,
            u.completion_tokens as i64,
            u.replies as i64,
            u.rejected_replies as i64,
            u.repaired_replies as i64,
            u.estimated_replies as i64
        ],
    )?;
    Ok(())
}
