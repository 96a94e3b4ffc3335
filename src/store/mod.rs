//! The store: personas (a snapshot of each one used), runs (their plan),
//! courses (the units of work of a run), sessions, every turn as soon as it
//! is spoken, summaries, safety events and token usage. It is a SQLite file
//! (the default, for one machine) or a PostgreSQL database (a `postgres://`
//! URL, for many). Only this module knows SQL; the rest of the crate sees
//! typed values.
//!
//! - `mod.rs`: opening, errors and their mapping from the databases';
//! - `db.rs`: the one interface both databases are used through;
//! - `postgres.rs`: connecting to PostgreSQL (URL, credentials, TLS);
//! - `migrate.rs`: the schema's versions;
//! - `runs.rs`: runs, their plans and their courses;
//! - `queue.rs`: queued batches, courses' leases and the fence on their writes;
//! - `sessions.rs`: writing sessions as they happen, and their state;
//! - `read.rs`: reading sessions back (lossless: a row that does not
//!   decode is an error naming it) and listing;
//! - `import.rs`: transcripts from files;
//! - `evaluations.rs`: sessions' metrics and judges' scores.

mod browse;
mod db;
mod evaluations;
mod import;
mod migrate;
mod postgres;
mod queue;
mod read;
mod runs;
mod sessions;

pub use browse::{BrowseFilter, Browsed, RunRow, StoredEvaluation};
pub use evaluations::SessionScope;
pub use migrate::{MIGRATIONS, SCHEMA_VERSION};
pub use postgres::{is_url, redacted};
pub use queue::{BatchStatus, Lease, Leased, WorkerCount};
pub use read::{Listed, StoredSession, TokenTotal};
pub use runs::{RunClaim, StoredCourse, StoredPlan};
pub use sessions::SessionState;

use crate::persona::Mood;
use db::{Conn, DbError, Param, Row};
use rusqlite::Connection;
use std::cell::{RefCell, RefMut};
use std::path::{Path, PathBuf};

/// Errors name the store by `path`: the file, or the PostgreSQL URL
/// without its password.
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
    #[error(
        "{path}: course {course} was taken over by another worker (this one's lease ran out); nothing more of it is written here"
    )]
    LeaseLost { path: PathBuf, course: i64 },
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
    /// In a cell so that reads and writes take `&self`, as they did when
    /// the store was SQLite alone (PostgreSQL's client needs `&mut`).
    conn: RefCell<Conn>,
    /// The file, or the URL without its password.
    path: PathBuf,
    /// How to connect again (a run's claim holds a connection of its own).
    postgres: Option<postgres::Target>,
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
    /// Opens (or creates) a store, migrating an older schema and refusing a
    /// newer one: a SQLite file, or the PostgreSQL database a
    /// `postgres://` URL names.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(url) = path.to_str().filter(|p| is_url(p)) {
            return Store::open_postgres(url, true);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Sql {
                path: path.to_path_buf(),
                message: format!("cannot create the folder: {e}"),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| sql(path, e))?;
        Store::set_up(conn, path)
    }

    /// The PostgreSQL database a URL names, its schema created or
    /// migrated; to read (`create` false), one without cbtsim's tables is
    /// an error, never given them: reading never creates a store.
    fn open_postgres(url: &str, create: bool) -> Result<Store, StoreError> {
        let target = postgres::Target::parse(url)?;
        let client = target.connect()?;
        let mut store = Store {
            conn: RefCell::new(Conn::postgres(client)),
            path: PathBuf::from(&target.shown),
            postgres: Some(target),
        };
        if !create && store.version()? == 0 {
            return Err(StoreError::Sql {
                path: store.path,
                message: "no cbtsim store in this database: run a session first".into(),
            });
        }
        store.migrate()?;
        Ok(store)
    }

    /// Whether this store is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// A store in memory, gone when it is dropped: what `--no-store` runs
    /// write to, so that they run exactly as stored runs do.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| sql(path, e))?;
        Store::set_up(conn, path)
    }

    fn set_up(conn: Connection, path: &Path) -> Result<Store, StoreError> {
        conn
            // With WAL, NORMAL syncs at checkpoints rather than at every
            // commit: a killed process loses nothing committed (only a power
            // cut could take the last turns), and a turn costs no fsync.
            .execute_batch(
                "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
            )
            .map_err(|e| sql(path, e))?;
        let mut store = Store {
            conn: RefCell::new(Conn::Sqlite(conn)),
            path: path.to_path_buf(),
            postgres: None,
        };
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
        if let Some(url) = path.to_str().filter(|p| is_url(p)) {
            return Store::open_postgres(url, false);
        }
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
            conn: RefCell::new(Conn::Sqlite(conn)),
            path: path.to_path_buf(),
            postgres: None,
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

    fn sql(&self, e: impl Into<DbError>) -> StoreError {
        sql(&self.path, e)
    }

    fn db(&self) -> RefMut<'_, Conn> {
        self.conn.borrow_mut()
    }

    /// Runs a statement.
    fn execute(&self, query: &str, params: &[&dyn Param]) -> Result<u64, StoreError> {
        self.db().execute(query, params).map_err(|e| self.sql(e))
    }

    /// Runs an insert that ends `RETURNING id`; gives the new row's id.
    fn insert(&self, query: &str, params: &[&dyn Param]) -> Result<i64, StoreError> {
        self.db().insert(query, params).map_err(|e| self.sql(e))
    }

    /// Runs a query and reads one value per row.
    fn rows<T>(
        &self,
        query: &str,
        params: &[&dyn Param],
        mut row: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.db().query(query, params).map_err(|e| self.sql(e))?;
        rows.iter()
            .map(|r| row(r).map_err(|e| self.sql(e)))
            .collect()
    }

    /// Runs a query and reads its first row, if it has one.
    fn row<T>(
        &self,
        query: &str,
        params: &[&dyn Param],
        row: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<Option<T>, StoreError> {
        let first = self
            .db()
            .query_row(query, params)
            .map_err(|e| self.sql(e))?;
        first.map(|r| row(&r).map_err(|e| self.sql(e))).transpose()
    }

    /// Runs `work` in one transaction, committed only if it succeeds.
    fn transaction<T>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<T, DbError>,
    ) -> Result<T, StoreError> {
        self.db().transaction(false, work).map_err(|e| self.sql(e))
    }
}

