//! Content collection: deletes the stored contents no catalog needs.
//!
//! Every compile stores the contents its catalog references, once per
//! hash, and nothing deleted them: each edit of a file under `files/` left
//! its old bytes in the database for good. The collector deletes a content
//! unless
//! - a node's last good catalog (the `catalogs` table) references it,
//! - a node's current catalog in memory (`Served`) or a catalog in the
//!   compile cache references it, or
//! - a compile produced it, or the compile cache served a catalog
//!   referencing it, within the grace period ([`GRACE`]): a compile in
//!   flight, whose catalog is not recorded yet.
//!
//! Races: each batch of deletes is one write of the database's single
//! writer, so a catalog recorded concurrently is either written before the
//! batch (its contents were marked used when it was compiled or taken from
//! the cache) or after it. A compile that reuses a content it believes
//! stored checks "stored?" under the same lock as the collector's "may I
//! delete it?" ([`crate::served::Served::sweep`], which evicts what it
//! dooms from the bytes at hand): either the collector sees the mark, or
//! the compile sees the content is not stored and writes it again, behind
//! the delete in the writer's queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use tokio_util::sync::CancellationToken;

use drover_catalog::Catalog;

use crate::db::{Db, DbError};
use crate::served::{Served, parse_sha};

/// How long a content produced by a compile is kept without a stored
/// catalog referencing it (far longer than any compile takes).
pub const GRACE: Duration = Duration::from_secs(3600);

/// How often the collector runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Contents deleted per write (other writes go in between).
const BATCH: usize = 500;

/// The contents the compile cache's catalogs reference.
pub type Live = Arc<dyn Fn() -> HashSet<[u8; 32]> + Send + Sync>;

/// What the collector looks at: the database, the contents in use in
/// memory, and the compile cache (as [`Live`]).
#[derive(Clone)]
pub struct Collector {
    pub db: Db,
    pub served: Arc<Served>,
    pub live: Live,
}

impl Collector {
    /// Deletes the contents nothing references (see the module's doc), with
    /// `grace` as the grace period; returns how many were deleted.
    pub async fn collect(&self, grace: Duration) -> Result<u64, DbError> {
        let stored = stored_references(&self.db).await?;
        let all: Vec<String> = sqlx::query_scalar("SELECT sha256 FROM contents")
            .fetch_all(self.db.reads())
            .await?;
        let candidates: Vec<[u8; 32]> = all
            .iter()
            .filter_map(|hex| parse_sha(hex))
            .filter(|sha| !stored.contains(sha))
            .collect();
        let mut deleted = 0;
        for batch in candidates.chunks(BATCH) {
            let (served, live, batch) = (self.served.clone(), self.live.clone(), batch.to_vec());
            deleted += self
                .db
                .write(move |conn| {
                    Box::pin(async move {
                        let doomed = served.sweep(&batch, grace, || live());
                        let mut n = 0;
                        for sha in doomed {
                            n += sqlx::query("DELETE FROM contents WHERE sha256 = $1")
                                .bind(hex::encode(sha))
                                .execute(&mut *conn)
                                .await?
                                .rows_affected();
                        }
                        Ok(n)
                    })
                })
                .await?;
        }
        Ok(deleted)
    }

    /// Collects every [`EVERY`] until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(EVERY) => {}
            }
            match self.collect(GRACE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "deleted contents no catalog references"),
                Err(e) => tracing::warn!(error = %e, "collecting unreferenced contents failed"),
            }
        }
    }
}

/// Every content the stored (last good) catalogs reference.
async fn stored_references(db: &Db) -> Result<HashSet<[u8; 32]>, DbError> {
    let mut rows =
        sqlx::query_scalar::<_, String>("SELECT catalog FROM catalogs").fetch(db.reads());
    let mut referenced = HashSet::new();
    while let Some(text) = rows.try_next().await? {
        let catalog: Catalog = serde_json::from_str(&text)?;
        referenced.extend(catalog.referenced_hashes().filter_map(parse_sha));
    }
    Ok(referenced)
}
