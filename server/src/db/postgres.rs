//! PostgreSQL, for several servers on one database: a pool of readers, the
//! writer's own connection, and migrations of its own (`migrations/postgres`)
//! that sqlx runs under an advisory lock, so servers starting together
//! migrate once.

use std::str::FromStr;
use std::sync::Arc;

use sqlx::AnyPool;
use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, Connection};

use super::writer::Connect;
use super::{DbError, READERS, redacted};

/// Connects, migrates, and returns the readers and how to connect the writer.
pub(super) async fn open(url: &str) -> Result<(AnyPool, Connect), DbError> {
    let opened = |source| DbError::Open {
        url: redacted(url),
        source,
    };
    let options = AnyConnectOptions::from_str(url).map_err(|source| DbError::Url {
        url: redacted(url),
        source,
    })?;
    let mut setup = AnyConnection::connect_with(&options)
        .await
        .map_err(opened)?;
    sqlx::migrate!("migrations/postgres")
        .run(&mut setup)
        .await?;
    setup.close().await.map_err(opened)?;
    let reads = super::pool(url, READERS, "").await?;
    let connect: Connect = Arc::new(move || {
        let options = options.clone();
        Box::pin(async move { AnyConnection::connect_with(&options).await })
    });
    Ok((reads, connect))
}
