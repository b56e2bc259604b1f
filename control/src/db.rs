//! The store's query plumbing, written once: run a statement on the pool or
//! inside a transaction, decode its rows through their [`sqlx::FromRow`], and
//! say in the error what the store was doing ([`ControlError::db`]) or what
//! was not there ([`ControlError::NotFound`]).
//!
//! A query reads as its SQL, its binds and one of these verbs:
//! `sqlx::query("SELECT * FROM fixes WHERE id = $1").bind(id).found(self.pool(), format!("fix {id}"))`.

use std::fmt::Display;

use sqlx::any::{AnyArguments, AnyExecutor, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, FromRow, Row, Transaction};

use crate::error::{ControlError, Result};

/// A decodable row type: what the verbs below return.
pub(crate) trait Decoded: for<'r> FromRow<'r, AnyRow> + Send + Unpin + 'static {}
impl<T: for<'r> FromRow<'r, AnyRow> + Send + Unpin + 'static> Decoded for T {}

/// A value the first column of a row decodes into (a count, a returned id).
pub(crate) trait Scalar:
    for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + Send + 'static
{
}
impl<T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any> + Send + 'static> Scalar for T {}

/// Where a statement runs: the pool, or a transaction (`&mut *tx`).
pub(crate) trait Exec<'e>: 'e + AnyExecutor<'e> {}
impl<'e, E: 'e + AnyExecutor<'e>> Exec<'e> for E {}

/// The verbs of a statement built with `sqlx::query(..).bind(..)`. `doing`
/// names the work for the error (`listing the runs of fix 3`). Their
/// futures are `Send` by signature, so a worker's loop can hold them.
pub(crate) trait Run<'q>: Sized {
    /// The statement with its binds.
    fn statement(self) -> Query<'q, Any, AnyArguments<'q>>;

    /// Every row, decoded.
    fn all<'e, T: Decoded, E: Exec<'e>>(
        self,
        ex: E,
        doing: impl Into<String>,
    ) -> impl Future<Output = Result<Vec<T>>> + Send
    where
        'q: 'e,
    {
        let (statement, doing) = (self.statement(), doing.into());
        async move {
            let rows = statement.fetch_all(ex).await;
            rows.and_then(|rows| rows.iter().map(T::from_row).collect())
                .map_err(ControlError::db(doing))
        }
    }

    /// The row the statement must return, decoded (none is a store error).
    fn one<'e, T: Decoded, E: Exec<'e>>(
        self,
        ex: E,
        doing: impl Into<String>,
    ) -> impl Future<Output = Result<T>> + Send
    where
        'q: 'e,
    {
        let (statement, doing) = (self.statement(), doing.into());
        async move {
            let row = statement.fetch_one(ex).await;
            row.and_then(|row| T::from_row(&row))
                .map_err(ControlError::db(doing))
        }
    }

    /// The row, if there is one, decoded.
    fn optional<'e, T: Decoded, E: Exec<'e>>(
        self,
        ex: E,
        doing: impl Into<String>,
    ) -> impl Future<Output = Result<Option<T>>> + Send
    where
        'q: 'e,
    {
        let (statement, doing) = (self.statement(), doing.into());
        async move {
            let row = statement.fetch_optional(ex).await;
            row.and_then(|row| row.as_ref().map(T::from_row).transpose())
                .map_err(ControlError::db(doing))
        }
    }

    /// The row of `what` (`fix 3`), decoded: the error says "reading fix 3",
    /// and no row is "there is no fix 3" (not found).
    fn found<'e, T: Decoded, E: Exec<'e>>(
        self,
        ex: E,
        what: impl Display,
    ) -> impl Future<Output = Result<T>> + Send
    where
        'q: 'e,
    {
        let missing = format!("there is no {what}");
        let row = self.optional(ex, format!("reading {what}"));
        async move { row.await?.ok_or(ControlError::NotFound(missing)) }
    }

    /// The first column of the row the statement must return (a count, an id
    /// from `RETURNING id`).
    fn scalar<'e, T: Scalar, E: Exec<'e>>(
        self,
        ex: E,
        doing: impl Into<String>,
    ) -> impl Future<Output = Result<T>> + Send
    where
        'q: 'e,
    {
        let (statement, doing) = (self.statement(), doing.into());
        async move {
            let row = statement.fetch_one(ex).await;
            row.and_then(|row| row.try_get(0))
                .map_err(ControlError::db(doing))
        }
    }

    /// The first column of every row (ids, names).
    fn column<'e, T: Scalar, E: Exec<'e>>(
        self,
        ex: E,
        doing: impl Into<String>,
    ) -> impl Future<Output = Result<Vec<T>>> + Send
    where
        'q: 'e,
    {
        let (statement, doing) = (self.statement(), doing.into());
        async move {
            let rows = statement.fetch_all(ex).await;
            rows.and_then(|rows| rows.iter().map(|row| row.try_get(0)).collect())
                .map_err(ControlError::db(doing))
        }
    }

    /// Runs the statement; the number of rows it changed.
    fn run<'e, E: Exec<'e>>(
        self,
        ex: E,
        doing: impl Into<String>,
    ) -> impl Future<Output = Result<u64>> + Send
    where
        'q: 'e,
    {
        let (statement, doing) = (self.statement(), doing.into());
        async move {
            let done = statement.execute(ex).await;
            done.map(|d| d.rows_affected())
                .map_err(ControlError::db(doing))
        }
    }
}

impl<'q> Run<'q> for Query<'q, Any, AnyArguments<'q>> {
    fn statement(self) -> Self {
        self
    }
}

/// Commits `tx`; `doing` names it in the error (`committing a new fix`).
pub(crate) async fn commit(tx: Transaction<'static, Any>, doing: impl Into<String>) -> Result<()> {
    tx.commit().await.map_err(ControlError::db(doing))
}

/// Lets each named type stand in a row as the text it is stored as (a phase,
/// a job's kind or state): the column decodes as a string, then the type's
/// `parse(&str) -> Result<Self>` reads it, so `#[derive(sqlx::FromRow)]`
/// takes the type (or an `Option` of it) as a field.
macro_rules! stored_as_text {
    ($($t:ty),+ $(,)?) => {$(
        impl sqlx::Type<sqlx::Any> for $t {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }
            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }
        impl<'r> sqlx::Decode<'r, sqlx::Any> for $t {
            fn decode(
                value: sqlx::any::AnyValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                Ok(<$t>::parse(&text)?)
            }
        }
    )+};
}
pub(crate) use stored_as_text;

/// A yes/no stored as an integer (0 or 1), as both dialects keep it: a field
/// `#[sqlx(try_from = "db::Flag")]` of type `bool` reads it.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub struct Flag(i64);

impl From<Flag> for bool {
    fn from(flag: Flag) -> bool {
        flag.0 != 0
    }
}
