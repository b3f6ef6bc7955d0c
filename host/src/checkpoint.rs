//! The checkpoint store: a directory of numbered snapshot files.
//!
//! A file holds one snapshot's bytes behind a fixed header:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `EDGECKPT` |
//! | 4 | format version, little-endian (`1`) |
//! | 8 | sequence number, little-endian |
//! | 8 | payload length, little-endian |
//! | 32 | SHA-256 of the payload |
//! | n | payload |
//!
//! A snapshot is written to a temporary name, synced, renamed to
//! `checkpoint-<sequence>.ckpt` and the directory synced, so a crash leaves
//! either the previous snapshot or the new one, never a torn file under a
//! checkpoint's name. The newest `keep` snapshots are kept. Reading takes
//! the newest snapshot that checks out; one that does not (cut short,
//! checksum wrong, unknown version) is reported and the one before it used.

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"EDGECKPT";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8 + 32;

/// A directory of snapshots.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    keep: usize,
}

/// A snapshot read back from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// Its sequence number.
    pub sequence: u64,
    /// Its file.
    pub path: PathBuf,
    /// Its bytes.
    pub payload: Vec<u8>,
    /// Newer snapshots that were refused, with the reason each was.
    pub refused: Vec<(PathBuf, String)>,
}

impl Store {
    /// The store in `dir` (created when missing, as a directory only the
    /// user can read; an existing one is left as it is), keeping the newest `keep` snapshots (at least one).
    pub fn open(dir: &Path, keep: usize) -> Result<Self, String> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| {
            format!(
                "cannot create the checkpoint directory {}: {e}; choose another with checkpoint.dir",
                dir.display()
            )
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
        })
    }

    /// The snapshots' files, oldest first, with their sequence numbers.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, String> {
        self.files("checkpoint-")
    }

    /// The files `<prefix><sequence>.ckpt`, oldest first.
    fn files(&self, prefix: &str) -> Result<Vec<(u64, PathBuf)>, String> {
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| format!("cannot read {}: {e}", self.dir.display()))?;
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let sequence = name
                    .strip_prefix(prefix)?
                    .strip_suffix(".ckpt")?
                    .parse()
                    .ok()?;
                Some((sequence, e.path()))
            })
            .collect();
        found.sort();
        Ok(found)
    }

    /// Writes `payload` as snapshot `sequence` and drops the oldest beyond
    /// the number kept. Returns its file.
    pub fn write(&self, sequence: u64, payload: &[u8]) -> Result<PathBuf, String> {
        self.write_parts(sequence, &[payload])
    }

    /// [`Self::write`] of a payload given as consecutive parts (a large
    /// part is written where it is, not copied into one buffer first).
    pub fn write_parts<P: AsRef<[u8]>>(
        &self,
        sequence: u64,
        parts: &[P],
    ) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("checkpoint-{sequence:020}.ckpt"));
        let temporary = self.dir.join(format!(".checkpoint-{sequence:020}.tmp"));
        let fail = |what: &str, e: std::io::Error| {
            format!("checkpoint {sequence}: {what} {}: {e}", temporary.display())
        };
        let file = File::create(&temporary).map_err(|e| fail("cannot create", e))?;
        let (mut digest, mut length) = (Sha256::new(), 0u64);
        for part in parts {
            digest.update(part.as_ref());
            length += part.as_ref().len() as u64;
        }
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&sequence.to_le_bytes());
        header.extend_from_slice(&length.to_le_bytes());
        header.extend_from_slice(&digest.finalize());
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header)
            .and_then(|()| parts.iter().try_for_each(|p| out.write_all(p.as_ref())))
            .and_then(|()| out.flush())
            .map_err(|e| fail("cannot write", e))?;
        let file = out
            .into_inner()
            .map_err(|e| fail("cannot write", e.into_error()))?;
        file.sync_all().map_err(|e| fail("cannot sync", e))?;
        drop(file);
        fs::rename(&temporary, &path).map_err(|e| fail("cannot rename", e))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        let all = self.list()?;
        for (_, old) in all.iter().take(all.len().saturating_sub(self.keep)) {
            let _ = fs::remove_file(old);
        }
        Ok(path)
    }

    /// Removes every snapshot (a run that finished its input: the next
    /// one starts over).
    pub fn clear(&self) -> Result<(), String> {
        let retained = self.retained()?.into_iter().map(|(_, p)| p);
        for path in self.list()?.into_iter().map(|(_, p)| p).chain(retained) {
            fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Keeps the newest snapshot beyond the number kept, as
    /// `retained-<sequence>.ckpt` (a member of a repartitioned group keeps
    /// the last snapshot of the partitions it gave away, for the member
    /// that takes them over). Returns its file, if there is a snapshot.
    pub fn retain_newest(&self) -> Result<Option<PathBuf>, String> {
        let Some((sequence, path)) = self.list()?.pop() else {
            return Ok(None);
        };
        let kept = self.dir.join(format!("retained-{sequence:020}.ckpt"));
        if !kept.exists() {
            fs::hard_link(&path, &kept)
                .or_else(|_| fs::copy(&path, &kept).map(|_| ()))
                .map_err(|e| format!("cannot keep {}: {e}", path.display()))?;
        }
        Ok(Some(kept))
    }

    /// The snapshots kept by [`Self::retain_newest`], oldest first.
    pub fn retained(&self) -> Result<Vec<(u64, PathBuf)>, String> {
        self.files("retained-")
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest snapshot that checks out; `None` when there is none.
    /// Snapshots refused on the way are listed in it; when every snapshot
    /// is refused, the error names each and why.
    pub fn latest(&self) -> Result<Option<Loaded>, String> {
        let mut refused = Vec::new();
        for (sequence, path) in self.list()?.into_iter().rev() {
            match read(&path) {
                Ok((s, payload)) if s == sequence => {
                    return Ok(Some(Loaded {
                        sequence,
                        path,
                        payload,
                        refused,
                    }))
                }
                Ok((s, _)) => refused.push((path, format!("holds sequence {s}, not {sequence}"))),
                Err(e) => refused.push((path, e)),
            }
        }
        if refused.is_empty() {
            return Ok(None);
        }
        let reasons: Vec<String> = refused
            .iter()
            .map(|(p, e)| format!("{}: {e}", p.display()))
            .collect();
        Err(format!(
            "no usable checkpoint in {}:\n  {}\nremove the directory to start from scratch",
            self.dir.display(),
            reasons.join("\n  ")
        ))
    }
}

/// Reads and checks one snapshot file: its sequence number and payload.
pub fn read(path: &Path) -> Result<(u64, Vec<u8>), String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not an edge checkpoint (bad header)".into());
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
    if version != VERSION {
        return Err(format!(
            "format version {version}; this edge reads version {VERSION}"
        ));
    }
    let (sequence, length) = (word(12), word(20));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != length {
        return Err(format!(
            "cut short: {} of {length} payload bytes",
            payload.len()
        ));
    }
    if Sha256::digest(payload).as_slice() != &bytes[28..60] {
        return Err("checksum does not match its contents".into());
    }
    Ok((sequence, payload.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_snapshots_are_kept_and_the_newest_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 2).unwrap();
        assert_eq!(store.latest().unwrap(), None);
        for sequence in 1..=3 {
            store
                .write(sequence, format!("state {sequence}").as_bytes())
                .unwrap();
        }
        let kept: Vec<u64> = store.list().unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(kept, [2, 3]);
        let loaded = store.latest().unwrap().unwrap();
        assert_eq!((loaded.sequence, loaded.payload), (3, b"state 3".to_vec()));
        assert!(loaded.refused.is_empty());
    }

    #[test]
    fn a_corrupt_snapshot_is_refused_with_its_reason_and_the_previous_used() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 3).unwrap();
        store.write(1, b"good").unwrap();
        let newest = store.write(2, b"newer").unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&newest, &bytes).unwrap();
        let loaded = store.latest().unwrap().unwrap();
        assert_eq!((loaded.sequence, loaded.payload), (1, b"good".to_vec()));
        assert_eq!(loaded.refused.len(), 1);
        assert!(
            loaded.refused[0].1.contains("checksum"),
            "{:?}",
            loaded.refused
        );

        // Cut short, then every snapshot unusable: an error naming each.
        fs::write(&newest, &bytes[..bytes.len() - 2]).unwrap();
        let oldest = store.list().unwrap()[0].1.clone();
        fs::write(&oldest, b"garbage").unwrap();
        let error = store.latest().unwrap_err();
        assert!(
            error.contains("cut short") && error.contains("bad header"),
            "{error}"
        );
    }

    #[test]
    fn a_snapshot_of_another_format_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1).unwrap();
        let path = store.write(7, b"x").unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&99u32.to_le_bytes());
        fs::write(&path, &bytes).unwrap();
        let error = read(&path).unwrap_err();
        assert!(error.contains("version 99"), "{error}");
    }
}
