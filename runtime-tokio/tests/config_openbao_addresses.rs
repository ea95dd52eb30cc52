//! `openbao.address` and `openbao.addresses` (the nodes of an HA cluster) as one list.
#![allow(clippy::unwrap_used)]

mod config_support;

use bao_kms_runtime_tokio::config::{Config, ConfigError};
use config_support::MINIMAL;

/// The shared minimal configuration with its `openbao.address` line replaced by
/// `addresses_yaml`.
fn parse(addresses_yaml: &str) -> Result<Config, ConfigError> {
    let line = "  address: https://openbao.example:8200\n";
    assert!(MINIMAL.contains(line), "the fixture's address line moved");
    config_support::parse(&MINIMAL.replacen(line, &format!("{addresses_yaml}\n"), 1))
}

fn problems(addresses_yaml: &str) -> Vec<(String, String)> {
    parse(addresses_yaml)
        .unwrap_err()
        .problems()
        .iter()
        .map(|problem| (problem.field().to_owned(), problem.message().to_owned()))
        .collect()
}

#[test]
fn addresses_alone_name_every_node_the_first_tried_first() {
    let config = parse(
        "  addresses: [\"https://bao-1.example:8200\", \"https://bao-2.example:8200/\", \"https://bao-3.example\"]",
    )
    .unwrap();
    assert_eq!(config.openbao.address, "https://bao-1.example:8200");
    assert_eq!(
        config.openbao.more_addresses,
        ["https://bao-2.example:8200", "https://bao-3.example"]
    );
    assert!(
        config.additions_used().contains(&"openbao.addresses"),
        "older releases refuse the key, so doctor must say it is ours"
    );
}

#[test]
fn address_with_addresses_must_be_one_of_them_and_goes_first() {
    let config = parse(
        "  address: https://bao-2.example:8200\n  addresses: [\"https://bao-1.example:8200\", \"https://bao-2.example:8200\"]",
    )
    .unwrap();
    assert_eq!(config.openbao.address, "https://bao-2.example:8200");
    assert_eq!(
        config.openbao.more_addresses,
        ["https://bao-1.example:8200"]
    );

    let outside = problems(
        "  address: https://bao-9.example:8200\n  addresses: [\"https://bao-1.example:8200\"]",
    );
    assert_eq!(outside.len(), 1);
    assert_eq!(outside[0].0, "openbao.address");
    assert!(
        outside[0].1.contains("one of openbao.addresses"),
        "{outside:?}"
    );
}

#[test]
fn a_single_address_has_no_other_nodes() {
    let config = parse("  address: https://bao.example:8200").unwrap();
    assert!(config.openbao.more_addresses.is_empty());
    assert!(!config.additions_used().contains(&"openbao.addresses"));
}

#[test]
fn bad_lists_name_the_entry_at_fault() {
    let repeated =
        problems("  addresses: [\"https://bao-1.example:8200\", \"https://bao-1.example:8200/\"]");
    assert_eq!(repeated[0].0, "openbao.addresses[1]", "{repeated:?}");
    let plain_http = problems("  addresses: [\"https://bao-1.example\", \"http://bao-2.example\"]");
    assert_eq!(plain_http[0].0, "openbao.addresses[1]", "{plain_http:?}");
    let empty = problems("  addresses: []");
    assert_eq!(empty[0].0, "openbao.addresses", "{empty:?}");
    let none = problems("  namespace: \"\"");
    assert!(
        none.iter()
            .any(|(field, message)| field == "openbao.address" && message.contains("required")),
        "{none:?}"
    );
}
