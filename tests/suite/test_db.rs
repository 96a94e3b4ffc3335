//! A store for one test, on either database: the store tests are written
//! once and run on both (`on_both_stores!`).

use super::pg_server::PgServer;
use std::path::Path;

pub enum TestDb {
    Sqlite {
        dir: tempfile::TempDir,
        path: String,
    },
    Postgres {
        /// The test's other files (configs, exports).
        dir: tempfile::TempDir,
        server: PgServer,
        url: String,
    },
}

impl TestDb {
    /// A SQLite file in a folder of its own (not created yet).
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cbtsim.db").to_str().unwrap().to_string();
        TestDb::Sqlite { dir, path }
    }

    /// An empty database on a PostgreSQL server of the test's own.
    pub fn postgres() -> TestDb {
        let server = PgServer::start();
        let url = server.database("cbtsim_test");
        TestDb::Postgres {
            dir: tempfile::tempdir().unwrap(),
            server,
            url,
        }
    }

    /// What `--db` is given.
    pub fn db(&self) -> &str {
        match self {
            TestDb::Sqlite { path, .. } => path,
            TestDb::Postgres { url, .. } => url,
        }
    }

    /// A folder for the test's other files.
    pub fn dir(&self) -> &Path {
        match self {
            TestDb::Sqlite { dir, .. } | TestDb::Postgres { dir, .. } => dir.path(),
        }
    }

    /// A store that does not exist, named "absent".
    pub fn absent(&self) -> String {
        match self {
            TestDb::Sqlite { dir, .. } => dir.path().join("absent.db").to_str().unwrap().into(),
            TestDb::Postgres { url, .. } => url.replace("/cbtsim_test?", "/absent?"),
        }
    }

    /// Runs a query behind the store's back; each row's columns as text
    /// (NULL as "NULL"). Nothing when the store is not there yet.
    pub fn query(&self, sql: &str) -> Vec<Vec<String>> {
        match self {
            TestDb::Sqlite { path, .. } => {
                if !Path::new(path).exists() {
                    return Vec::new();
                }
                let Ok(conn) = rusqlite::Connection::open(path) else {
                    return Vec::new();
                };
                let Ok(mut statement) = conn.prepare(sql) else {
                    return Vec::new();
                };
                let columns = statement.column_count();
                statement
                    .query_map([], |r| {
                        (0..columns)
                            .map(|i| {
                                Ok(match r.get_ref(i)? {
                                    rusqlite::types::ValueRef::Null => "NULL".to_string(),
                                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                                    rusqlite::types::ValueRef::Text(t) => {
                                        String::from_utf8_lossy(t).into_owned()
                                    }
                                    other => format!("{other:?}"),
                                })
                            })
                            .collect()
                    })
                    .map(|rows| rows.filter_map(Result::ok).collect())
                    .unwrap_or_default()
            }
            TestDb::Postgres { url, .. } => {
                let Ok(mut client) = postgres::Client::connect(url, postgres::NoTls) else {
                    return Vec::new();
                };
                // The simple protocol gives every value as text.
                let Ok(messages) = client.simple_query(sql) else {
                    return Vec::new();
                };
                messages
                    .into_iter()
                    .filter_map(|m| match m {
                        postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).unwrap_or("NULL").to_string())
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect()
            }
        }
    }

    /// Runs statements behind the store's back (to damage a row, say).
    pub fn execute(&self, sql: &str) {
        match self {
            TestDb::Sqlite { path, .. } => rusqlite::Connection::open(path)
                .unwrap()
                .execute_batch(sql)
                .unwrap(),
            TestDb::Postgres { server, url, .. } => server.execute(url, sql),
        }
    }

    /// Every stored turn as (position, speaker), by session and position.
    pub fn stored_turns(&self) -> Vec<(i64, String)> {
        self.query("SELECT position, speaker FROM turns ORDER BY session_id, position")
            .into_iter()
            .map(|r| (r[0].parse().unwrap(), r[1].clone()))
            .collect()
    }

    /// How many rows a table holds.
    pub fn count(&self, table: &str) -> i64 {
        self.query(&format!("SELECT COUNT(*) FROM {table}"))[0][0]
            .parse()
            .unwrap()
    }

    /// Writes a schema version into the store, as a newer cbtsim would.
    pub fn set_schema_version(&self, version: i64) {
        match self {
            TestDb::Sqlite { .. } => self.execute(&format!("PRAGMA user_version = {version}")),
            TestDb::Postgres { .. } => {
                self.execute(&format!("UPDATE cbtsim_schema SET version = {version}"))
            }
        }
    }

    /// The schema version the store holds.
    pub fn schema_version(&self) -> i64 {
        let query = match self {
            TestDb::Sqlite { .. } => "PRAGMA user_version",
            TestDb::Postgres { .. } => "SELECT version FROM cbtsim_schema",
        };
        self.query(query)[0][0].parse().unwrap()
    }
}

/// Makes each named test function (taking a `TestDb`) two tests,
/// `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name(crate::suite::test_db::TestDb::sqlite())
                }
                #[test]
                fn postgres() {
                    super::$name(crate::suite::test_db::TestDb::postgres())
                }
            }
        )*
    };
}
pub(crate) use on_both_stores;
