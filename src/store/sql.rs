//! Statements written once for both engines. A statement is one text with
//! `$1..$n` placeholders (both dialects read it the same: PostgreSQL
//! natively, SQLite as named parameters, bound here by their number) and
//! its arguments as [`Value`]s. It runs on the SQLite writing connection
//! (writes), the SQLite read pool (reads) or PostgreSQL (either), and its
//! rows decode through one [`FromRow`] whichever engine read them.
//!
//! [`Database`](super::database::Database) runs them. A transaction is a [`Work`]: a small type whose `run` is generic over
//! the connection ([`Exec`]), so its logic is written once. On SQLite it
//! runs inside the writer's batch (its statements never wait, so its future
//! is complete the first time it is polled); on PostgreSQL inside
//! `BEGIN ... COMMIT`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::Row as _;

/// Why a statement failed, on either engine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("the batch did not commit: {0}")]
    Commit(String),
    #[error("the database writer has stopped")]
    Stopped,
    /// One failure answered to every request of a batch.
    #[error("database: {0}")]
    Shared(std::sync::Arc<sqlx::Error>),
    /// A statement and its arguments disagree, or a column is not of the
    /// type asked for: a fault in our code, caught by the tests.
    #[error("statement: {0}")]
    Statement(String),
}

impl StoreError {
    /// Two writers inserted the same key at once (PostgreSQL; SQLite has
    /// one writer).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Sqlx(e) => e
                .as_database_error()
                .is_some_and(|d| d.is_unique_violation()),
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            _ => false,
        }
    }
}

/// One argument of a statement. Nulls carry their type: PostgreSQL types
/// every parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bool(Option<bool>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(Some(v))
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Self::Text(Some(v.clone()))
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_string()))
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Self::Text(v)
    }
}
impl From<Option<&str>> for Value {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(String::from))
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Self::Int(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Self::Bool(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*v))),
            Self::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Self::Int(None) | Self::Bool(None) | Self::Text(None) => {
                ToSqlOutput::Borrowed(ValueRef::Null)
            }
        })
    }
}

/// A statement's arguments, `$1` first.
pub type Args = Vec<Value>;

/// `args![a, b, c]`: the arguments of `$1, $2, $3`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::store::sql::Value::from($value)),*]
    };
}
pub(crate) use args;

/// One row, whichever engine read it.
pub trait Row {
    fn int(&self, column: usize) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: usize) -> Result<Option<String>, StoreError>;
    fn bool(&self, column: usize) -> Result<Option<bool>, StoreError>;
}

fn null(column: usize) -> StoreError {
    StoreError::Statement(format!("column {column} is NULL"))
}

/// A column's value as a Rust type.
pub trait Column: Sized {
    fn read(row: &dyn Row, column: usize) -> Result<Self, StoreError>;
}

impl Column for Option<i64> {
    fn read(row: &dyn Row, column: usize) -> Result<Self, StoreError> {
        row.int(column)
    }
}
impl Column for i64 {
    fn read(row: &dyn Row, column: usize) -> Result<Self, StoreError> {
        row.int(column)?.ok_or_else(|| null(column))
    }
}
impl Column for Option<String> {
    fn read(row: &dyn Row, column: usize) -> Result<Self, StoreError> {
        row.text(column)
    }
}
impl Column for String {
    fn read(row: &dyn Row, column: usize) -> Result<Self, StoreError> {
        row.text(column)?.ok_or_else(|| null(column))
    }
}
impl Column for bool {
    fn read(row: &dyn Row, column: usize) -> Result<Self, StoreError> {
        row.bool(column)?.ok_or_else(|| null(column))
    }
}

/// A row as a Rust value: a single column, a tuple of columns, or a record
/// that reads its columns by position.
pub trait FromRow: Sized {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError>;
}

macro_rules! scalar_rows {
    ($($t:ty),*) => {$(
        impl FromRow for $t {
            fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
                <$t as Column>::read(row, 0)
            }
        }
    )*};
}
scalar_rows!(i64, Option<i64>, String, Option<String>, bool);

