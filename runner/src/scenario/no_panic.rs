//! Property tests: no scenario text, however hostile, makes parsing or `validate` panic. Two
//! generators: arbitrary text over YAML's punctuation, and a valid scenario mutated where it
//! hurts (numbers at the edges of their types, unbalanced brackets, aliases, `$names`, huge
//! strings). Bounded (256 cases each) so CI stays quick.

use std::path::Path;

use proptest::prelude::*;

use super::load::parse_str;
use super::validate::validate;
use crate::matrix::Matrix;

const MATRIX: &str = r#"
rows: [{id: S1, title: Raft Recovery}, {id: S3, title: Partition}]
cells:
  - {cell: S1/chainfire, status: TEST}
  - {cell: S1/flaredb, status: TEST}
  - {cell: S3/chainfire, status: TEST}
"#;

const VALID: &str = r#"id: s1-fuzz
title: Fuzz
covers:
  - {cell: S1/chainfire, status: TEST}
timeout_ms: 600000
clusters:
  chainfire:
    nodes: 3
    config: {election_timeout_ms: 1000, heartbeat_interval_ms: 100, flags: {"--snapshot-logs": "32"}}
    overrides: {2: {retry: {max_retries: 5, multiplier: 2.0}}}
steps:
  - wait_for_leader: {within_ms: 20000, as: first}
  - load_start: {name: bg, rate_per_sec: 10, key_prefix: load}
  - put: {key: k, value: v, name: first-write, expect: {within_ms: 5000, retries: {max: 3}}}
  - partition: {node: $first, name: cut}
  - restart: {node: 2, down_ms: 100}
  - sleep: {ms: 10}
  - heal: {}
  - load_stop: {name: bg}
  - check_reconnect: {from: cut, until: first_ok, max_ms: 30000}
  - check_no_lost_writes: {within_ms: 60000}
  - check_linearizable: {}
"#;

/// Parses and validates; a panic anywhere fails the property.
fn survives(text: &str) {
    let matrix = Matrix::parse(Path::new("matrix.yaml"), MATRIX).unwrap();
    if let Ok(file) = parse_str(Path::new("fuzz.yaml"), text) {
        let problems = validate(&file, &matrix);
        // Rendering the problems must not panic either.
        let _ = problems.to_string();
    }
}

/// Replacements that stress the parser and the checks.
fn hurtful() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("18446744073709551615".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-1".to_owned()),
        Just("0".to_owned()),
        Just("1e309".to_owned()),
        Just("NaN".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("\n  - ".to_owned()),
        Just("&a x".to_owned()),
        Just("*a".to_owned()),
        Just("$".to_owned()),
        Just("\"\"".to_owned()),
        Just("~".to_owned()),
        Just("\t".to_owned()),
        Just("---\n".to_owned()),
        "[a-z_$]{0,12}".prop_map(|s| s),
        "[0-9]{1,25}".prop_map(|s| s),
        Just("x".repeat(5000)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_yaml_like_text_never_panics(text in "[a-z0-9:{}\\[\\],\\-\\n #&*!|>'\"$._~]{0,300}") {
        survives(&text);
    }

    #[test]
    fn a_valid_scenario_mutated_never_panics(
        edits in proptest::collection::vec((0usize..VALID.len(), 0usize..8, hurtful()), 1..4)
    ) {
        let mut text = VALID.to_owned();
        for (at, cut, with) in edits {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(at..end, &with);
        }
        survives(&text);
    }

    #[test]
    fn any_number_anywhere_never_panics(n in any::<u64>(), which in 0usize..12) {
        let numbers: Vec<(usize, usize)> = regex_lite_numbers(VALID);
        let (start, end) = numbers[which % numbers.len()];
        let text = format!("{}{n}{}", &VALID[..start], &VALID[end..]);
        survives(&text);
    }
}

/// Byte ranges of the decimal numbers in `text`.
fn regex_lite_numbers(text: &str) -> Vec<(usize, usize)> {
    let re = regex::Regex::new(r"\b[0-9]+(\.[0-9]+)?\b").unwrap();
    re.find_iter(text).map(|m| (m.start(), m.end())).collect()
}

#[test]
fn the_unmutated_scenario_is_valid() {
    let matrix = Matrix::parse(Path::new("matrix.yaml"), MATRIX).unwrap();
    let file = parse_str(Path::new("fuzz.yaml"), VALID).unwrap();
    let problems = validate(&file, &matrix);
    assert!(problems.is_empty(), "{problems}");
}
