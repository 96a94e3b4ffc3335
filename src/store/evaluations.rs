//! Evaluations of sessions: one row per session, kind (`ctrs`, `metrics`),
//! judge and rubric version, holding the result as JSON. Scores of another
//! judge or rubric version are kept beside, never overwritten or mixed.

use super::db::params;
use super::{Store, StoreError, now};
use crate::persona::Persona;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Which stored sessions to evaluate or report on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionScope {
    One(i64),
    Course(i64),
    Run(i64),
    All,
}

impl Store {
    /// Stores a person's CTRS ratings of a session, (item key, score)
    /// each, in one transaction, replacing their earlier score of an item.
    pub fn set_ratings(
        &self,
        session: i64,
        rater: &str,
        scores: &[(String, u32)],
    ) -> Result<(), StoreError> {
        self.transcript(session)?;
        self.transaction(|tx| {
            for (item, score) in scores {
                tx.execute(
                    "INSERT INTO ratings (session_id, rater, item, score, rated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (session_id, rater, item)
                     DO UPDATE SET score = excluded.score, rated_at = excluded.rated_at",
                    params![session, rater, item, *score, now()],
                )?;
            }
            Ok(())
        })
    }

    /// The stored ratings, of one session or of all: (session, item,
    /// rater, score), by session, rater and item.
    pub fn ratings(
        &self,
        session: Option<i64>,
    ) -> Result<Vec<(i64, String, String, u32)>, StoreError> {
        let mut rows: Vec<(i64, String, String, u32)> = self.rows(
            "SELECT session_id, item, rater, score FROM ratings
             WHERE CAST(?1 AS BIGINT) IS NULL OR session_id = ?1",
            params![session],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        // Sorted here: the two databases order text by different rules.
        rows.sort_by(|a, b| (a.0, &a.2, &a.1).cmp(&(b.0, &b.2, &b.1)));
        Ok(rows)
    }

    /// Stores an evaluation, replacing one of the same kind, judge and
    /// rubric version.
    pub fn set_evaluation(
        &self,
        session: i64,
        kind: &str,
        judge: &str,
        rubric_version: &str,
        result: &Value,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO evaluations (session_id, kind, judge, rubric_version, result, evaluated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (session_id, kind, judge, rubric_version)
             DO UPDATE SET result = excluded.result, evaluated_at = excluded.evaluated_at",
            params![session, kind, judge, rubric_version, result.to_string(), now()],
        )?;
        Ok(())
    }

    /// A stored evaluation, if there is one of that kind, judge and rubric
    /// version; one that does not read as `T` is an error naming it.
    pub fn evaluation<T: DeserializeOwned>(
        &self,
        session: i64,
        kind: &str,
        judge: &str,
        rubric_version: &str,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = self.row(
            "SELECT result FROM evaluations
             WHERE session_id = ?1 AND kind = ?2 AND judge = ?3 AND rubric_version = ?4",
            params![session, kind, judge, rubric_version],
            |r| r.get(0),
        )?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                table: "evaluations",
                row: format!("session {session}, {kind}"),
                message: e.to_string(),
            })
        })
        .transpose()
    }

    /// Every stored evaluation of a kind and rubric version, as (session,
    /// judge, result), by session.
    pub fn evaluations_of<T: DeserializeOwned>(
        &self,
        kind: &str,
        rubric_version: &str,
    ) -> Result<Vec<(i64, String, T)>, StoreError> {
        let mut rows: Vec<(i64, String, String)> = self.rows(
            "SELECT session_id, judge, result FROM evaluations
             WHERE kind = ?1 AND rubric_version = ?2",
            params![kind, rubric_version],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        // Sorted here: the two databases order text by different rules.
        rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        rows.into_iter()
            .map(|(session, judge, text)| {
                let result = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    table: "evaluations",
                    row: format!("session {session}, {kind}, {judge}"),
                    message: e.to_string(),
                })?;
                Ok((session, judge, result))
            })
            .collect()
    }

    /// Whether a session has ended (an imported one always has): one still
    /// running, or stopped to be resumed, may yet get more turns.
    pub fn session_ended(&self, session: i64) -> Result<bool, StoreError> {
        self.row(
            "SELECT finished_at IS NOT NULL FROM sessions WHERE id = ?1",
            params![session],
            |r| r.get(0),
        )?
        .ok_or_else(|| StoreError::NoSuchSession {
            path: self.path.clone(),
            id: session,
        })
    }

    /// The persona a session was run with, as it was then (none for an
    /// imported session).
    pub fn session_persona(&self, session: i64) -> Result<Option<Persona>, StoreError> {
        let snapshot: Option<String> = self.row(
            "SELECT p.snapshot FROM sessions s JOIN personas p ON p.id = s.persona WHERE s.id = ?1",
            params![session],
            |r| r.get(0),
        )?;
        snapshot
            .map(|snapshot| {
                serde_json::from_str(&snapshot).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    table: "personas",
                    row: format!("of session {session}"),
                    message: format!("the persona snapshot: {e}"),
                })
            })
            .transpose()
    }

    /// The ids of the sessions in `scope`, oldest first; a session, course
    /// or run that does not exist is an error naming it.
    pub fn session_ids(&self, scope: SessionScope) -> Result<Vec<i64>, StoreError> {
        let ids = match scope {
            SessionScope::One(id) => {
                self.rows("SELECT id FROM sessions WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
            }
            SessionScope::Course(id) => self.rows(
                "SELECT id FROM sessions WHERE course_id = ?1 ORDER BY session_number, id",
                params![id],
                |r| r.get(0),
            ),
            SessionScope::Run(id) => self.rows(
                // Sessions outside a course first, on both databases.
                "SELECT id FROM sessions WHERE run_id = ?1
                 ORDER BY course_id IS NOT NULL, course_id, session_number, id",
                params![id],
                |r| r.get(0),
            ),
            SessionScope::All => self.rows("SELECT id FROM sessions ORDER BY id", params![], |r| {
                r.get(0)
            }),
        }?;
        let path = self.path.clone();
        match scope {
            SessionScope::One(id) if ids.is_empty() => Err(StoreError::NoSuchSession { path, id }),
            SessionScope::Course(id) if ids.is_empty() => {
                Err(StoreError::NoSuchCourse { path, id })
            }
            SessionScope::Run(id) if ids.is_empty() => Err(StoreError::NoSuchRun { path, id }),
            _ => Ok(ids),
        }
    }
}