macro_rules! tuple_rows {
    ($(($($t:ident $i:tt),+)),*) => {$(
        impl<$($t: Column),+> FromRow for ($($t,)+) {
            fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
                Ok(($($t::read(row, $i)?,)+))
            }
        }
    )*};
}
tuple_rows!(
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, F 5),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7, I 8, J 9)
);

/// A row as the arguments of a statement that writes it back (copying).
pub trait IntoArgs {
    fn into_args(self) -> Args;
}

macro_rules! tuple_args {
    ($(($($t:ident $v:ident),+)),*) => {$(
        impl<$($t: Into<Value>),+> IntoArgs for ($($t,)+) {
            fn into_args(self) -> Args {
                let ($($v,)+) = self;
                vec![$($v.into()),+]
            }
        }
    )*};
}
tuple_args!(
    (A a, B b),
    (A a, B b, C c),
    (A a, B b, C c, D d),
    (A a, B b, C c, D d, E e),
    (A a, B b, C c, D d, E e, F f),
    (A a, B b, C c, D d, E e, F f, G g),
    (A a, B b, C c, D d, E e, F f, G g, H h, I i, J j)
);

/// `row.get(n)` for records' `FromRow`.
pub trait RowExt {
    fn get<T: Column>(&self, column: usize) -> Result<T, StoreError>;
}
impl RowExt for dyn Row + '_ {
    fn get<T: Column>(&self, column: usize) -> Result<T, StoreError> {
        T::read(self, column)
    }
}

impl Row for rusqlite::Row<'_> {
    fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
        Ok(self.get(column)?)
    }
    fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
        Ok(self.get(column)?)
    }
    fn bool(&self, column: usize) -> Result<Option<bool>, StoreError> {
        Ok(self.get(column)?)
    }
}

macro_rules! sqlx_row {
    ($row:ty) => {
        impl Row for $row {
            fn int(&self, column: usize) -> Result<Option<i64>, StoreError> {
                // PostgreSQL's `SELECT 1` is an INT4.
                match self.try_get::<Option<i64>, _>(column) {
                    Err(sqlx::Error::ColumnDecode { .. }) => {
                        Ok(self.try_get::<Option<i32>, _>(column)?.map(i64::from))
                    }
                    other => Ok(other?),
                }
            }
            fn text(&self, column: usize) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(column)?)
            }
            fn bool(&self, column: usize) -> Result<Option<bool>, StoreError> {
                Ok(self.try_get(column)?)
            }
        }
    };
}
sqlx_row!(sqlx::postgres::PgRow);
sqlx_row!(sqlx::sqlite::SqliteRow);

/// A connection a statement runs on inside a transaction: the SQLite
/// writer's, or a PostgreSQL transaction's.
#[allow(async_fn_in_trait)] // used with concrete connections, whose futures' `Send` is known
pub trait Exec {
    /// Runs a statement; how many rows it changed.
    async fn execute(&mut self, sql: &'static str, args: Args) -> Result<u64, StoreError>;
    /// Every row a statement returns.
    async fn fetch_all<R: FromRow>(
        &mut self,
        sql: &'static str,
        args: Args,
    ) -> Result<Vec<R>, StoreError>;
    /// The first row a statement returns, if any.
    async fn fetch_optional<R: FromRow>(
        &mut self,
        sql: &'static str,
        args: Args,
    ) -> Result<Option<R>, StoreError>;
    /// The row a statement must return.
    async fn fetch_one<R: FromRow>(
        &mut self,
        sql: &'static str,
        args: Args,
    ) -> Result<R, StoreError> {
        self.fetch_optional(sql, args)
            .await?
            .ok_or_else(|| StoreError::Statement(format!("no row: {sql}")))
    }
}

/// The output of a future that cannot wait (a [`Work`] on the SQLite
/// writer, whose statements complete synchronously).
pub(crate) fn run_ready<F: Future>(future: F) -> Result<F::Output, StoreError> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(StoreError::Statement(
            "a SQLite transaction waited on something other than its statements".into(),
        )),
    }
}

/// A transaction's logic, written once: `run` is given the engine's
/// connection, inside a transaction that commits when it returns `Ok` and
/// rolls back when it returns `Err`.
#[allow(async_fn_in_trait)] // see Exec
pub trait Work: Send + 'static {
    type Output: Send + 'static;
    async fn run<E: Exec>(self, tx: &mut E) -> Result<Self::Output, StoreError>;
}

