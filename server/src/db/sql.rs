//! A query built in pieces, with `$N` parameters: the one placeholder
//! syntax both databases read. (sqlx's `QueryBuilder` over the `Any` driver
//! writes `?`, which PostgreSQL does not take.)

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, Encode, FromRow, Type};

use super::{Db, DbError};

/// SQL text and its arguments.
#[derive(Default)]
pub struct Sql {
    text: String,
    args: AnyArguments<'static>,
    count: usize,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            ..Sql::default()
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a parameter (`$N`) bound to `value`.
    pub fn bind<T>(&mut self, value: T) -> &mut Sql
    where
        T: Encode<'static, Any> + Type<Any> + Send + 'static,
    {
        let n = self.param(value);
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }

    /// Binds `value` as the next parameter without writing it: its number,
    /// for SQL that names it (see [`super::Backend::json_text`]).
    pub fn param<T>(&mut self, value: T) -> usize
    where
        T: Encode<'static, Any> + Type<Any> + Send + 'static,
    {
        // Encoding into the Any driver's buffer cannot fail for the types
        // it takes (Type<Any> above): it only stores the value.
        let _ = self.args.add(value);
        self.count += 1;
        self.count
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub async fn fetch_all<O>(self, db: &Db) -> Result<Vec<O>, DbError>
    where
        O: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        Ok(sqlx::query_as_with(&self.text, self.args)
            .fetch_all(db.reads())
            .await?)
    }

    pub async fn fetch_optional<O>(self, db: &Db) -> Result<Option<O>, DbError>
    where
        O: for<'r> FromRow<'r, AnyRow> + Send + Unpin,
    {
        Ok(sqlx::query_as_with(&self.text, self.args)
            .fetch_optional(db.reads())
            .await?)
    }

    pub async fn rows(self, db: &Db) -> Result<Vec<AnyRow>, DbError> {
        Ok(sqlx::query_with(&self.text, self.args)
            .fetch_all(db.reads())
            .await?)
    }

    pub async fn row(self, db: &Db) -> Result<Option<AnyRow>, DbError> {
        Ok(sqlx::query_with(&self.text, self.args)
            .fetch_optional(db.reads())
            .await?)
    }

    pub async fn scalar<T>(self, db: &Db) -> Result<T, DbError>
    where
        T: for<'r> sqlx::Decode<'r, Any> + Type<Any> + Send + Unpin,
    {
        Ok(sqlx::query_scalar_with(&self.text, self.args)
            .fetch_one(db.reads())
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_numbered_in_the_order_they_are_bound() {
        let mut q = Sql::new("SELECT 1 WHERE a = ");
        q.bind("x").push(" AND b = ").bind(2_i64);
        let n = q.param("y");
        q.push(&format!(" AND c = ${n}"));
        assert_eq!(q.text(), "SELECT 1 WHERE a = $1 AND b = $2 AND c = $3");
    }
}
