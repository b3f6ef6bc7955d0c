//! Handing keyed work over between the members of a repartitioned group.
//!
//! Every member checkpoints into a directory of its own,
//! `member-<started>-<pid>`, under the `checkpoint.dir` they share. A
//! checkpoint holds the member's position in each partition of the
//! repartition topic it read, and the keyed state, open windows, held
//! events and dedup ids of their keys. When a rebalance gives a member a
//! partition it did not hold (another member stopped, was killed or
//! joined), the member rolls every partition it is given back to the
//! newest checkpoint that holds it, whichever member wrote it: the state of
//! their keys is restored from there and their records replay from its
//! offsets, so that all of them go on from one consistent point. Results
//! produced again carry the same `_id`s.

use crate::checkpoint::{self, Store};
use crate::engine::snapshot::Snapshot;
use crate::source::{Checkpointed, Handover, Position};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The prefix of a member's directory.
const MEMBER: &str = "member-";

/// This process's own directory under `root` (the same at every call).
pub fn member_dir(root: &Path) -> PathBuf {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let name = NAME.get_or_init(|| {
        let started = chrono::Utc::now().timestamp_millis();
        format!("{MEMBER}{started}-{}", std::process::id())
    });
    root.join(name)
}

/// Finds the newest checkpoint of each partition of `topic` assigned,
/// among every member's checkpoints under `root`; `own` is this member's
/// directory, whose retained checkpoints are removed once newer ones hold
/// all their partitions.
pub fn finder(root: PathBuf, own: PathBuf, topic: String) -> Handover {
    Box::new(move |assigned| newest(&root, &own, &topic, assigned))
}

/// A checkpoint file read: where, when taken, its positions in the
/// topic, and its payload.
struct Found {
    path: PathBuf,
    taken_at: i64,
    parts: Vec<(i32, i64)>,
    payload: Arc<Vec<u8>>,
}

/// For each partition of `assigned`, the checkpoint under `root` whose
/// position in it is furthest (the newest taken, of equals); none for a
/// partition no checkpoint holds.
fn newest(
    root: &Path,
    own: &Path,
    topic: &str,
    assigned: &[i32],
) -> Result<Vec<Checkpointed>, String> {
    let found = read_all(root, topic)?;
    // Per partition: the checkpoint furthest in it.
    let mut best: Vec<(i32, i64, i64, usize)> = Vec::new();
    for (i, f) in found.iter().enumerate() {
        for &(partition, next) in &f.parts {
            match best.iter_mut().find(|b| b.0 == partition) {
                Some(b) if (next, f.taken_at) > (b.1, b.2) => *b = (partition, next, f.taken_at, i),
                Some(_) => {}
                None => best.push((partition, next, f.taken_at, i)),
            }
        }
    }
    // This member's retained checkpoints no partition needs any more.
    for (i, f) in found.iter().enumerate() {
        let retained =
            (f.path.file_name()).is_some_and(|n| n.to_string_lossy().starts_with("retained-"));
        let needed = best.iter().any(|b| b.3 == i);
        if retained && !needed && f.path.parent() == Some(own) {
            let _ = std::fs::remove_file(&f.path);
        }
    }
    best.retain(|b| assigned.contains(&b.0));
    best.sort_by_key(|b| b.0);
    Ok(best
        .into_iter()
        .map(|(partition, next, _, i)| Checkpointed {
            partition,
            next,
            payload: found[i].payload.clone(),
        })
        .collect())
}

/// Every checkpoint of every member under `root`, with its positions in
/// `topic` (those it holds). Every one kept counts: a member's newest may
/// no longer hold a partition it gave away, and an older or retained one
/// be the newest of it.
fn read_all(root: &Path, topic: &str) -> Result<Vec<Found>, String> {
    let members = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", root.display())),
    };
    let mut found = Vec::new();
    for member in members.filter_map(Result::ok) {
        let name = member.file_name().to_string_lossy().into_owned();
        if !name.starts_with(MEMBER) || !member.path().is_dir() {
            continue;
        }
        let store = Store::open(&member.path(), 1)?;
        for (_, path) in store.list()?.into_iter().chain(store.retained()?) {
            let payload = match checkpoint::read(&path) {
                Ok((_, payload)) => Arc::new(payload),
                Err(e) => {
                    tracing::warn!("checkpoint {} skipped: {e}", path.display());
                    continue;
                }
            };
            let (taken_at, parts) = match Snapshot::read(&payload) {
                Ok(Snapshot {
                    taken_at,
                    position: Some(Position::Kafka(parts)),
                    ..
                }) => (taken_at, parts),
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!("checkpoint {} skipped: {e}", path.display());
                    continue;
                }
            };
            let parts = (parts.into_iter())
                .filter(|(t, _, next)| t == topic && *next >= 0)
                .map(|(_, p, next)| (p, next))
                .collect();
            found.push(Found {
                path,
                taken_at,
                parts,
                payload,
            });
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::snapshot::Writer;

    /// A checkpoint of `parts` (partition, next offset) of topic `t`.
    fn checkpoint(parts: &[(i32, i64)]) -> Vec<u8> {
        let position = Position::Kafka(parts.iter().map(|&(p, n)| ("t".into(), p, n)).collect());
        let mut w = Writer::new("kafka:src", 0, Some(&position), &[]);
        w.section(|o| {
            use crate::codec::Put;
            o.put_i64(i64::MIN);
            o.put_len(0);
        });
        w.section(|o| crate::codec::Put::put_len(o, 0));
        w.parts(Vec::new());
        w.finish().concat()
    }

    #[test]
    fn each_partition_comes_from_the_checkpoint_furthest_in_it() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (
            root.path().join("member-1-1"),
            root.path().join("member-2-2"),
        );
        let (sa, sb) = (Store::open(&a, 3).unwrap(), Store::open(&b, 3).unwrap());
        sa.write(1, &checkpoint(&[(0, 10), (1, 20)])).unwrap();
        // A's newest no longer holds partition 1: it gave it away.
        sa.write(2, &checkpoint(&[(0, 15), (1, -1)])).unwrap();
        sb.write(1, &checkpoint(&[(1, 18), (2, 5)])).unwrap();
        let got: Vec<(i32, i64)> = newest(root.path(), &a, "t", &[0, 1, 2, 3])
            .unwrap()
            .iter()
            .map(|c| (c.partition, c.next))
            .collect();
        assert_eq!(got, [(0, 15), (1, 20), (2, 5)], "3 is in none");

        // A retained checkpoint stays while it is the newest of a
        // partition, and goes once a newer one holds all of them.
        let kept = sa.retain_newest().unwrap().unwrap();
        for sequence in 3..=5 {
            sa.write(sequence, &checkpoint(&[(0, -1)])).unwrap();
        }
        let of_0 = newest(root.path(), &a, "t", &[0]).unwrap();
        assert_eq!((of_0[0].partition, of_0[0].next), (0, 15));
        assert!(kept.exists(), "the only checkpoint of partition 0");
        sb.write(2, &checkpoint(&[(0, 16), (1, 21)])).unwrap();
        let of_0 = newest(root.path(), &a, "t", &[0]).unwrap();
        assert_eq!((of_0[0].partition, of_0[0].next), (0, 16));
        assert!(!kept.exists(), "a newer checkpoint holds partition 0");
    }
}
