//! The SQLite store: one file with personas (a snapshot of each one used),
//! runs (the command and its settings), courses, sessions, every turn as
//! soon as it is spoken, summaries, safety events and token usage. Only
//! this module knows SQL.

use crate::course::{HomeworkDone, PatientState};
use crate::persona::{Mood, Persona};
use crate::session::{RoleUsage, SafetyEvent};
use crate::speaker::Speaker;
use crate::summary::SessionSummary;
use crate::termination::TerminationReason;
use crate::transcript::Transcript;
use crate::turn::{Turn, TurnMeta};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The schema version this build writes; see `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 3;

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
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Sql { path: PathBuf, message: String },
    #[error(
        "{path} was written by a newer cbtsim (schema version {found}; this one knows up to {SCHEMA_VERSION}); use a newer cbtsim"
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error(
        "{path} is read-only: cbtsim cannot store anything in it (check its permissions and its folder's)"
    )]
    ReadOnly { path: PathBuf },
    #[error(
        "{path}: the disk is full (or the file may not grow); nothing more can be stored, what was stored before is kept"
    )]
    Full { path: PathBuf },
    #[error(
        "{path}: cannot write to the disk ({message}); it may be full. What was stored before is kept"
    )]
    CannotWrite { path: PathBuf, message: String },
    #[error("{path}: no session {id}")]
    NoSuchSession { path: PathBuf, id: i64 },
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

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

/// The default store: `$XDG_DATA_HOME/cbtsim/cbtsim.db`, else
/// `~/.local/share/cbtsim/cbtsim.db`.
pub fn default_path() -> PathBuf {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("cbtsim").join("cbtsim.db")
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl Store {
    /// Opens (or creates) a store, migrating an older schema and refusing a newer one.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Sql {
                path: path.to_path_buf(),
                message: format!("cannot create the folder: {e}"),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| sql(path, e))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store
            .conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .map_err(|e| sql(path, e))?;
        let version = store.version()?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found: version,
            });
        }
        if version < SCHEMA_VERSION {
            store.migrate()?;
        }
        Ok(store)
    }

    /// Opens a store to read it, also where it cannot be written (a
    /// read-only file or folder, a read-only medium): then it is opened
    /// read-only, as it is, without migrating it.
    pub fn open_to_read(path: &Path) -> Result<Store, StoreError> {
        match Store::open(path) {
            Err(StoreError::ReadOnly { .. }) => {}
            opened => return opened,
        }
        // SQLite reads a WAL database only through its -shm file, which a
        // read-only folder cannot hold. Without a -wal file everything is in
        // the database itself and it can be read as immutable; with one, the
        // -shm file is there too (both outlive only an unclean stop).
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let mode = if wal.exists() {
            "mode=ro"
        } else {
            "immutable=1"
        };
        let uri = format!("file:{}?{mode}", uri_path(path));
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_URI
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(uri, flags).map_err(|e| sql(path, e))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        match store.version()? {
            SCHEMA_VERSION => Ok(store),
            found if found > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                path: path.to_path_buf(),
                found,
            }),
            // An older schema would need migrating, which needs writing.
            _ => Err(StoreError::ReadOnly {
                path: path.to_path_buf(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Brings the schema up to this build's version. A read-only store that
    /// is already up to date can still be read (`list`, `show`, `export`).
    fn migrate(&mut self) -> Result<(), StoreError> {
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

    fn version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    fn sql(&self, e: rusqlite::Error) -> StoreError {
        sql(&self.path, e)
    }

    /// Runs a query and collects one value per row.
    fn rows<T>(
        &self,
        query: &str,
        params: impl rusqlite::Params,
        row: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut statement = self.conn.prepare(query).map_err(|e| self.sql(e))?;
        let mut values = Vec::new();
        for value in statement.query_map(params, row).map_err(|e| self.sql(e))? {
            values.push(value.map_err(|e| self.sql(e))?);
        }
        Ok(values)
    }

    pub fn start_run(
        &self,
        command: &str,
        settings: &serde_json::Value,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO runs (command, settings, started_at) VALUES (?1, ?2, ?3)",
                params![command, settings.to_string(), now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(&self, run: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?1 WHERE id = ?2",
                params![now(), run],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub fn save_persona(&self, persona: &Persona) -> Result<i64, StoreError> {
        let snapshot = serde_json::to_string(persona).expect("a persona serialises");
        self.conn
            .execute(
                "INSERT INTO personas (persona_id, snapshot) VALUES (?1, ?2)",
                params![persona.id, snapshot],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn start_course(&self, run: i64, persona: i64, planned: u32) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO courses (run_id, persona, sessions_planned, started_at) VALUES (?1, ?2, ?3, ?4)",
                params![run, persona, planned, now()],
            )
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// A new session, with where the patient stands as it starts.
    pub fn start_session(
        &self,
        run: i64,
        course: Option<i64>,
        persona: i64,
        session_number: u32,
        state: &PatientState,
    ) -> Result<i64, StoreError> {
        self.conn
            .execute(
                "INSERT INTO sessions (run_id, course_id, persona, session_number, started_at, phq9, gad7, homework_done)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
            .map_err(|e| self.sql(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Stores a turn the moment it is spoken (one transaction per turn).
    pub fn add_turn(&self, session: i64, position: usize, turn: &Turn) -> Result<(), StoreError> {
        let meta = serde_json::to_string(&turn.meta).expect("metadata serialises");
        self.conn
            .execute(
                "INSERT INTO turns (session_id, position, speaker, text, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![session, position as i64, turn.speaker.as_str(), turn.text, meta],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    pub fn add_safety_event(&self, session: i64, event: &SafetyEvent) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO safety_events (session_id, turn, category, level, words, protocol_turn) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    session,
                    event.turn as i64,
                    event.category.as_str(),
                    event.level.as_str(),
                    serde_json::to_string(&event.words).expect("words serialise"),
                    event.protocol_turn.map(|t| t as i64)
                ],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Records how a session ended and what each agent used (per role and
    /// model), in one transaction.
    pub fn finish_session(
        &mut self,
        session: i64,
        reason: &TerminationReason,
        usage: &[RoleUsage],
    ) -> Result<(), StoreError> {
        let speaker = match reason {
            TerminationReason::NaturalEnd { speaker, .. } => speaker.map(Speaker::as_str),
            _ => None,
        };
        let tx = self.conn.transaction().map_err(|e| sql(&self.path, e))?;
        tx.execute(
            "UPDATE sessions SET finished_at = ?1, termination_reason = ?2, termination_details = ?3, termination_speaker = ?4 WHERE id = ?5",
            params![now(), reason.display_name(), reason.details(), speaker, session],
        )
        .map_err(|e| sql(&self.path, e))?;
        for share in usage {
            add_usage(&tx, session, share).map_err(|e| sql(&self.path, e))?;
        }
        tx.commit().map_err(|e| sql(&self.path, e))
    }

    /// Records what an agent used after the session ended (the summarizer).
    pub fn add_usage(&self, session: i64, usage: &RoleUsage) -> Result<(), StoreError> {
        add_usage(&self.conn, session, usage).map_err(|e| self.sql(e))
    }

    pub fn set_summary(
        &self,
        session: i64,
        summary: Result<&SessionSummary, &str>,
    ) -> Result<(), StoreError> {
        let (json, error) = match summary {
            Ok(s) => (
                Some(serde_json::to_string(s).expect("a summary serialises")),
                None,
            ),
            Err(e) => (None, Some(e)),
        };
        self.conn
            .execute(
                "UPDATE sessions SET summary = ?1, summary_error = ?2 WHERE id = ?3",
                params![json, error, session],
            )
            .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// Courses and the sessions outside courses, then each course's
    /// sessions, oldest first.
    pub fn list(&self) -> Result<Vec<Listed>, StoreError> {
        // Both queries give: id, persona, session number, started, ended,
        // turns, PHQ-9, GAD-7.
        let listed = |kind: &'static str| {
            move |r: &rusqlite::Row| {
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
             FROM courses c JOIN personas p ON p.id = c.persona ORDER BY c.id",
            [],
            listed("course"),
        )?;
        rows.extend(self.rows(
            "SELECT s.id, COALESCE(p.persona_id, ''), s.session_number, s.started_at, s.termination_reason,
                    (SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id), s.phq9, s.gad7
             FROM sessions s LEFT JOIN personas p ON p.id = s.persona ORDER BY s.id",
            [],
            listed("session"),
        )?);
        Ok(rows)
    }

    pub fn last_session(&self) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row("SELECT MAX(id) FROM sessions", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    /// A stored session as a transcript.
    pub fn transcript(&self, session: i64) -> Result<Transcript, StoreError> {
        let head = self
            .conn
            .query_row(
                "SELECT session_number, termination_reason, termination_details, termination_speaker, summary FROM sessions WHERE id = ?1",
                [session],
                |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .ok_or_else(|| StoreError::NoSuchSession {
                path: self.path.clone(),
                id: session,
            })?;
        let (number, reason, details, speaker, summary) = head;
        let turns = self.rows(
            "SELECT speaker, text, meta FROM turns WHERE session_id = ?1 ORDER BY position",
            [session],
            |r| {
                let speaker: String = r.get(0)?;
                let meta: String = r.get(2)?;
                Ok(Turn {
                    speaker: speaker_named(&speaker),
                    text: r.get(1)?,
                    meta: serde_json::from_str::<TurnMeta>(&meta).unwrap_or_default(),
                })
            },
        )?;
        let speaker = speaker.as_deref().map(speaker_named);
        let termination = reason.map(|reason| {
            let mut parsed =
                TerminationReason::from_parts(&reason, details.as_deref().unwrap_or(""), speaker);
            if let TerminationReason::NaturalEnd { speaker: s, .. } = &mut parsed {
                *s = speaker;
            }
            parsed
        });
        Ok(Transcript {
            session_number: number,
            turns,
            termination,
            summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
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
}

impl Store {
    /// The sessions of one course, or of the whole store, in order.
    pub fn sessions(&self, course: Option<i64>) -> Result<Vec<StoredSession>, StoreError> {
        // The heads first, each transcript read after.
        let mut sessions = self.rows(
            "SELECT s.id, p.persona_id, s.course_id, s.phq9, s.gad7 FROM sessions s LEFT JOIN personas p ON p.id = s.persona
                 WHERE ?1 IS NULL OR s.course_id = ?1 ORDER BY s.course_id, s.session_number, s.id",
            [course],
            |r| {
                Ok(StoredSession {
                    id: r.get(0)?,
                    persona: r.get(1)?,
                    course: r.get(2)?,
                    mood: mood(r.get(3)?, r.get(4)?),
                    transcript: Transcript::new(0),
                })
            },
        )?;
        if let Some(course) = course
            && sessions.is_empty()
        {
            return Err(StoreError::Sql {
                path: self.path.clone(),
                message: format!("no course {course}, or it has no sessions"),
            });
        }
        for session in &mut sessions {
            session.transcript = self.transcript(session.id)?;
        }
        Ok(sessions)
    }

    /// Stores a transcript read from a file as a finished session of an
    /// "import" run; returns its id.
    pub fn import(&mut self, transcript: &Transcript, source: &str) -> Result<i64, StoreError> {
        let run = self.start_run("import", &serde_json::json!({ "file": source }))?;
        let tx = self.conn.transaction().map_err(|e| sql(&self.path, e))?;
        tx.execute(
            "INSERT INTO sessions (run_id, session_number, started_at, finished_at, termination_reason, termination_details, termination_speaker, summary)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6, ?7)",
            params![
                run,
                transcript.session_number,
                now(),
                transcript.termination.as_ref().map(|t| t.display_name().to_string()),
                transcript.termination.as_ref().map(TerminationReason::details),
                match &transcript.termination {
                    Some(TerminationReason::NaturalEnd { speaker: Some(s), .. }) => Some(s.as_str()),
                    _ => None,
                },
                transcript.summary.as_ref().map(|s| serde_json::to_string(s).expect("a summary serialises")),
            ],
        )
        .map_err(|e| sql(&self.path, e))?;
        let id = tx.last_insert_rowid();
        for (position, turn) in transcript.turns.iter().enumerate() {
            tx.execute(
                "INSERT INTO turns (session_id, position, speaker, text, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    id,
                    position as i64,
                    turn.speaker.as_str(),
                    turn.text,
                    serde_json::to_string(&turn.meta).expect("metadata serialises")
                ],
            )
            .map_err(|e| sql(&self.path, e))?;
        }
        tx.commit().map_err(|e| sql(&self.path, e))?;
        self.finish_run(run)?;
        Ok(id)
    }
}

/// What a run was about.
pub struct RunParts {
    pub persona_row: i64,
    /// The persona as it was when the run started.
    pub persona: Persona,
    /// The course's id and the sessions it planned, for a course.
    pub course: Option<(i64, u32)>,
}

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

/// Tokens a store records for one role and model, summed over sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenTotal {
    pub role: String,
    pub model: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

impl Store {
    /// Token usage per role and model over the whole store.
    pub fn token_totals(&self) -> Result<Vec<TokenTotal>, StoreError> {
        let totals = self.rows(
            "SELECT role, model, SUM(prompt_tokens), SUM(completion_tokens) FROM token_usage
                 GROUP BY role, model ORDER BY role, model",
            [],
            |r| {
                Ok(TokenTotal {
                    role: r.get(0)?,
                    model: r.get(1)?,
                    prompt_tokens: r.get(2)?,
                    completion_tokens: r.get(3)?,
                })
            },
        )?;
        Ok(totals)
    }

    /// Runs that never finished, oldest first.
    pub fn unfinished_runs(&self) -> Result<Vec<i64>, StoreError> {
        let ids: Vec<i64> = self.rows(
            "SELECT id FROM runs WHERE finished_at IS NULL AND command IN ('run', 'course') ORDER BY id",
            [],
            |r| r.get(0),
        )?;
        Ok(ids)
    }

    /// A run's command ("run" or "course") and settings.
    pub fn run_settings(&self, run: i64) -> Result<(String, serde_json::Value), StoreError> {
        let (command, settings): (String, String) = self
            .conn
            .query_row(
                "SELECT command, settings FROM runs WHERE id = ?1",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?
            .ok_or_else(|| StoreError::Sql {
                path: self.path.clone(),
                message: format!("no run {run}"),
            })?;
        let settings = serde_json::from_str(&settings).map_err(|e| StoreError::Sql {
            path: self.path.clone(),
            message: format!("run {run} has unreadable settings: {e}"),
        })?;
        Ok((command, settings))
    }

    /// The persona (as it was) and the course of a run.
    pub fn run_parts(&self, run: i64) -> Result<RunParts, StoreError> {
        let course: Option<(i64, u32, i64)> = self
            .conn
            .query_row(
                "SELECT id, sessions_planned, persona FROM courses WHERE run_id = ?1",
                [run],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        let persona_row: i64 = match course {
            Some((_, _, persona)) => persona,
            None => self
                .conn
                .query_row(
                    "SELECT persona FROM sessions WHERE run_id = ?1 ORDER BY id LIMIT 1",
                    [run],
                    |r| r.get(0),
                )
                .map_err(|e| self.sql(e))?,
        };
        let snapshot: String = self
            .conn
            .query_row(
                "SELECT snapshot FROM personas WHERE id = ?1",
                [persona_row],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        let persona = serde_json::from_str(&snapshot).map_err(|e| StoreError::Sql {
            path: self.path.clone(),
            message: format!("the stored persona is unreadable: {e}"),
        })?;
        Ok(RunParts {
            persona_row,
            persona,
            course: course.map(|(id, planned, _)| (id, planned)),
        })
    }

    /// The sessions of a run, in order.
    pub fn run_sessions(&self, run: i64) -> Result<Vec<SessionState>, StoreError> {
        let states = self.rows(
            "SELECT id, session_number, termination_reason, summary IS NOT NULL, summary_error, phq9, gad7,
                    (SELECT COUNT(*) FROM safety_events e WHERE e.session_id = sessions.id)
                 FROM sessions WHERE run_id = ?1 ORDER BY session_number, id",
            [run],
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
        )?;
        Ok(states)
    }

    /// Opens a stopped session again for more turns: its ending, usage and
    /// safety events are cleared (they are recorded anew when it ends);
    /// its turns stay.
    pub fn reopen_session(&mut self, session: i64) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(|e| sql(&self.path, e))?;
        tx.execute(
            "UPDATE sessions SET finished_at = NULL, termination_reason = NULL, termination_details = NULL, termination_speaker = NULL WHERE id = ?1",
            [session],
        )
        .map_err(|e| sql(&self.path, e))?;
        tx.execute("DELETE FROM token_usage WHERE session_id = ?1", [session])
            .map_err(|e| sql(&self.path, e))?;
        tx.execute("DELETE FROM safety_events WHERE session_id = ?1", [session])
            .map_err(|e| sql(&self.path, e))?;
        tx.commit().map_err(|e| sql(&self.path, e))
    }
}

fn add_usage(conn: &Connection, session: i64, share: &RoleUsage) -> rusqlite::Result<()> {
    let u = &share.usage;
    conn.execute(
        "INSERT INTO token_usage (session_id, role, model, prompt_tokens, cached_prompt_tokens,
             completion_tokens, replies, rejected_replies, repaired_replies)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            session,
            share.role.as_str(),
            share.model,
            u.prompt_tokens as i64,
            u.cached_prompt_tokens as i64,
            u.completion_tokens as i64,
            u.replies as i64,
            u.rejected_replies as i64,
            u.repaired_replies as i64
        ],
    )?;
    Ok(())
}

/// A path as the path of a SQLite `file:` URI: the characters that URIs
/// give meaning to are escaped.
fn uri_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            '%' | '?' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn mood(phq9: Option<u32>, gad7: Option<u32>) -> Option<Mood> {
    Some(Mood {
        phq9: phq9?,
        gad7: gad7?,
    })
}

/// A speaker as the store writes it ("patient", "therapist").
fn speaker_named(name: &str) -> Speaker {
    if name == "therapist" {
        Speaker::Therapist
    } else {
        Speaker::Patient
    }
}

fn sql(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
        Some(ErrorCode::DiskFull) => StoreError::Full { path },
        Some(ErrorCode::SystemIoFailure) => StoreError::CannotWrite {
            path,
            message: e.to_string(),
        },
        _ => StoreError::Sql {
            path,
            message: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_in_a_uri_escapes_what_uris_give_meaning_to() {
        assert_eq!(
            uri_path(Path::new("/data/100% mine?#1/cbtsim.db")),
            "/data/100%25 mine%3F%231/cbtsim.db"
        );
    }
}
