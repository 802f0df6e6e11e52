//! Dashboard sessions: the cookie holds a random session id, never an
//! operator token; the database keeps only the id's sha256 and when the
//! session ends, so several servers on one database share sessions and a
//! leaked database holds nothing a browser could replay. Expired sessions
//! are refused, and deleted whenever a session opens or ends.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::db::{Db, DbError};

/// The cookie that carries a session id.
pub const COOKIE: &str = "drover_session";

/// Opens a session lasting `lifetime` (and deletes expired ones); its id,
/// for the cookie.
pub async fn open(db: &Db, lifetime: Duration) -> Result<String, DbError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| DbError::Commit("the system random generator failed".into()))?;
    let id = hex::encode(bytes);
    let now = now_us();
    let expires = now.saturating_add(i64::try_from(lifetime.as_micros()).unwrap_or(i64::MAX));
    let digest = digest(&id);
    db.write(move |conn| {
        Box::pin(async move {
            sqlx::query("DELETE FROM sessions WHERE expires_at_us <= $1")
                .bind(now)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "INSERT INTO sessions (id_sha256, operator, created_at_us, expires_at_us)
                 VALUES ($1, 'token', $2, $3)",
            )
            .bind(digest)
            .bind(now)
            .bind(expires)
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    })
    .await?;
    Ok(id)
}

/// Ends session `id` (if given) and deletes expired ones.
pub async fn end(db: &Db, id: Option<&str>) -> Result<(), DbError> {
    let (digest, now) = (id.map(digest), now_us());
    db.write(move |conn| {
        Box::pin(async move {
            sqlx::query("DELETE FROM sessions WHERE id_sha256 = $1 OR expires_at_us <= $2")
                .bind(digest)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    })
    .await
}

/// Whether `id` names a session that has not ended.
pub async fn is_open(db: &Db, id: &str) -> Result<bool, DbError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM sessions WHERE id_sha256 = $1 AND expires_at_us > $2")
            .bind(digest(id))
            .bind(now_us())
            .fetch_optional(db.reads())
            .await?;
    Ok(row.is_some())
}

fn now_us() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// What the database keeps of a session id.
fn digest(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The session id of a `Cookie` header, if there is one.
pub fn from_cookies(cookies: &str) -> Option<&str> {
    cookies
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        assert_eq!(from_cookies("a=1; drover_session=abc ; b=2"), Some("abc"));
        assert_eq!(from_cookies("drover_sessionx=abc"), None);
        assert_eq!(from_cookies("drover_session="), None);
        assert_eq!(from_cookies(""), None);
    }
}
