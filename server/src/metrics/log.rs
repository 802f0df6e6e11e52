//! The log writer: stderr, but a line that cannot be written (a full disk,
//! a pipe whose reader exited) is dropped and counted, never a panic.
//!
//! tracing-subscriber reports a failed write with `eprintln!`, which panics
//! when stderr itself fails, and `panic = "abort"` would then kill the server
//! mid-service; this writer never returns an error, so that path is not taken.

use std::io::{self, Write};
use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;

/// Log lines dropped because stderr could not take them, for the whole
/// process; registered as `drover_log_lines_dropped_total`.
pub static LOG_LINES_DROPPED: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Makes a [`DropOnError`] over stderr for each event.
pub fn stderr_writer() -> DropOnError<io::Stderr> {
    DropOnError(io::stderr())
}

/// A writer that counts and swallows its inner writer's errors.
#[derive(Debug)]
pub struct DropOnError<W>(pub W);

impl<W: Write> Write for DropOnError<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // tracing-subscriber formats one event into a buffer and writes it with
        // one `write_all`, so one failure here is one dropped line.
        if self.0.write_all(buf).is_err() {
            LOG_LINES_DROPPED.inc();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::Error::from_raw_os_error(28))
        }
    }

    #[test]
    fn a_failed_line_is_counted_not_returned() {
        let before = LOG_LINES_DROPPED.get();
        let mut w = DropOnError(Full);
        w.write_all(b"one line\n").unwrap();
        w.flush().unwrap();
        assert!(LOG_LINES_DROPPED.get() > before);
    }
}
