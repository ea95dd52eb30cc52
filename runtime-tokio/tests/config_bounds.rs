//! Every duration setting has documented bounds, enforced at load with a message that names
//! the field and the bound.
#![allow(clippy::unwrap_used)]

mod config_support;

use std::time::Duration;

use bao_kms_runtime_tokio::config::{
    DURATION_BOUNDS, DurationBounds, Overrides, format_duration, parse_str,
};
use config_support::{MINIMAL, no_env};

/// The minimal configuration with `field` (a dotted key) set to `value`.
fn with(field: &str, value: &str) -> String {
    let parts: Vec<&str> = field.split('.').collect();
    match parts.as_slice() {
        ["openbao", key] => MINIMAL.replacen(
            "  instanceId: bao-prod-a\n",
            &format!("  instanceId: bao-prod-a\n  {key}: \"{value}\"\n"),
            1,
        ),
        ["auth", "jwt", key] => MINIMAL.replacen(
            "    role: kms-provider\n",
            &format!("    role: kms-provider\n    {key}: \"{value}\"\n"),
            1,
        ),
        ["auth", key] => MINIMAL.replacen("auth:\n", &format!("auth:\n  {key}: \"{value}\"\n"), 1),
        [section, key] => format!("{MINIMAL}{section}:\n  {key}: \"{value}\"\n"),
        _ => panic!("unexpected field {field}"),
    }
}

fn go(duration: Duration) -> String {
    format_duration(duration)
}

/// The load errors (empty when it loads).
fn errors(yaml: &str) -> String {
    parse_str(yaml, &Overrides::default(), &no_env)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default()
}

fn bound_problems(field: &str, text: &str) -> bool {
    text.contains(&format!("{field}: must be at least"))
        || text.contains(&format!("{field}: must be at most"))
        || text.contains(&format!("{field}: must be greater than 0"))
}

#[test]
fn the_values_of_the_issue_are_refused_naming_field_and_bound() {
    assert_eq!(
        errors(&with("openbao.timeout", "2562047h")),
        "config invalid; openbao.timeout: must be at most 2m0s"
    );
    assert_eq!(
        errors(&with("status.probeInterval", "1ns")),
        "config invalid; status.probeInterval: must be at least 1s"
    );
}

#[test]
fn every_duration_is_refused_just_outside_its_bounds_and_accepted_at_them() {
    for (
        field,
        DurationBounds {
            min,
            max,
            zero_means_default,
        },
    ) in DURATION_BOUNDS
    {
        let above = errors(&with(field, &go(max + Duration::from_nanos(1))));
        assert!(
            above.contains(&format!("{field}: must be at most {}", go(max))),
            "{field} above max: {above}"
        );
        if !min.is_zero() {
            let below = errors(&with(field, &go(min - Duration::from_nanos(1))));
            assert!(
                below.contains(&format!("{field}: must be at least {}", go(min))),
                "{field} below min: {below}"
            );
        }
        for edge in [min, max] {
            let text = errors(&with(field, &go(edge)));
            assert!(
                !bound_problems(field, &text),
                "{field} at {}: {text}",
                go(edge)
            );
        }
        let zero = errors(&with(field, "0s"));
        assert_eq!(
            bound_problems(field, &zero),
            !(min.is_zero() || zero_means_default),
            "{field} at 0s: {zero}"
        );
    }
}

#[test]
fn the_configuration_reference_documents_every_bound() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reference/configuration.md"
    ))
    .unwrap();
    for (field, bounds) in DURATION_BOUNDS {
        let row = docs
            .lines()
            .find(|line| line.starts_with(&format!("| `{field}` |")))
            .unwrap_or_else(|| panic!("no row for {field}"));
        let range = format!("`{}` to `{}`", go(bounds.min), go(bounds.max));
        assert!(
            row.contains(&range),
            "{field}: the row must say {range}: {row}"
        );
    }
}

#[test]
fn counts_are_bounded_too() {
    assert_eq!(
        errors(&with("rotation.requireStableObservationCount", "1001").replace('"', "")),
        "config invalid; rotation.requireStableObservationCount: must be between 1 and 1000"
    );
    assert_eq!(
        errors(&with("rotation.requireStableObservationCount", "1000").replace('"', "")),
        ""
    );
}
