//! The cache's work spread over a few threads: lstats and hashes.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Key, READ_BUF, hash_path};

/// Threads at most: beyond a few, the disk is the limit.
const MAX_THREADS: usize = 4;
/// Below this much to hash, threads cost more than they save.
const PARALLEL_MIN_BYTES: u64 = 1 << 20;
/// Below this many files to stat, threads cost more than they save.
const PARALLEL_MIN_LSTATS: usize = 1024;

/// How many threads (this one included) a piece of work gets: one when it
/// is too small to be worth more, else as many as there are CPUs, up to
/// [`MAX_THREADS`] and to `items`.
fn threads_for(worth_it: bool, items: usize) -> usize {
    if !worth_it {
        return 1;
    }
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_THREADS)
        .min(items)
}

/// Runs `lstat` on each item, which fills in the lstat of those that need
/// one: on a few threads when `count`, how many need one, is large (each is
/// a path walk in the kernel; on 10,000 files, a quarter of a no-change run
/// when done one by one).
pub(super) fn lstat_each<T: Send>(items: &mut [T], count: usize, lstat: impl Fn(&mut T) + Sync) {
    let threads = threads_for(count >= PARALLEL_MIN_LSTATS, items.len());
    if threads <= 1 {
        items.iter_mut().for_each(lstat);
        return;
    }
    let chunk = items.len().div_ceil(threads);
    let lstat = &lstat;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks_mut(chunk);
        let first = chunks.next().unwrap_or_default();
        for part in chunks {
            scope.spawn(move || part.iter_mut().for_each(lstat));
        }
        first.iter_mut().for_each(lstat);
    });
}

/// Hashes `jobs` (path, stat'ed key) on up to [`MAX_THREADS`] threads, each
/// with its own buffer; returns (job index, sha256) for those it could read
/// (the walk reports the others' errors itself).
pub(super) fn hash_all(jobs: &[(&str, Key)]) -> Vec<(usize, [u8; 32])> {
    let bytes: u64 = jobs.iter().map(|(_, key)| key.size).sum();
    let threads = threads_for(bytes >= PARALLEL_MIN_BYTES, jobs.len());
    let next = AtomicUsize::new(0);
    let work = || {
        let mut buf = vec![0; READ_BUF];
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some((path, _)) = jobs.get(i) else { break };
            if let Ok(sha) = hash_path(Path::new(path), &mut buf) {
                done.push((i, sha));
            }
        }
        done
    };
    if threads <= 1 {
        return work();
    }
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut done = work();
        for helper in helpers {
            // A helper that panicked hashed nothing usable: the walk hashes those.
            done.extend(helper.join().unwrap_or_default());
        }
        done
    })
}
