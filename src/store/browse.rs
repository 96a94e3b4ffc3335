//! Reads for browsing a store (`cbtsim serve`): sessions with where they
//! belong and how they went, found by their words; runs with how far they
//! have come.

use super::db::{Row, params};
use super::{Store, StoreError};
use serde::Serialize;

/// A session as a browsing page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Browsed {
    pub id: i64,
    pub run: Option<i64>,
    pub course: Option<i64>,
    /// Empty for an imported session.
    pub persona: String,
    pub session_number: i64,
    pub turns: i64,
    pub safety_events: i64,
    /// None while it runs (or stopped, to be resumed).
    pub termination_reason: Option<String>,
    pub started_at: String,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowseFilter {
    /// Words found (case-insensitively) in the persona, the ending, or a
    /// turn.
    pub text: Option<String>,
    pub run: Option<i64>,
    pub course: Option<i64>,
    pub session: Option<i64>,
}

/// A run as a browsing page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRow {
    pub id: i64,
    /// `run`, `course`, `batch` (or `import`).
    pub command: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Queued for workers (`batch --detach`).
    pub queued: bool,
    pub courses: i64,
    pub sessions: i64,
    pub sessions_ended: i64,
    pub turns: i64,
}

/// An evaluation as stored (`cbtsim eval`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvaluation {
    /// `metrics`, `ctrs`, `safety`, `pro`.
    pub kind: String,
    pub judge: String,
    pub rubric_version: String,
    pub result: serde_json::Value,
    pub evaluated_at: String,
}

/// `text` as a LIKE pattern that matches it anywhere, its own `%`, `_`
/// and `\` taken literally (with `ESCAPE '\'`). Its case is folded by the
/// database's `LOWER`, as the text's is: SQLite folds ASCII only,
/// PostgreSQL every letter, and each agrees with itself.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// The sessions a filter finds, newest first.
    pub fn browse(&self, filter: &BrowseFilter) -> Result<Vec<Browsed>, StoreError> {
        let text = filter
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let pattern = text.map(contains_pattern);
        self.rows(
            "SELECT s.id, s.run_id, s.course_id, COALESCE(p.persona_id, ''), s.session_number,
                    (SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id),
                    (SELECT COUNT(*) FROM safety_events e WHERE e.session_id = s.id),
                    s.termination_reason, s.started_at
             FROM sessions s LEFT JOIN personas p ON p.id = s.persona
             WHERE (CAST(?1 AS BIGINT) IS NULL OR s.run_id = ?1)
               AND (CAST(?2 AS BIGINT) IS NULL OR s.course_id = ?2)
               AND (CAST(?4 AS BIGINT) IS NULL OR s.id = ?4)
               AND (CAST(?3 AS TEXT) IS NULL
                    OR LOWER(COALESCE(p.persona_id, '')) LIKE LOWER(?3) ESCAPE '\\'
                    OR LOWER(COALESCE(s.termination_reason, '')) LIKE LOWER(?3) ESCAPE '\\'
                    OR EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.id
                               AND LOWER(t.text) LIKE LOWER(?3) ESCAPE '\\'))
             ORDER BY s.id DESC",
            params![filter.run, filter.course, pattern, filter.session],
            |r: &Row| {
                Ok(Browsed {
                    id: r.get(0)?,
                    run: r.get(1)?,
                    course: r.get(2)?,
                    persona: r.get(3)?,
                    session_number: r.get(4)?,
                    turns: r.get(5)?,
                    safety_events: r.get(6)?,
                    termination_reason: r.get(7)?,
                    started_at: r.get(8)?,
                })
            },
        )
    }

    /// Every run, newest first, with how far it has come.
    pub fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        self.runs_where(None)
    }

    /// One run's row; an unknown run is an error naming it.
    pub fn run_row(&self, run: i64) -> Result<RunRow, StoreError> {
        self.runs_where(Some(run))?
            .pop()
            .ok_or_else(|| StoreError::NoSuchRun {
                path: self.path.clone(),
                id: run,
            })
    }

    fn runs_where(&self, run: Option<i64>) -> Result<Vec<RunRow>, StoreError> {
        self.rows(
            "SELECT r.id, r.command, r.started_at, r.finished_at, r.queued,
                    (SELECT COUNT(*) FROM courses c WHERE c.run_id = r.id),
                    (SELECT COUNT(*) FROM sessions s WHERE s.run_id = r.id),
                    (SELECT COUNT(*) FROM sessions s WHERE s.run_id = r.id AND s.finished_at IS NOT NULL),
                    (SELECT COUNT(*) FROM turns t JOIN sessions s ON s.id = t.session_id WHERE s.run_id = r.id)
             FROM runs r WHERE CAST(?1 AS BIGINT) IS NULL OR r.id = ?1 ORDER BY r.id DESC",
            params![run],
            |r: &Row| {
                Ok(RunRow {
                    id: r.get(0)?,
                    command: r.get(1)?,
                    started_at: r.get(2)?,
                    finished_at: r.get(3)?,
                    queued: r.get::<i64>(4)? != 0,
                    courses: r.get(5)?,
                    sessions: r.get(6)?,
                    sessions_ended: r.get(7)?,
                    turns: r.get(8)?,
                })
            },
        )
    }

    /// Every evaluation stored of a session, by kind and judge.
    pub fn session_evaluations(&self, session: i64) -> Result<Vec<StoredEvaluation>, StoreError> {
        let mut rows = self.rows(
            "SELECT kind, judge, rubric_version, result, evaluated_at FROM evaluations WHERE session_id = ?1",
            params![session],
            |r: &Row| {
                Ok((
                    r.get::<String>(0)?,
                    r.get::<String>(1)?,
                    r.get::<String>(2)?,
                    r.get::<String>(3)?,
                    r.get::<String>(4)?,
                ))
            },
        )?;
        // Sorted here: the two databases order text by different rules.
        rows.sort();
        rows.into_iter()
            .map(|(kind, judge, rubric_version, result, evaluated_at)| {
                let result = serde_json::from_str(&result).map_err(|e| StoreError::Corrupt {
                    path: self.path.clone(),
                    table: "evaluations",
                    row: format!("session {session}, {kind}, {judge}"),
                    message: e.to_string(),
                })?;
                Ok(StoredEvaluation {
                    kind,
                    judge,
                    rubric_version,
                    result,
                    evaluated_at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_takes_its_wildcards_literally() {
        assert_eq!(contains_pattern("Sad"), "%Sad%");
        assert_eq!(contains_pattern("100%_a\\b"), "%100\\%\\_a\\\\b%");
    }
}
