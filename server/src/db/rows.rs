//! Reading columns the same way from both databases: flags are integers
//! (0/1) and JSON is text in both schemas, decoded here.

use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A 0/1 integer column (or expression) as a `bool`.
pub fn flag(row: &AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// A nullable 0/1 integer column as an `Option<bool>`.
pub fn optional_flag(row: &AnyRow, column: &str) -> Result<Option<bool>, sqlx::Error> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(|n| n != 0))
}

/// A JSON text column, decoded.
pub fn json<T: DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    decode(column, &text)
}

/// A nullable JSON text column, decoded.
pub fn optional_json<T: DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>, sqlx::Error> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|text| decode(column, &text)).transpose()
}

fn decode<T: DeserializeOwned>(column: &str, text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}
