//! The SQLite store: one file with personas (a snapshot of each one used),
//! runs (their plan), courses (the units of work of a run), sessions, every
//! turn as soon as it is spoken, summaries, safety events and token usage.
//! Only this module knows SQL; the rest of the crate sees typed values.
//!
//! - `mod.rs`: opening, errors and their mapping from SQLite's;
//! - `migrate.rs`: the schema's versions;
//! - `runs.rs`: runs, their plans and their courses;
//! - `sessions.rs`: writing sessions as they happen, and their state;
//! - `read.rs`: reading sessions back (lossless: a row that does not
//!   decode is an error naming it) and listing;
//! - `import.rs`: transcripts from files;
//! - `evaluations.rs`: sessions' metrics and judges' scores.

mod evaluations;
mod import;
mod migrate;
mod read;
mod runs;
mod sessions;

pub use evaluations::SessionScope;
pub use migrate::{MIGRATIONS, SCHEMA_VERSION};
pub use read::{Listed, StoredSession, TokenTotal};
pub use runs::{RunClaim, StoredCourse, StoredPlan};
pub use sessions::SessionState;

use crate::persona::Mood;
use rusqlite::Connection;
use std::path::{Path, PathBuf};

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
    #[error("{path}: no run {id}")]
    NoSuchRun { path: PathBuf, id: i64 },
    #[error("{path}: run {run} is being run by another cbtsim process; wait for it, or stop it")]
    Busy { path: PathBuf, run: i64 },
    #[error("{path}: no course {id}, or it has no sessions")]
    NoSuchCourse { path: PathBuf, id: i64 },
    /// A stored row that does not decode: never read as a default.
    #[error("{path}: {table} row {row} is unreadable: {message}")]
    Corrupt {
        path: PathBuf,
        table: &'static str,
        row: String,
        message: String,
    },
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
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
        Store::set_up(conn, path)
    }

    /// A store in memory, gone when it is dropped: what `--no-store` runs
    /// write to, so that they run exactly as stored runs do.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| sql(path, e))?;
        Store::set_up(conn, path)
    }

    fn set_up(conn: Connection, path: &Path) -> Result<Store, StoreError> {
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store
            .conn
            // With WAL, NORMAL syncs at checkpoints rather than at every
            // commit: a killed process loses nothing committed (only a power
            // cut could take the last turns), and a turn costs no fsync.
            .execute_batch(
                "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
            )
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
