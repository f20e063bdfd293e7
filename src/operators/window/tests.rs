use super::*;

const S: i64 = 1_000_000;

fn spec(yaml: &str) -> WindowSpec {
    serde_saphyr::from_str(&format!("id: w\ninput: t\naggregates: [open]\n{yaml}")).unwrap()
}

fn tick(key: &str, t: i64, price: f64) -> Tick {
    Tick {
        symbol: key.into(),
        venue: "XNAS".into(),
        price,
        size: 100,
        event_time: t,
        trade_id: t,
        side: "B".into(),
        conditions: vec![],
        currency: "USD".into(),
    }
}

fn bars(out: &[Output]) -> Vec<(String, String, i64, i64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Bar(b) => Some((
                b.symbol.clone(),
                b.resolution.clone(),
                b.window_start,
                b.trade_count,
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn tumbling_edges_belong_to_the_window_they_start() {
    let d = &WindowDef::from_spec(&spec("tumbling: [1m]")).unwrap()[0];
    assert_eq!(d.starts(60 * S).collect::<Vec<_>>(), vec![60 * S]);
    assert_eq!(d.starts(60 * S - 1).collect::<Vec<_>>(), vec![0]);
    assert_eq!(d.starts(-1).collect::<Vec<_>>(), vec![-60 * S]);
}

#[test]
fn hopping_windows_overlap() {
    let d = &WindowDef::from_spec(&spec("hopping: [{size: 5m, advance: 1m}]")).unwrap()[0];
    assert_eq!(d.name, "5m-every-1m");
    let starts: Vec<i64> = d.starts(301 * S).collect();
    assert_eq!(starts, vec![300 * S, 240 * S, 180 * S, 120 * S, 60 * S]);
    // Exactly on a boundary: the window ending there no longer holds it.
    assert_eq!(d.starts(300 * S).count(), 5);
    assert!(!d.starts(300 * S).any(|s| s == 0));
}

#[test]
fn sessions_grow_merge_and_close_after_gap_plus_grace() {
    let mut op = WindowOperator::new(&spec("session: {gap: 10s}\ngrace: 20s")).unwrap();
    let mut out = Vec::new();
    for (i, t) in [0, 5, 30, 32, 22].into_iter().enumerate() {
        op.process("A", &tick("A", t * S, t as f64), i as i64, &mut out);
    }
    // 22 s is 17 s past 5 s and 8 s before 30 s: it joins 30..32 only.
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(op.open_windows(), 2);
    op.process("A", &tick("A", 14 * S, 14.0), 5, &mut out);
    assert_eq!(op.open_windows(), 1, "14 s bridges 5 s and 22 s");
    op.advance_to(61 * S, &mut out);
    assert!(out.is_empty(), "32 + 10 + 20 not reached");
    op.advance_to(62 * S, &mut out);
    let Output::Bar(bar) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (bar.resolution.as_str(), bar.window_start, bar.window_end),
        ("session", 0, 32 * S)
    );
    assert_eq!((bar.trade_count, bar.open, bar.close), (6, 0.0, 32.0));
    out.clear();
    // More than grace behind stream time: late, never merged into the closed session.
    op.process("A", &tick("A", 41 * S, 1.0), 6, &mut out);
    assert!(matches!(&out[..], [Output::Late { resolution, .. }] if resolution == "session"));
}

#[test]
fn sessions_equal_runs_of_on_time_ticks_split_at_the_gap() {
    use rand::{Rng, SeedableRng};
    let (gap, grace) = (10 * S, 3 * S);
    let mut op = WindowOperator::new(&spec("session: {gap: 10s}\ngrace: 3s")).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (mut out, mut now, mut clock) = (Vec::new(), i64::MIN, 0i64);
    let mut kept: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut late = 0;
    let mut store: BTreeMap<(u16, String, i64), StoredWindow> = BTreeMap::new();
    for offset in 0..20_000 {
        clock += rng.random_range(0..4 * S);
        let t = clock - rng.random_range(0..6 * S); // up to 6 s out of order
        let key = format!("K{}", rng.random_range(0..5));
        now = now.max(t);
        if t + grace < now {
            late += 1;
        } else {
            kept.entry(key.clone()).or_default().push(t);
        }
        op.process(&key, &tick(&key, t, 1.0), offset, &mut out);
        if offset % 1000 == 0 {
            // What a store would hold restores the same open sessions.
            for (k, v) in op.take_changes() {
                match v {
                    Some(a) => store.insert(k, a),
                    None => store.remove(&k),
                };
            }
            let mut restored =
                WindowOperator::new(&spec("session: {gap: 10s}\ngrace: 3s")).unwrap();
            restored.restore(op.stream_time(), store.clone());
            assert_eq!(restored.open_windows(), op.open_windows());
        }
    }
    op.advance_to(i64::MAX / 2, &mut out);
    let mut want = Vec::new();
    for (key, mut times) in kept {
        times.sort();
        let mut first = times[0];
        let mut n = 1;
        for w in times.windows(2) {
            if w[1] - w[0] >= gap {
                want.push((key.clone(), "session".to_string(), first, n));
                (first, n) = (w[1], 0);
            }
            n += 1;
        }
        want.push((key.clone(), "session".to_string(), first, n));
    }
    let mut got = bars(&out);
    got.sort();
    want.sort();
    assert!(late > 100, "the run has late ticks ({late})");
    let got_late = out
        .iter()
        .filter(|o| matches!(o, Output::Late { .. }))
        .count();
    assert_eq!(got_late, late);
    assert_eq!(got, want);
}

#[test]
fn windows_close_at_end_plus_grace_and_late_ticks_are_reported() {
    let mut op = WindowOperator::new(&spec("tumbling: [1s]\ngrace: 2s")).unwrap();
    let mut out = Vec::new();
    op.process("A", &tick("A", 100, 1.0), 0, &mut out);
    op.process("B", &tick("B", 500_000, 2.0), 1, &mut out);
    op.process("A", &tick("A", 2 * S + 999_999, 3.0), 2, &mut out);
    assert!(
        out.is_empty(),
        "window [0,1s) stays open until stream time 3s"
    );
    op.process("A", &tick("A", 3 * S, 4.0), 3, &mut out);
    assert_eq!(
        bars(&out),
        vec![
            ("A".into(), "1s".into(), 0, 1),
            ("B".into(), "1s".into(), 0, 1)
        ],
        "closed at stream time 3s, keys in order"
    );
    out.clear();
    // Out of order but within grace: [2s,3s) is still open at stream time 3s.
    op.process("A", &tick("A", 2 * S, 5.0), 4, &mut out);
    assert!(out.is_empty());
    // Late: [0,1s) closed.
    op.process("A", &tick("A", 10, 6.0), 5, &mut out);
    assert!(
        matches!(&out[..], [Output::Late { offset: 5, resolution, .. }] if resolution == "1s"),
        "{out:?}"
    );
    assert_eq!(op.open_windows(), 2);
    out.clear();
    op.advance_to(i64::MAX / 2, &mut out);
    assert_eq!(
        bars(&out),
        vec![
            ("A".into(), "1s".into(), 2 * S, 2),
            ("A".into(), "1s".into(), 3 * S, 1)
        ]
    );
    assert_eq!(op.open_windows(), 0);
}

#[test]
fn update_emits_are_throttled_in_event_time() {
    let mut op = WindowOperator::new(&spec("tumbling: [1m]\nemit: {update: 10s}")).unwrap();
    let mut out = Vec::new();
    for (i, t) in [0, 1, 5, 10, 11, 25].iter().enumerate() {
        op.process("A", &tick("A", t * S, 1.0), i as i64, &mut out);
    }
    let counts: Vec<i64> = bars(&out).iter().map(|b| b.3).collect();
    assert_eq!(
        counts,
        vec![1, 4, 6],
        "updates at stream times 0s, 10s, 25s"
    );
    assert!(finals(&out).iter().all(|f| !f), "updates say so");
    out.clear();
    op.advance_to(60 * S, &mut out);
    assert_eq!(bars(&out).len(), 1, "and the final bar at close");
    assert_eq!(finals(&out), [true]);
}

/// Whether each bar of `out` is final.
fn finals(out: &[Output]) -> Vec<bool> {
    out.iter()
        .filter_map(|o| match o {
            Output::Bar(b) => Some(b.is_final),
            _ => None,
        })
        .collect()
}

#[test]
fn update_throttling_survives_a_restore() {
    let yaml = "tumbling: [1m]\nemit: {update: 10s}";
    let mut op = WindowOperator::new(&spec(yaml)).unwrap();
    let mut out = Vec::new();
    op.process("A", &tick("A", 0, 1.0), 0, &mut out);
    op.process("A", &tick("A", 3 * S, 1.0), 1, &mut out);
    assert_eq!(bars(&out).len(), 1, "the update at 0 s");
    let changes = op.take_changes();
    let mut restored = WindowOperator::new(&spec(yaml)).unwrap();
    restored.restore(
        op.stream_time(),
        changes.into_iter().filter_map(|(k, v)| Some((k, v?))),
    );
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (i, t) in [5, 9, 10].into_iter().enumerate() {
        op.process("A", &tick("A", t * S, 1.0), 2 + i as i64, &mut a);
        restored.process("A", &tick("A", t * S, 1.0), 2 + i as i64, &mut b);
    }
    assert_eq!(
        bars(&a),
        vec![("A".into(), "1m".into(), 0, 5)],
        "next update at 10 s"
    );
    assert_eq!(a, b);
}

#[test]
fn changes_restore_the_same_state() {
    let mut op = WindowOperator::new(&spec("tumbling: [1s, 1m]")).unwrap();
    let mut out = Vec::new();
    for i in 0..50 {
        let key = if i % 2 == 0 { "A" } else { "B" };
        op.process(key, &tick(key, i * 100_000, i as f64), i, &mut out);
    }
    let mut store: HashMap<(u16, String, i64), StoredWindow> = HashMap::new();
    for (k, v) in op.take_changes() {
        match v {
            Some(a) => store.insert(k, a),
            None => store.remove(&k),
        };
    }
    let mut restored = WindowOperator::new(&spec("tumbling: [1s, 1m]")).unwrap();
    restored.restore(op.stream_time(), store);
    assert_eq!(restored.open_windows(), op.open_windows());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    op.advance_to(i64::MAX / 2, &mut a);
    restored.advance_to(i64::MAX / 2, &mut b);
    assert_eq!(a, b);
}

#[test]
fn field_aggregates_land_in_extras() {
    let spec: WindowSpec = serde_saphyr::from_str(
        "id: w\ninput: t\ntumbling: [1m]\naggregates: [open, {max: price}, {mean: size}]\n",
    )
    .unwrap();
    let mut op = WindowOperator::new(&spec).unwrap();
    let mut out = Vec::new();
    let mut t = tick("A", S, 5.0);
    op.process("A", &t, 0, &mut out);
    t.price = 7.0;
    t.size = 300;
    op.process("A", &t, 1, &mut out);
    op.advance_to(120 * S, &mut out);
    let Some(Output::Bar(bar)) = out.first() else {
        panic!("{out:?}")
    };
    let extras: Vec<(&str, f64)> = bar.extras.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(extras, vec![("max_price", 7.0), ("mean_size", 200.0)]);
}

#[test]
fn repartitioned_ticks_are_judged_by_their_source_and_closed_by_the_watermark() {
    let mut op = WindowOperator::new(&spec("tumbling: [1m]\ngrace: 5s")).unwrap();
    let mut out = Vec::new();
    // Source 0 is at 2m: its tick for [0, 1m) is late whatever this operator has seen.
    op.process_from("X", &tick("A", 30 * S, 1.0), 10, 120 * S, &mut out);
    assert!(matches!(&out[..], [Output::Late { resolution, .. }] if resolution == "1m"));
    out.clear();
    // Source 1 is only at 10s: its tick counts, and nothing closes until the watermark moves.
    op.process_from("X", &tick("B", 5 * S, 2.0), 1 << 40, 10 * S, &mut out);
    assert!(out.is_empty());
    assert_eq!(op.stream_time(), i64::MIN);
    op.advance_to(64 * S, &mut out);
    assert!(out.is_empty(), "end + grace not reached");
    op.advance_to(65 * S, &mut out);
    assert_eq!(bars(&out), vec![("X".into(), "1m".into(), 0, 1)]);
}

/// A seeded shuffle (xorshift), so that a failing case replays from its inputs.
fn shuffled<T>(mut items: Vec<T>, mut seed: u64) -> Vec<T> {
    seed |= 1;
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
    items
}

proptest::proptest! {
    /// Bars and late ticks equal a brute-force recomputation for any arrival order: ties in
    /// event time go to the lower offset, and a tick is late for a window whose end plus
    /// grace is at or before the stream time including itself.
    #[test]
    fn bars_equal_a_brute_force_under_any_arrival_order(
        ticks in proptest::collection::vec((0usize..3, 0i64..8 * S, 1i64..10_000, 1i64..500), 1..150),
        seed: u64,
    ) {
        let keys = ["A", "B", "C"];
        let (grace, defs) = (2 * S, [("1s", S), ("2s", 2 * S)]);
        let mut op = WindowOperator::new(&spec("tumbling: [1s, 2s]\ngrace: 2s")).unwrap();
        let arrival = shuffled(ticks, seed);
        let mut out = Vec::new();
        let mut stream_time = i64::MIN;
        let mut late = 0;
        type Fold = Vec<((i64, i64), f64, i64)>;
        let mut folds: BTreeMap<(String, String, i64), Fold> = BTreeMap::new();
        for (offset, (k, t, cents, size)) in arrival.iter().enumerate() {
            let mut tk = tick(keys[*k], *t, *cents as f64 / 100.0);
            tk.size = *size;
            op.process(keys[*k], &tk, offset as i64, &mut out);
            stream_time = stream_time.max(*t);
            for (name, width) in defs {
                let start = t.div_euclid(width) * width;
                if start + width + grace <= stream_time {
                    late += 1;
                } else {
                    let id = (keys[*k].to_string(), name.to_string(), start);
                    folds.entry(id).or_default().push(((*t, offset as i64), tk.price, *size));
                }
            }
        }
        op.advance_to(i64::MAX / 2, &mut out);
        let got_late = out.iter().filter(|o| matches!(o, Output::Late { .. })).count();
        proptest::prop_assert_eq!(got_late, late);
        let got: BTreeMap<(String, String, i64), Bar> = out
            .into_iter()
            .filter_map(|o| match o {
                Output::Bar(b) => Some(((b.symbol.clone(), b.resolution.clone(), b.window_start), b)),
                _ => None,
            })
            .collect();
        proptest::prop_assert_eq!(got.len(), folds.len());
        for (id, fold) in &folds {
            let bar = &got[id];
            let first = fold.iter().min_by_key(|f| f.0).unwrap();
            let last = fold.iter().max_by_key(|f| f.0).unwrap();
            let volume: i64 = fold.iter().map(|f| f.2).sum();
            let turnover: f64 = fold.iter().map(|f| f.1 * f.2 as f64).sum();
            let high = fold.iter().map(|f| f.1).fold(f64::MIN, f64::max);
            let low = fold.iter().map(|f| f.1).fold(f64::MAX, f64::min);
            proptest::prop_assert_eq!((bar.open, bar.close), (first.1, last.1), "{:?}", id);
            proptest::prop_assert_eq!((bar.high, bar.low), (high, low));
            proptest::prop_assert_eq!((bar.volume, bar.trade_count), (volume, fold.len() as i64));
            proptest::prop_assert!((bar.vwap - turnover / volume as f64).abs() <= 1e-9 * bar.vwap.abs().max(1.0));
        }
    }
}

proptest::proptest! {
    /// A stored window's bytes from disk read back to the same bytes, and any other length
    /// is refused without panic.
    #[test]
    fn stored_windows_round_trip(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), STORED_WINDOW_BYTES), other: Vec<u8>) {
        let stored = StoredWindow::from_bytes(&bytes).unwrap();
        proptest::prop_assert_eq!(&stored.to_bytes()[..], &bytes[..]);
        if other.len() != STORED_WINDOW_BYTES {
            proptest::prop_assert!(StoredWindow::from_bytes(&other).is_none());
        }
    }
}

/// A tick that would overflow a window's volume is rejected from every window, with a
/// reason, and the windows keep their sums.
#[test]
fn a_tick_that_would_overflow_a_sum_is_rejected_whole() {
    let mut op = WindowOperator::new(&spec("tumbling: [1s, 1m]")).unwrap();
    let mut out = Vec::new();
    let mut t = tick("A", S, 5.0);
    t.size = i64::MAX - 10;
    op.process("A", &t, 0, &mut out);
    assert!(out.is_empty(), "{out:?}");
    t.size = 11;
    op.process("A", &t, 1, &mut out);
    assert!(
        matches!(
            &out[..],
            [Output::Rejected {
                offset: 1,
                reason: crate::codec::Reason::Overflow,
                ..
            }]
        ),
        "{out:?}"
    );
    out.clear();
    op.advance_to(i64::MAX / 2, &mut out);
    let volumes: Vec<i64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Bar(b) => Some(b.volume),
            _ => None,
        })
        .collect();
    assert_eq!(
        volumes,
        vec![i64::MAX - 10, i64::MAX - 10],
        "both windows without the rejected tick"
    );
}
