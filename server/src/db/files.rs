//! The database's files on disk: who may read them, and whether they are
//! intact.
//!
//! The database holds what nodes must not read of each other (catalogs,
//! file contents, reports with diffs), so its file is made 0600 before
//! SQLite opens it. SQLite creates the `-wal` and `-shm` files with the
//! mode of the database file, so they follow; those left wider by an older
//! server are tightened, with a log line, at every start.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::DbError;

/// The mode of the database and its `-wal` and `-shm` files.
pub const FILE_MODE: u32 = 0o600;

/// Creates `path` 0600 when missing, and makes it and its `-wal` and `-shm`
/// files 0600 when they exist with wider modes (logged).
pub fn secure(path: &Path) -> Result<(), DbError> {
    let io = |e: std::io::Error| DbError::Files {
        path: path.to_owned(),
        source: e,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io)?;
    for file in [
        path.to_owned(),
        companion(path, "-wal"),
        companion(path, "-shm"),
    ] {
        let meta = match std::fs::metadata(&file) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(FILE_MODE)).map_err(
                |source| DbError::Files {
                    path: file.clone(),
                    source,
                },
            )?;
            tracing::warn!(
                file = %file.display(),
                was = format!("{mode:04o}"),
                "database file was readable by other users: made 0600"
            );
        }
    }
    Ok(())
}

/// `drover.db` + `-wal`: `drover.db-wal`.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether an SQLite error says the file is damaged (rather than, say,
/// missing or locked).
pub fn is_corruption(e: &sqlx::Error) -> bool {
    let text = e.to_string();
    text.contains("malformed") || text.contains("not a database") || text.contains("corrupt")
}

/// The error for a damaged database file, with what to do about it.
pub fn corrupt(path: &Path, detail: impl std::fmt::Display) -> DbError {
    DbError::Corrupt {
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// `PRAGMA quick_check` on `conn`: `Ok` when it says `ok`, else the
/// corruption it found (its first lines).
pub async fn quick_check(conn: &mut sqlx::SqliteConnection, path: &Path) -> Result<(), DbError> {
    let found: Vec<String> = match sqlx::query_scalar("PRAGMA quick_check(6)")
        .fetch_all(&mut *conn)
        .await
    {
        Ok(found) => found,
        Err(e) if is_corruption(&e) => return Err(corrupt(path, e)),
        Err(e) => return Err(DbError::Query(e)),
    };
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    // Rows of one or more lines; the first names the schema (`*** in
    // database main ***`).
    let lines: Vec<&str> = found
        .iter()
        .flat_map(|row| row.lines())
        .filter(|line| !line.starts_with("***") && !line.trim().is_empty())
        .collect();
    let mut detail = lines.iter().take(5).copied().collect::<Vec<_>>().join("; ");
    if lines.len() > 5 {
        detail.push_str("; ...");
    }
    Err(corrupt(path, detail))
}

/// The mode of the data directory.
pub const DIR_MODE: u32 = 0o700;

/// Creates the data directory 0700 (its missing parents too), or makes an
/// existing one 0700 when other users could read it (logged): it holds the
/// CA's key, the operator tokens and the database.
pub fn secure_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
        })?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot make {} 0700: {e}", dir.display()))
        })?;
        tracing::warn!(
            dir = %dir.display(),
            was = format!("{mode:04o}"),
            "data directory was open to other users: made 0700"
        );
    }
    Ok(())
}

/// `serve`'s hold on its SQLite database: SQLite belongs to one server.
/// An exclusive lock on `DB.serve-lock` (holding the server's pid), taken
/// before the database is opened and held while the server runs, refuses
/// a second `serve` on the same file, which would share the database but
/// not the writer, the watches or the caches. The `ca` and `check`
/// commands open the database briefly and take no such lock.
#[derive(Debug)]
pub struct ServeLock {
    _held: nix::fcntl::Flock<std::fs::File>,
}

impl ServeLock {
    pub fn take(db: &Path) -> Result<ServeLock, DbError> {
        use nix::fcntl::{Flock, FlockArg};
        use std::io::{Read, Seek, Write};
        let path = companion(db, ".serve-lock");
        let io = |source: std::io::Error| DbError::Files {
            path: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut held) => {
                held.set_len(0).map_err(io)?;
                held.rewind().map_err(io)?;
                writeln!(held, "{}", std::process::id()).map_err(io)?;
                Ok(ServeLock { _held: held })
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                // The pid is only for the message: unreadable, it is left out.
                let _ = file.read_to_string(&mut pid);
                Err(DbError::InUse {
                    path: db.to_owned(),
                    pid: pid.trim().parse().ok(),
                })
            }
            Err((_, errno)) => Err(io(errno.into())),
        }
    }
}
