//! Restoring a store from its changelog partition: sealed commits are applied, an interrupted
//! commit (entries after the last seal) is not, and its keys are reported for repair; a store
//! that is current reads nothing.

use crate::common;

use std::time::Duration;

use tickflow::kafka::KafkaSink;
use tickflow::kafka::ensure_topic;
use tickflow::metrics::Metrics;
use tickflow::state::WindowStore;
use tickflow::state::changelog::{ChangelogPartition, SEALED_KEY, Seal};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_commits_restore_and_interrupted_ones_are_repaired() {
    let kafka = common::kafka();
    let topic = common::unique("changelog");
    ensure_topic(&kafka, &topic, 2, &[("cleanup.policy", "compact")])
        .await
        .unwrap();
    let sink = KafkaSink::tracking_offsets(&kafka, &topic).unwrap();
    let send = |k: &[u8], v: Option<&[u8]>| sink.send_entry(&topic, 1, k, v).unwrap();
    // Commit 1: a=1, b=1. Commit 2: a=2, b deleted. Interrupted: a=9, c=9, no seal.
    send(b"w/a", Some(b"1"));
    send(b"w/b", Some(b"1"));
    send(SEALED_KEY, Some(b"s1"));
    send(b"w/a", Some(b"2"));
    send(b"w/b", None);
    send(SEALED_KEY, Some(b"s2"));
    send(b"w/a", Some(b"9"));
    send(b"w/c", Some(b"9"));
    sink.flush(Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let part = ChangelogPartition::new(&kafka, &topic, 1, false);
    let metrics = Metrics::new();
    let (p, store) = (part.clone(), WindowStore::open(dir.path()).unwrap());
    let (restored, store) = tokio::task::spawn_blocking(move || {
        let r = p
            .restore(&store, "host-a", |read, _| {
                metrics.restore_records.inc_by(read)
            })
            .unwrap();
        (r, store)
    })
    .await
    .unwrap();
    assert_eq!(restored.records, 8);
    assert_eq!(restored.repair, vec![b"w/a".to_vec(), b"w/c".to_vec()]);
    assert_eq!(store.get(b"w/a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(store.get(b"w/b").unwrap(), None);
    assert_eq!(store.get(b"w/c").unwrap(), None);
    assert_eq!(
        store.changelog_next().unwrap(),
        Some(6),
        "current to after the second seal"
    );

    // Once the repair is sealed, a restore from the local position reads only that.
    send(b"w/a", Some(b"2"));
    send(b"w/c", None);
    send(SEALED_KEY, Some(b"s3"));
    sink.flush(Duration::from_secs(30)).unwrap();
    let p = part.clone();
    let again = tokio::task::spawn_blocking(move || {
        let r = p.restore(&store, "host-a", |_, _| {}).unwrap();
        (
            r,
            store.changelog_next().unwrap(),
            store.get(b"w/a").unwrap(),
            store,
        )
    })
    .await
    .unwrap();
    assert_eq!(again.0.records, 5, "from offset 6 to the end");
    assert!(again.0.repair.is_empty());
    assert_eq!((again.1, again.2.as_deref()), (Some(11), Some(&b"2"[..])));

    // The task lives on another host for a while (writer host-b) and comes back: the local
    // store is behind another writer's commits, whose tombstones compaction may have
    // dropped, so it is rebuilt from the start instead of caught up.
    let foreign = Seal {
        next_offset: 40,
        release: true,
        writer: "host-b".into(),
        at: None,
    };
    send(b"w/a", Some(b"3"));
    send(b"w/d", Some(b"3"));
    send(SEALED_KEY, Some(&foreign.encode()));
    sink.flush(Duration::from_secs(30)).unwrap();
    let store = again.3;
    let back = tokio::task::spawn_blocking(move || {
        let r = part.restore(&store, "host-a", |_, _| {}).unwrap();
        (
            r,
            store.get(b"w/a").unwrap(),
            store.get(b"w/d").unwrap(),
            store.changelog_next().unwrap(),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        back.0.records, 14,
        "rebuilt from offset 0, not caught up from 11"
    );
    assert_eq!(
        (back.1.as_deref(), back.2.as_deref()),
        (Some(&b"3"[..]), Some(&b"3"[..]))
    );
    assert_eq!(back.3, Some(14));
}