/// The SQLite writer's connection (prepared statements kept).
pub struct SqliteConn<'c>(pub &'c rusqlite::Connection);

impl SqliteConn<'_> {
    /// The statement, prepared once, with `args` bound by number: SQLite
    /// numbers named parameters as they first appear, so `$2` before `$1`
    /// is bound by its name, not its position.
    fn prepare(
        &self,
        sql: &str,
        args: &[Value],
    ) -> Result<rusqlite::CachedStatement<'_>, StoreError> {
        let mut statement = self.0.prepare_cached(sql)?;
        let count = statement.parameter_count();
        if count != args.len() {
            return Err(StoreError::Statement(format!(
                "{count} parameters, {} arguments: {sql}",
                args.len()
            )));
        }
        for index in 1..=count {
            let number = statement
                .parameter_name(index)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| (1..=args.len()).contains(n))
                .ok_or_else(|| {
                    StoreError::Statement(format!("parameter {index} is not $n: {sql}"))
                })?;
            statement.raw_bind_parameter(index, &args[number - 1])?;
        }
        Ok(statement)
    }

    pub fn execute_now(&self, sql: &str, args: &[Value]) -> Result<u64, StoreError> {
        Ok(self.prepare(sql, args)?.raw_execute()? as u64)
    }

    pub fn fetch_all_now<R: FromRow>(
        &self,
        sql: &str,
        args: &[Value],
    ) -> Result<Vec<R>, StoreError> {
        let mut statement = self.prepare(sql, args)?;
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(R::from_row(row)?);
        }
        Ok(out)
    }

    pub fn fetch_optional_now<R: FromRow>(
        &self,
        sql: &str,
        args: &[Value],
    ) -> Result<Option<R>, StoreError> {
        let mut statement = self.prepare(sql, args)?;
        let mut rows = statement.raw_query();
        match rows.next()? {
            Some(row) => Ok(Some(R::from_row(row)?)),
            None => Ok(None),
        }
    }
}

impl Exec for SqliteConn<'_> {
    async fn execute(&mut self, sql: &'static str, args: Args) -> Result<u64, StoreError> {
        self.execute_now(sql, &args)
    }
    async fn fetch_all<R: FromRow>(
        &mut self,
        sql: &'static str,
        args: Args,
    ) -> Result<Vec<R>, StoreError> {
        self.fetch_all_now(sql, &args)
    }
    async fn fetch_optional<R: FromRow>(
        &mut self,
        sql: &'static str,
        args: Args,
    ) -> Result<Option<R>, StoreError> {
        self.fetch_optional_now(sql, &args)
    }
}

/// Binds `args` to a sqlx query, `$1` first.
macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for value in $args {
            query = match value {
                $crate::store::sql::Value::Int(v) => query.bind(v),
                $crate::store::sql::Value::Text(v) => query.bind(v),
                $crate::store::sql::Value::Bool(v) => query.bind(v),
            };
        }
        query
    }};
}
pub(crate) use bind_all;

/// A PostgreSQL connection inside a transaction.
pub struct PgConn<'c>(pub &'c mut sqlx::PgConnection);

impl Exec for PgConn<'_> {
    async fn execute(&mut self, sql: &'static str, args: Args) -> Result<u64, StoreError> {
        Ok(bind_all!(sqlx::query(sql), args)
            .execute(&mut *self.0)
            .await?
            .rows_affected())
    }
    async fn fetch_all<R: FromRow>(
        &mut self,
        sql: &'static str,
        args: Args,
    ) -> Result<Vec<R>, StoreError> {
        let rows = bind_all!(sqlx::query(sql), args)
            .fetch_all(&mut *self.0)
            .await?;
        rows.iter().map(|row| R::from_row(row)).collect()
    }
    async fn fetch_optional<R: FromRow>(
        &mut self,
        sql: &'static str,
        args: Args,
    ) -> Result<Option<R>, StoreError> {
        let row = bind_all!(sqlx::query(sql), args)
            .fetch_optional(&mut *self.0)
            .await?;
        row.as_ref().map(|row| R::from_row(row)).transpose()
    }
}
