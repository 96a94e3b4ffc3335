//! The two databases behind the store, behind one small interface. The
//! store's SQL is written once, in the part of SQL both speak, with
//! SQLite's numbered placeholders (`?1`), which PostgreSQL is given as
//! `$1`; values are of a few plain kinds and rows are read by position.
//! Where the two really differ (opening, the schema's versions, locks)
//! the code matches on `Conn`; nothing outside `src/store/` sees it.

use std::borrow::Cow;
use std::collections::HashMap;

/// A value going into or coming out of a statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
}

/// Something that can be a statement's parameter.
pub trait Param {
    fn value(&self) -> Value;
}

impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value {
        (**self).value()
    }
}

impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value {
        self.as_ref().map_or(Value::Null, Param::value)
    }
}

impl Param for str {
    fn value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl Param for String {
    fn value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl Param for bool {
    fn value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl Param for i64 {
    fn value(&self) -> Value {
        Value::Int(*self)
    }
}

impl Param for u64 {
    fn value(&self) -> Value {
        // Token counts and seeds: far below i64::MAX.
        Value::Int(*self as i64)
    }
}

impl Param for u32 {
    fn value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl Param for usize {
    fn value(&self) -> Value {
        // A position or a count: far below i64::MAX.
        Value::Int(*self as i64)
    }
}

/// A statement's parameters: `params![a, b]`.
macro_rules! params {
    ($($p:expr),* $(,)?) => {
        &[$(&$p as &dyn $crate::store::db::Param),*] as &[&dyn $crate::store::db::Param]
    };
}
pub(crate) use params;

/// A row of a result, read by position.
#[derive(Debug)]
pub struct Row(Vec<Value>);

impl Row {
    /// The value at `index` as a `T`; a value of another kind is an error
    /// naming the column, never a default.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, DbError> {
        let value = self
            .0
            .get(index)
            .ok_or_else(|| DbError::Decode(format!("no column {index}")))?;
        T::from_value(value).ok_or_else(|| {
            DbError::Decode(format!(
                "column {index} holds {value:?}, not {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// A type a column's value is read as.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

impl FromValue for u32 {
    fn from_value(value: &Value) -> Option<Self> {
        i64::from_value(value).and_then(|i| u32::try_from(i).ok())
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Bool(b) => Some(*b),
            // SQLite has no booleans: a comparison gives 0 or 1.
            Value::Int(0) => Some(false),
            Value::Int(1) => Some(true),
            _ => None,
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    Postgres(postgres::Error),
    /// A value that is not of the kind the store wrote there.
    Decode(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Sqlite(e) => e.fmt(f),
            // The server's own message, not only "db error".
            DbError::Postgres(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}", db.message()),
                None => e.fmt(f),
            },
            DbError::Decode(m) => f.write_str(m),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

impl From<postgres::Error> for DbError {
    fn from(e: postgres::Error) -> Self {
        DbError::Postgres(e)
    }
}

/// A connection to either database.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres {
        /// Boxed: it is three times the size of a SQLite connection.
        client: Box<postgres::Client>,
        /// Prepared statements by their text: a turn's insert is prepared
        /// once per connection, not once per turn.
        statements: HashMap<String, postgres::Statement>,
    },
}

impl Conn {
    pub fn postgres(client: postgres::Client) -> Conn {
        Conn::Postgres {
            client: Box::new(client),
            statements: HashMap::new(),
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub fn execute(&mut self, sql: &str, params: &[&dyn Param]) -> Result<u64, DbError> {
        let values: Vec<Value> = params.iter().map(|p| p.value()).collect();
        match self {
            Conn::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                Ok(statement.execute(rusqlite::params_from_iter(values.iter()))? as u64)
            }
            Conn::Postgres { client, statements } => {
                let statement = prepared(client, statements, sql)?;
                Ok(client.execute(&statement, &pg_params(&values))?)
            }
        }
    }

    /// Runs a query and reads every row.
    pub fn query(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, DbError> {
        let values: Vec<Value> = params.iter().map(|p| p.value()).collect();
        match self {
            Conn::Sqlite(conn) => {
                let mut statement = conn.prepare_cached(sql)?;
                let columns = statement.column_count();
                let mut rows = statement.query(rusqlite::params_from_iter(values.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let mut values = Vec::with_capacity(columns);
                    for i in 0..columns {
                        values.push(sqlite_value(row.get_ref(i)?)?);
                    }
                    out.push(Row(values));
                }
                Ok(out)
            }
            Conn::Postgres { client, statements } => {
                let statement = prepared(client, statements, sql)?;
                client
                    .query(&statement, &pg_params(&values))?
                    .iter()
                    .map(postgres_row)
                    .collect()
            }
        }
    }

    /// The first row of a query, if it has one.
    pub fn query_row(&mut self, sql: &str, params: &[&dyn Param]) -> Result<Option<Row>, DbError> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs an insert that ends `RETURNING id` and gives the new row's id.
    pub fn insert(&mut self, sql: &str, params: &[&dyn Param]) -> Result<i64, DbError> {
        debug_assert!(sql.trim_end().ends_with("RETURNING id"));
        self.query_row(sql, params)?
            .ok_or_else(|| DbError::Decode("an insert returned no id".into()))?
            .get(0)
    }

    /// Runs statements separated by semicolons, with no parameters.
    pub fn batch(&mut self, sql: &str) -> Result<(), DbError> {
        match self {
            Conn::Sqlite(conn) => conn.execute_batch(sql)?,
            Conn::Postgres { client, .. } => client.batch_execute(sql)?,
        }
        Ok(())
    }

    /// Runs `work` in a transaction: committed when it succeeds, rolled
    /// back when it fails. `exclusive` takes SQLite's write lock at once
    /// (PostgreSQL locks rows as they are written either way).
    pub fn transaction<T, E: From<DbError>>(
        &mut self,
        exclusive: bool,
        work: impl FnOnce(&mut Conn) -> Result<T, E>,
    ) -> Result<T, E> {
        let begin = match self {
            Conn::Sqlite(_) if exclusive => "BEGIN IMMEDIATE",
            _ => "BEGIN",
        };
        self.batch(begin)?;
        // A panic in the work must not leave the transaction open: every
        // later write on this connection would go into it and be lost.
        let worked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(self)));
        let done = match worked {
            Ok(done) => done,
            Err(panic) => {
                let _ = self.batch("ROLLBACK");
                std::panic::resume_unwind(panic);
            }
        };
        // (PostgreSQL answers COMMIT of a failed transaction by rolling it
        // back without an error; every statement's error is returned above
        // first, so no failed transaction reaches COMMIT.)
        let done = done.and_then(|value| {
            self.batch("COMMIT")?;
            Ok(value)
        });
        if done.is_err() {
            // The error that matters is the one that stopped the work.
            let _ = self.batch("ROLLBACK");
        }
        done
    }
}

fn prepared(
    client: &mut postgres::Client,
    statements: &mut HashMap<String, postgres::Statement>,
    sql: &str,
) -> Result<postgres::Statement, DbError> {
    if let Some(statement) = statements.get(sql) {
        return Ok(statement.clone());
    }
    let statement = client.prepare(&dollar_placeholders(sql))?;
    statements.insert(sql.to_string(), statement.clone());
    Ok(statement)
}

/// SQLite's `?1` placeholders as PostgreSQL's `$1` (none of the store's
/// SQL has a `?` inside a quoted string, but quotes are skipped anyway).
pub fn dollar_placeholders(sql: &str) -> Cow<'_, str> {
    if !sql.contains('?') {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut quoted = false;
    let mut comment = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if comment {
            comment = c != '\n';
            out.push(c);
            continue;
        }
        if c == '-' && !quoted && chars.peek() == Some(&'-') {
            comment = true;
        }
        if c == '\'' && !comment {
            quoted = !quoted;
        }
        if c == '?' && !quoted && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn sqlite_value(value: rusqlite::types::ValueRef<'_>) -> Result<Value, DbError> {
    use rusqlite::types::ValueRef;
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(bytes) => Value::Text(
            String::from_utf8(bytes.to_vec())
                .map_err(|e| DbError::Decode(format!("text that is not UTF-8: {e}")))?,
        ),
        ValueRef::Blob(_) => {
            return Err(DbError::Decode("a blob, which cbtsim never writes".into()));
        }
    })
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Value::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
        })
    }
}

fn pg_params(values: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    values
        .iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

fn postgres_row(row: &postgres::Row) -> Result<Row, DbError> {
    use postgres::types::Type;
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|v| Value::Int(v.into())),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.map(Value::Bool),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Value::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map(|v| Value::Real(v.into())),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                row.try_get::<_, Option<String>>(i)?.map(Value::Text)
            }
            ref other => {
                return Err(DbError::Decode(format!(
                    "column {} is of type {other}, which the store does not read (cast it)",
                    column.name()
                )));
            }
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        // The server says what type each parameter is; a value goes in as
        // that type, so the SQL needs no casts for integers of any width.
        match (self, ty) {
            (Value::Null, _) => Ok(postgres::types::IsNull::Yes),
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::INT2) => i16::try_from(*i)?.to_sql(ty, out),
            (Value::Int(i), &Type::BOOL) => (*i != 0).to_sql(ty, out),
            (Value::Int(i), &Type::FLOAT8) => (*i as f64).to_sql(ty, out),
            (Value::Int(i), _) => i.to_sql(ty, out),
            (Value::Real(f), &Type::FLOAT4) => (*f as f32).to_sql(ty, out),
            (Value::Real(f), _) => f.to_sql(ty, out),
            (Value::Text(s), _) => s.as_str().to_sql(ty, out),
            (Value::Bool(b), _) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_outside_quotes() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND d = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND d = $12"
        );
        // An apostrophe in a comment opens no string.
        assert_eq!(
            dollar_placeholders("SELECT a -- the run's\nFROM t WHERE b = ?1"),
            "SELECT a -- the run's\nFROM t WHERE b = $1"
        );
        assert!(matches!(
            dollar_placeholders("SELECT 1"),
            Cow::Borrowed("SELECT 1")
        ));
    }

    #[test]
    fn a_value_of_another_kind_is_an_error_naming_the_column() {
        let row = Row(vec![Value::Text("x".into()), Value::Null, Value::Int(1)]);
        assert_eq!(row.get::<String>(0).unwrap(), "x");
        assert_eq!(row.get::<Option<i64>>(1).unwrap(), None);
        assert!(row.get::<bool>(2).unwrap());
        let error = row.get::<i64>(0).unwrap_err().to_string();
        assert!(error.contains("column 0"), "{error}");
        assert!(row.get::<i64>(1).is_err(), "NULL is not read as 0");
        assert!(row.get::<u32>(2).is_ok() && row.get::<String>(3).is_err());
    }

    #[test]
    fn a_panic_in_a_transaction_rolls_it_back() {
        let mut conn = Conn::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        conn.batch("CREATE TABLE t (v TEXT)").unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _: Result<(), DbError> = conn.transaction(false, |tx| {
                tx.execute("INSERT INTO t (v) VALUES (?1)", params!["lost"])?;
                panic!("a bug in the work");
            });
        }));
        assert!(panicked.is_err());
        // Not inside the open transaction: this write is committed.
        conn.execute("INSERT INTO t (v) VALUES (?1)", params!["kept"])
            .unwrap();
        conn.batch("BEGIN; ROLLBACK;").unwrap();
        let rows = conn.query("SELECT v FROM t", params![]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<String>(0).unwrap(), "kept");
    }

    #[test]
    fn a_failed_transaction_is_rolled_back_on_sqlite() {
        let mut conn = Conn::Sqlite(rusqlite::Connection::open_in_memory().unwrap());
        conn.batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            .unwrap();
        let failed: Result<(), DbError> = conn.transaction(false, |tx| {
            tx.execute("INSERT INTO t (v) VALUES (?1)", params!["kept?"])?;
            Err(DbError::Decode("stop".into()))
        });
        assert!(failed.is_err());
        let id = conn
            .transaction(true, |tx| {
                tx.insert("INSERT INTO t (v) VALUES (?1) RETURNING id", params!["a"])
            })
            .unwrap();
        let rows = conn.query("SELECT id, v FROM t", params![]).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get::<i64>(0).unwrap(), id);
    }
}
