//! The cache's file: a magic line, when the last full verification started,
//! the entries (path, dev, inode, size, mtime, ctime, when recorded,
//! sha256), then a sha256 of all of it, so a torn or edited file is known.

use anyhow::{Result, bail};
use sha2::{Digest, Sha256};

use super::{Entry, Key};

const MAGIC: &[u8; 8] = b"DRVFC01\n";
pub(super) const HEADER: usize = MAGIC.len() + 8 + 4;
const ENTRY_FIXED: usize = 4 + 6 * 8 + 32;
const CHECKSUM: usize = 32;

pub(super) fn serialize(verified_at: i64, entries: &[(Box<str>, Entry)]) -> Vec<u8> {
    let size = HEADER
        + entries
            .iter()
            .map(|(p, _)| ENTRY_FIXED + p.len())
            .sum::<usize>()
        + CHECKSUM;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&verified_at.to_le_bytes());
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&count.to_le_bytes());
    for (path, e) in entries.iter().take(count as usize) {
        let len = u32::try_from(path.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(path.as_bytes());
        let k = e.key;
        for n in [k.dev, k.ino, k.size] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for n in [k.mtime_ns, k.ctime_ns, e.recorded_at] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&e.sha);
    }
    let checksum: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&checksum);
    out
}

/// The entries of a cache file, by path, in the order they were written.
pub(super) type Entries = Vec<(Box<str>, Entry)>;

/// (verified_at, entries) of a cache file's bytes.
pub(super) fn parse(bytes: &[u8]) -> Result<(i64, Entries)> {
    if bytes.len() < HEADER + CHECKSUM || &bytes[..MAGIC.len()] != MAGIC {
        bail!("not a drover file cache (version 1)");
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM);
    if Sha256::digest(body).as_slice() != checksum {
        bail!("its checksum does not match (a torn or edited file)");
    }
    let mut r = Reader(&body[MAGIC.len()..]);
    let verified_at = r.i64()?;
    let count = r.u32()? as usize;
    let mut entries = Vec::with_capacity(count.min(body.len() / ENTRY_FIXED));
    for _ in 0..count {
        let len = r.u32()? as usize;
        let path = std::str::from_utf8(r.take(len)?)
            .map_err(|_| anyhow::anyhow!("an entry's path is not UTF-8"))?;
        let key = Key {
            dev: r.u64()?,
            ino: r.u64()?,
            size: r.u64()?,
            mtime_ns: r.i64()?,
            ctime_ns: r.i64()?,
        };
        let recorded_at = r.i64()?;
        let sha = r.take(32)?.try_into().expect("took 32 bytes");
        entries.push((
            path.into(),
            Entry {
                key,
                recorded_at,
                sha,
            },
        ));
    }
    if !r.0.is_empty() {
        bail!("{} bytes after the last entry", r.0.len());
    }
    Ok((verified_at, entries))
}

struct Reader<'b>(&'b [u8]);

impl<'b> Reader<'b> {
    fn take(&mut self, n: usize) -> Result<&'b [u8]> {
        if self.0.len() < n {
            bail!("it ends in the middle of an entry");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into()?))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into()?))
    }
}
