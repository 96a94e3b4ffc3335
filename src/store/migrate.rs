//! The schema's versions and how a store moves from one to the next.

use super::{Store, StoreError, sql};

/// The schema version this build writes; see `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 5;

/// Migration N takes the schema from version N-1 to N.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    settings TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE personas (
    id INTEGER PRIMARY KEY,
    persona_id TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE courses (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    persona INTEGER NOT NULL REFERENCES personas(id),
    sessions_planned INTEGER NOT NULL,
    started_at TEXT NOT NULL
);
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    run_id INTEGER REFERENCES runs(id),
    course_id INTEGER REFERENCES courses(id),
    persona INTEGER REFERENCES personas(id),
    session_number INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    termination_reason TEXT,
    termination_details TEXT,
    termination_speaker TEXT,
    summary TEXT,
    summary_error TEXT
);
CREATE TABLE turns (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    position INTEGER NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (session_id, position)
);
CREATE TABLE safety_events (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    turn INTEGER NOT NULL,
    category TEXT NOT NULL,
    level TEXT NOT NULL,
    words TEXT NOT NULL,
    protocol_turn INTEGER
);
CREATE TABLE token_usage (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    prompt_tokens INTEGER NOT NULL,
    cached_prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    replies INTEGER NOT NULL,
    rejected_replies INTEGER NOT NULL,
    repaired_replies INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE token_usage ADD COLUMN role TEXT NOT NULL DEFAULT 'all';
ALTER TABLE token_usage ADD COLUMN model TEXT;
"#,
    r#"
ALTER TABLE sessions ADD COLUMN phq9 INTEGER;
ALTER TABLE sessions ADD COLUMN gad7 INTEGER;
ALTER TABLE sessions ADD COLUMN homework_done TEXT;
"#,
    // Runs keep a typed plan (runs stored before keep their command line in
    // `settings`, and get a plan when they are resumed); every unit of work
    // is a course row, a single run's too, with its place in the grid, its
    // seed, and whether it finished or failed. Token counts a server did
    // not give are estimates, and say so.
    r#"
ALTER TABLE runs ADD COLUMN plan TEXT;
ALTER TABLE courses ADD COLUMN unit_index INTEGER NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN repeat_index INTEGER NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN first_session INTEGER NOT NULL DEFAULT 1;
ALTER TABLE courses ADD COLUMN seed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN finished_at TEXT;
ALTER TABLE courses ADD COLUMN error TEXT;
UPDATE courses SET finished_at = (SELECT finished_at FROM runs WHERE runs.id = courses.run_id);
ALTER TABLE token_usage ADD COLUMN estimated_replies INTEGER NOT NULL DEFAULT 0;
-- A course holds each session number once (runs are claimed, too).
CREATE UNIQUE INDEX sessions_by_course ON sessions(course_id, session_number) WHERE course_id IS NOT NULL;
CREATE INDEX courses_by_run ON courses(run_id);
"#,
    // Evaluations: the metrics and each judge's scores of a session, by
    // rubric version.
    r#"
CREATE TABLE evaluations (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    kind TEXT NOT NULL,
    judge TEXT NOT NULL,
    rubric_version TEXT NOT NULL,
    result TEXT NOT NULL,
    evaluated_at TEXT NOT NULL,
    PRIMARY KEY (session_id, kind, judge, rubric_version)
);
"#,
];

impl Store {
    /// Brings the schema up to this build's version. A read-only store that
    /// is already up to date can still be read (`list`, `show`, `export`).
    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        if self.conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::ReadOnly { path });
        }
        // WAL keeps readers going while a run writes; set once, on creation.
        self.conn
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(|e| sql(&path, e))?;
        // Read the version again inside the write lock: two cbtsims opening
        // a new store at once must not both migrate it.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql(&path, e))?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| sql(&path, e))?;
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(&format!("{migration} PRAGMA user_version = {};", i + 1))
                .map_err(|e| sql(&path, e))?;
        }
        tx.commit().map_err(|e| sql(&path, e))
    }

    pub(super) fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }
}
