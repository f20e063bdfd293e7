use super::*;

fn errors_of(file: &str) -> String {
    let path = format!("tests/topologies/{file}");
    TopologySpec::load(std::path::Path::new(&path))
        .unwrap_err()
        .to_string()
}

#[test]
fn shipped_topologies_are_valid() {
    for f in ["topologies/ohlc_vwap.yaml", "topologies/venue_vwap.yaml"] {
        let spec =
            TopologySpec::load(std::path::Path::new(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!spec.operators.is_empty());
    }
    let flagship = TopologySpec::load(std::path::Path::new("topologies/ohlc_vwap.yaml")).unwrap();
    let OperatorSpec::Window(w) = &flagship.operators[0].0 else {
        panic!("window expected")
    };
    let sizes: Vec<&str> = w.tumbling.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(sizes, ["1s", "1m", "5m", "1h"]);
    assert_eq!(w.grace.value, Duration::from_secs(5));
    assert_eq!(w.emit, Emit::Final);
}

#[test]
fn every_problem_is_reported_at_once_with_its_location() {
    let msg = errors_of("bad_everything.yaml");
    let f = "tests/topologies/bad_everything.yaml";
    let expected = [
        format!(
            "{f}:1:1: application: must be non-empty and use only letters, digits, `.`, `_` and `-`"
        ),
        format!(
            "{f}:5:5: sources.ticks.key: unknown tick field `ticker`, expected one of symbol, venue, price, size, event_time, trade_id, side, conditions, currency"
        ),
        format!(
            "{f}:25:7: operators[3].group_by.id: stream `bars` is already defined at operators[0].window.id"
        ),
        format!(
            "{f}:9:7: operators[0].window.input: stream `tiks` is not defined; defined streams: a, b, bars, ticks"
        ),
        format!("{f}:7:5: operators[0].window: give exactly one of tumbling, hopping or session"),
        format!("{f}:12:11: operators[0].window.hopping[0]: need 0 < advance <= size"),
        format!("{f}:10:22: operators[0].window.tumbling[1]: window size 1m is listed twice"),
        format!("{f}:13:26: operators[0].window.aggregates[1]: field `venue` is not numeric"),
        format!(
            "{f}:18:35: operators[1].filter.where[0].value: must be a number for field `price`"
        ),
        format!(
            "{f}:27:7: operators[3].group_by.field: unknown tick field `sector`, expected one of symbol, venue, price, size, event_time, trade_id, side, conditions, currency"
        ),
        format!(
            "{f}:29:5: sinks[0].input: stream `nowhere` is not defined; defined streams: a, b, bars, ticks"
        ),
    ];
    for e in &expected {
        assert!(msg.lines().any(|l| l == e), "missing:\n{e}\nin:\n{msg}");
    }
    assert!(
        msg.lines()
            .any(|l| l.ends_with("operators[2].filter.input: operators form a cycle: b -> a -> b")),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), expected.len() + 1, "{msg}");
}

#[test]
fn unknown_operator_is_located() {
    let msg = errors_of("unknown_operator.yaml");
    assert!(msg.starts_with("tests/topologies/unknown_operator.yaml:5:5: operators[0].windoww: unknown variant `windoww`, expected one of `filter`, `group_by`, `window`"), "{msg}");
}

#[test]
fn unknown_field_is_located() {
    let msg = errors_of("unknown_field.yaml");
    assert!(msg.starts_with("tests/topologies/unknown_field.yaml:10:7: operators[0].window.grace_period: unknown field `grace_period`"), "{msg}");
}

#[test]
fn bad_duration_is_located() {
    let msg = errors_of("bad_duration.yaml");
    assert!(msg.starts_with("tests/topologies/bad_duration.yaml:8:22: operators[0].window.tumbling[1]: `5 minutes please` is not a duration"), "{msg}");
}

#[test]
fn processing_guarantee_defaults_to_at_least_once_and_is_located_when_unknown() {
    let flagship = TopologySpec::load(std::path::Path::new("topologies/ohlc_vwap.yaml")).unwrap();
    assert_eq!(
        flagship.processing_guarantee,
        ProcessingGuarantee::AtLeastOnce
    );
    let text = "application: a\nprocessing_guarantee: exactly_once_v2\nsources:\n  t: { topic: in }\noperators:\n  - window: { id: w, input: t, tumbling: [1m], aggregates: [open] }\nsinks:\n  - { input: w, topic: out }\n";
    let spec = TopologySpec::parse("eos.yaml", text).unwrap();
    assert_eq!(
        spec.processing_guarantee,
        ProcessingGuarantee::ExactlyOnceV2
    );
    let text = "application: a\nprocessing_guarantee: exactly_once\nsources:\n  t: { topic: in }\n";
    let msg = TopologySpec::parse("eos.yaml", text)
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("eos.yaml:2:23: processing_guarantee: unknown variant `exactly_once`"),
        "{msg}"
    );
}

/// Every shape `tickflow run` refuses is refused by validation too, at its line, so that
/// `tickflow validate` never says "ok" to a topology `run` cannot run.
#[test]
fn shapes_run_refuses_are_refused_with_their_location() {
    let head = "application: app\nsources:\n  ticks: { topic: t }\n";
    let window = |id: &str, input: &str| {
        format!("  - window: {{ id: {id}, input: {input}, tumbling: [1m], aggregates: [open] }}\n")
    };
    let cases = [
        (
            format!(
                "{head}  more: {{ topic: u }}\noperators:\n{}sinks:\n  - {{ input: w, topic: b }}\n",
                window("w", "ticks")
            ),
            "t.yaml:2:1: sources: exactly one source",
        ),
        (
            format!(
                "{head}operators:\n  - filter: {{ id: f, input: ticks, where: [{{ field: size, op: gt, value: 1 }}] }}\nsinks:\n  - {{ input: f, topic: b }}\n"
            ),
            "t.yaml:5:15: operators[0].filter.id: no window operator follows `f`",
        ),
        (
            format!(
                "{head}operators:\n{}{}sinks:\n  - {{ input: w, topic: b }}\n  - {{ input: v, topic: c }}\n",
                window("w", "ticks"),
                window("v", "ticks")
            ),
            "t.yaml:6:22: operators[1].window.input: stream `ticks` is already read by operator `w`",
        ),
        (
            format!(
                "{head}operators:\n  - group_by: {{ id: g, input: ticks, field: venue }}\n  - group_by: {{ id: h, input: g, field: side }}\n{}sinks:\n  - {{ input: w, topic: b }}\n",
                window("w", "h")
            ),
            "t.yaml:6:5: operators[1].group_by: only one group_by per topology is supported",
        ),
        (
            format!(
                "{head}operators:\n{}sinks:\n  - {{ input: ticks, topic: b }}\n",
                window("w", "ticks")
            ),
            "t.yaml:5:15: operators[0].window.id: no sink writes the bars of window `w`",
        ),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(text, want)| {
            let err = TopologySpec::parse("t.yaml", text).unwrap_err().to_string();
            (!err.starts_with(want)).then(|| format!("{text}\n  want {want}\n  got  {err}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}
