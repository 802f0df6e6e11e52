//! The suites that run over both databases: SQLite by default, PostgreSQL
//! when `DROVER_TEST_DATABASE=postgres` (scripts/test's second pass), on the
//! throwaway cluster scripts/test starts (`DROVER_TEST_POSTGRES`, its admin
//! URL; see scripts/postgres).

use std::process::Command;

/// Whether this run's servers store their data in PostgreSQL.
pub fn enabled() -> bool {
    std::env::var("DROVER_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// The URL of a new, empty database on the test cluster, when the suite
/// runs over PostgreSQL; `None` over SQLite.
pub fn fresh_database() -> Option<String> {
    enabled().then(|| create_database(&admin_url()))
}

/// The cluster's admin URL (`postgres://USER@localhost:PORT/postgres?host=DIR`).
pub fn admin_url() -> String {
    std::env::var("DROVER_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!(
            "this test needs PostgreSQL, and DROVER_TEST_POSTGRES (a cluster's admin URL) is not set\n\
             hint: run the tests through scripts/test, which starts a cluster, or start one \
             with `scripts/postgres start DIR` and export the URL it prints"
        )
    })
}

/// Creates a database named after this process and a counter on the cluster
/// at `admin` (with psql, the cluster's own client) and returns its URL.
pub fn create_database(admin: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "drover_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .args([
            "--no-psqlrc",
            "--quiet",
            "-v",
            "ON_ERROR_STOP=1",
            admin,
            "-c",
        ])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .expect("psql runs (Debian's postgresql-client)");
    assert!(
        out.status.success(),
        "CREATE DATABASE {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    database_url(admin, &name)
}

/// `admin` with its database (the URL's path) replaced by `name`.
pub fn database_url(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').unwrap_or((admin, ""));
    let (server, _) = base.rsplit_once('/').expect("a database in the URL's path");
    match query {
        "" => format!("{server}/{name}"),
        query => format!("{server}/{name}?{query}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_of_a_url_is_replaced_and_its_query_kept() {
        assert_eq!(
            super::database_url("postgres://p@localhost:5/postgres?host=/t/s", "d1"),
            "postgres://p@localhost:5/d1?host=/t/s"
        );
        assert_eq!(
            super::database_url("postgres://p@h/postgres", "d2"),
            "postgres://p@h/d2"
        );
    }
}
