//! The schema's versions and how a store moves from one to the next.

use super::db::{Conn, DbError, params};
use super::{Store, StoreError, sql};

/// The schema version this build writes; see `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 7;

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
    // The work queue (`queue.rs`): a batch queued for workers, and each
    // course's lease: who holds it, until when (milliseconds on the
    // database's clock) and the token its writes are fenced by.
    r#"
ALTER TABLE runs ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN lease_owner TEXT;
ALTER TABLE courses ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN lease_until INTEGER;
"#,
    // People's CTRS ratings of sessions (`cbtsim serve`): one score per
    // session, rater and item; `eval agreement` reads them.
    r#"
CREATE TABLE ratings (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    rater TEXT NOT NULL,
    item TEXT NOT NULL,
    score INTEGER NOT NULL,
    rated_at TEXT NOT NULL,
    PRIMARY KEY (session_id, rater, item)
);
"#,
];

/// A new PostgreSQL store starts at this version, with the schema the
/// SQLite migrations above build (PostgreSQL stores began at version 5).
/// Integers are BIGINT (SQLite's are 64 bits); ids are identity columns;
/// safety events get an explicit `rowid`, which SQLite has implicitly and
/// the store orders events by.
const POSTGRES_BASELINE: (i64, &str) = (
    5,
    r#"
CREATE TABLE runs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    command TEXT NOT NULL,
    settings TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    plan TEXT
);
CREATE TABLE personas (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    persona_id TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE courses (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id BIGINT NOT NULL REFERENCES runs(id),
    persona BIGINT NOT NULL REFERENCES personas(id),
    sessions_planned BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    unit_index BIGINT NOT NULL DEFAULT 0,
    repeat_index BIGINT NOT NULL DEFAULT 0,
    first_session BIGINT NOT NULL DEFAULT 1,
    seed BIGINT NOT NULL DEFAULT 0,
    finished_at TEXT,
    error TEXT
);
CREATE TABLE sessions (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id BIGINT REFERENCES runs(id),
    course_id BIGINT REFERENCES courses(id),
    persona BIGINT REFERENCES personas(id),
    session_number BIGINT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    termination_reason TEXT,
    termination_details TEXT,
    termination_speaker TEXT,
    summary TEXT,
    summary_error TEXT,
    phq9 BIGINT,
    gad7 BIGINT,
    homework_done TEXT
);
CREATE TABLE turns (
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    position BIGINT NOT NULL,
    speaker TEXT NOT NULL,
    text TEXT NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (session_id, position)
);
CREATE TABLE safety_events (
    rowid BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    turn BIGINT NOT NULL,
    category TEXT NOT NULL,
    level TEXT NOT NULL,
    words TEXT NOT NULL,
    protocol_turn BIGINT
);
CREATE TABLE token_usage (
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    prompt_tokens BIGINT NOT NULL,
    cached_prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    replies BIGINT NOT NULL,
    rejected_replies BIGINT NOT NULL,
    repaired_replies BIGINT NOT NULL,
    role TEXT NOT NULL DEFAULT 'all',
    model TEXT,
    estimated_replies BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX sessions_by_course ON sessions(course_id, session_number) WHERE course_id IS NOT NULL;
CREATE INDEX courses_by_run ON courses(run_id);
CREATE TABLE evaluations (
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    kind TEXT NOT NULL,
    judge TEXT NOT NULL,
    rubric_version TEXT NOT NULL,
    result TEXT NOT NULL,
    evaluated_at TEXT NOT NULL,
    PRIMARY KEY (session_id, kind, judge, rubric_version)
);
"#,
);

/// PostgreSQL's migrations after the baseline: entry N takes the schema
/// from version `POSTGRES_BASELINE.0 + N` to the next. A migration added
/// to `MIGRATIONS` gets its PostgreSQL form here.
const POSTGRES_MIGRATIONS: &[&str] = &[
    r#"
ALTER TABLE runs ADD COLUMN queued BIGINT NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN lease_owner TEXT;
ALTER TABLE courses ADD COLUMN lease_token BIGINT NOT NULL DEFAULT 0;
ALTER TABLE courses ADD COLUMN lease_until BIGINT;
"#,
    r#"
CREATE TABLE ratings (
    session_id BIGINT NOT NULL REFERENCES sessions(id),
    rater TEXT NOT NULL,
    item TEXT NOT NULL,
    score BIGINT NOT NULL,
    rated_at TEXT NOT NULL,
    PRIMARY KEY (session_id, rater, item)
);
"#,
];

/// Where a PostgreSQL store keeps its schema version, and the advisory
/// lock its migrations take (two cbtsims opening a new database at once
/// must not both create the tables).
const POSTGRES_VERSION_TABLE: &str = "cbtsim_schema";
const POSTGRES_MIGRATION_LOCK: i64 = 0x6362_7473_696d_0001;

impl Store {
    /// Brings the schema up to this build's version. A read-only store that
    /// is already up to date can still be read (`list`, `show`, `export`).
    pub(super) fn migrate(&mut self) -> Result<(), StoreError> {
        if self.postgres.is_some() {
            return self.migrate_postgres();
        }
        let path = self.path.clone();
        let mut db = self.conn.borrow_mut();
        let Conn::Sqlite(conn) = &mut *db else {
            unreachable!("a store without a PostgreSQL target is SQLite")
        };
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(StoreError::ReadOnly { path });
        }
        // WAL keeps readers going while a run writes; set once, on creation.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(|e| sql(&path, e))?;
        // Read the version again inside the write lock: two cbtsims opening
        // a new store at once must not both migrate it.
        let tx = conn
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

    /// PostgreSQL's version is read first without writing anything, so a
    /// newer schema is refused untouched; the migration itself runs in one
    /// transaction under an advisory lock.
    fn migrate_postgres(&mut self) -> Result<(), StoreError> {
        let found = self.version()?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: self.path.clone(),
                found,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let path = self.path.clone();
        // The version found inside the lock, when it is newer than ours.
        let newer: Option<i64> = self
            .conn
            .borrow_mut()
            .transaction(true, |tx| {
                tx.execute(
                    "SELECT pg_advisory_xact_lock(?1)",
                    params![POSTGRES_MIGRATION_LOCK],
                )?;
                tx.batch(&format!(
                    "CREATE TABLE IF NOT EXISTS {POSTGRES_VERSION_TABLE} (version BIGINT NOT NULL)"
                ))?;
                let version: Option<i64> = tx
                    .query_row(
                        &format!("SELECT MAX(version) FROM {POSTGRES_VERSION_TABLE}"),
                        params![],
                    )?
                    .map(|r| r.get(0))
                    .transpose()?
                    .flatten();
                let mut version = version.unwrap_or(0);
                let target = POSTGRES_BASELINE.0 + POSTGRES_MIGRATIONS.len() as i64;
                // Another cbtsim may have migrated it meanwhile, even a
                // newer one: never write an older version over it.
                if version > target {
                    return Ok(Some(version));
                }
                if version == target {
                    return Ok(None);
                }
                if version == 0 {
                    tx.batch(POSTGRES_BASELINE.1)?;
                    version = POSTGRES_BASELINE.0;
                }
                let applied = (version - POSTGRES_BASELINE.0).max(0) as usize;
                for migration in POSTGRES_MIGRATIONS.iter().skip(applied) {
                    tx.batch(migration)?;
                }
                tx.execute(&format!("DELETE FROM {POSTGRES_VERSION_TABLE}"), params![])?;
                tx.execute(
                    &format!("INSERT INTO {POSTGRES_VERSION_TABLE} (version) VALUES (?1)"),
                    params![target],
                )?;
                Ok(None)
            })
            .map_err(|e: DbError| sql(&path, e))?;
        match newer {
            Some(found) => Err(StoreError::NewerSchema { path, found }),
            None => Ok(()),
        }
    }

    pub(super) fn version(&self) -> Result<i64, StoreError> {
        if self.postgres.is_none() {
            return self
                .row("PRAGMA user_version", params![], |r| r.get(0))?
                .ok_or_else(|| self.sql(DbError::Decode("no user_version".into())));
        }
        let exists: bool = self
            .row(
                &format!("SELECT to_regclass('{POSTGRES_VERSION_TABLE}') IS NOT NULL"),
                params![],
                |r| r.get(0),
            )?
            .unwrap_or(false);
        if !exists {
            return Ok(0);
        }
        Ok(self
            .row(
                &format!("SELECT MAX(version) FROM {POSTGRES_VERSION_TABLE}"),
                params![],
                |r| r.get::<Option<i64>>(0),
            )?
            .flatten()
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_starts_at_the_version_sqlite_has_reached() {
        assert_eq!(
            POSTGRES_BASELINE.0 + POSTGRES_MIGRATIONS.len() as i64,
            SCHEMA_VERSION,
            "a migration added to MIGRATIONS needs its PostgreSQL form"
        );
    }
}