/// The store as `--db` names it in a command to paste into a shell:
/// quoted when a shell would read it otherwise (a URL's `?` and `&`).
pub fn db_argument(path: &Path) -> String {
    let shown = path.display().to_string();
    if shown.contains(|c: char| !(c.is_ascii_alphanumeric() || "/._-:@".contains(c))) {
        format!("'{shown}'")
    } else {
        shown
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

fn sql(path: &Path, e: impl Into<DbError>) -> StoreError {
    use ::postgres::error::SqlState;
    use rusqlite::ErrorCode;
    let path = path.to_path_buf();
    let e = match e.into() {
        DbError::Sqlite(e) => e,
        DbError::Postgres(e) => {
            return match e.code() {
                Some(code) if *code == SqlState::DISK_FULL => StoreError::Full { path },
                Some(code) if *code == SqlState::READ_ONLY_SQL_TRANSACTION => {
                    StoreError::ReadOnly { path }
                }
                _ => StoreError::Sql {
                    path,
                    message: DbError::Postgres(e).to_string(),
                },
            };
        }
        e @ DbError::Decode(_) => {
            return StoreError::Sql {
                path,
                message: e.to_string(),
            };
        }
    };
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
    fn a_store_is_named_for_the_shell() {
        assert_eq!(db_argument(Path::new("/data/cbtsim.db")), "/data/cbtsim.db");
        assert_eq!(
            db_argument(Path::new("postgres://ana@/db?host=/run&port=5432")),
            "'postgres://ana@/db?host=/run&port=5432'"
        );
        assert_eq!(
            db_argument(Path::new("/my runs/cbtsim.db")),
            "'/my runs/cbtsim.db'"
        );
    }

    #[test]
    fn a_path_in_a_uri_escapes_what_uris_give_meaning_to() {
        assert_eq!(
            uri_path(Path::new("/data/100% mine?#1/cbtsim.db")),
            "/data/100%25 mine%3F%231/cbtsim.db"
        );
    }
}
