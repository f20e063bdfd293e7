use super::*;

const S: i64 = 1_000_000;

fn spec(yaml: &str) -> WindowSpec {
    serde_yaml::from_str(&format!("id: w\ninput: t\naggregates: [open]\n{yaml}")).unwrap()
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
fn session_windows_are_refused_clearly() {
    let err = WindowOperator::new(&spec("session: {gap: 30s}"))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "operator w: session windows is not supported by `tickflow run` yet"
    );
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
    out.clear();
    op.advance_to(60 * S, &mut out);
    assert_eq!(bars(&out).len(), 1, "and the final bar at close");
}

#[test]
fn changes_restore_the_same_state() {
    let mut op = WindowOperator::new(&spec("tumbling: [1s, 1m]")).unwrap();
    let mut out = Vec::new();
    for i in 0..50 {
        let key = if i % 2 == 0 { "A" } else { "B" };
        op.process(key, &tick(key, i * 100_000, i as f64), i, &mut out);
    }
    let mut store: HashMap<(u16, String, i64), Accumulator> = HashMap::new();
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
    let spec: WindowSpec = serde_yaml::from_str(
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
