//! The seed corpora, built from the project's own vectors, fixtures, documented configuration
//! examples and real OpenBao 2.7.2 answers. The committed files under `corpus/` were written by
//! the ignored test `write_seed_corpora`; fuzzing adds its own files beside them.

use std::collections::BTreeMap;

use bao_kms_core::{Checkpoint, StateFile};
use serde_json::Value;

use crate::sim;
use crate::wire::{self, GOLDEN_KEY_ID};

const WIRE_V1: &str = include_str!("../../core/tests/vectors/wire-v1.json");
const WIRE_V1_EXTRA: &str = include_str!("../../core/tests/vectors/wire-v1-extra.json");
const STATE_ONE: &str = include_str!("../../core/tests/fixtures/golden-one-record.json");
const STATE_THREE: &str = include_str!("../../core/tests/fixtures/golden-three-records.json");
const CHECKPOINT_THREE: &str =
    include_str!("../../core/tests/fixtures/golden-three-records.json.checkpoint");
const STATE_ESCAPING: &str = include_str!("../../core/tests/fixtures/namespaced-escaping.json");
const CONFIGURATION_DOC: &str = include_str!("../../docs/reference/configuration.md");

/// Named seeds of one target.
pub type Seeds = Vec<(String, Vec<u8>)>;

/// Every target's seeds.
pub fn all() -> Vec<(&'static str, Seeds)> {
    let named = |seeds: Vec<(&str, Vec<u8>)>| -> Seeds {
        seeds
            .into_iter()
            .map(|(name, bytes)| (name.to_owned(), bytes))
            .collect()
    };
    vec![
        ("key_id_parse", key_ids()),
        ("annotations_parse", annotation_maps()),
        ("ciphertext_prefix", named(ciphertexts())),
        ("aad_canonical", identities()),
        ("state_file", named(state_files())),
        ("checkpoint", checkpoints()),
        ("config_yaml", configs()),
        ("transit_json", named(transit_answers())),
        ("decrypt_request", named(sim::decrypt_request_seeds())),
        ("provider_ops", named(sim::provider_ops_seeds())),
        (
            "encrypted_object",
            named(crate::storage::encrypted_object_seeds()),
        ),
    ]
}

fn vectors() -> Vec<Value> {
    let mut out = Vec::new();
    for text in [WIRE_V1, WIRE_V1_EXTRA] {
        let file: Value = serde_json::from_str(text).expect("vector files are JSON");
        out.extend(file["vectors"].as_array().cloned().unwrap_or_default());
    }
    out
}

fn name_of(vector: &Value) -> String {
    vector["name"].as_str().unwrap_or("vector").to_owned()
}

fn key_ids() -> Seeds {
    let mut seeds: Seeds = vectors()
        .iter()
        .map(|vector| {
            let key_id = vector["expected"]["keyId"].as_str().unwrap_or_default();
            (name_of(vector), key_id.as_bytes().to_vec())
        })
        .collect();
    let mut other_prefix = GOLDEN_KEY_ID.to_owned();
    other_prefix.replace_range(..5, "obk1.");
    let mut trailing_bits = GOLDEN_KEY_ID.to_owned();
    trailing_bits.replace_range(47.., "R");
    for (name, text) in [
        ("other-prefix", other_prefix),
        ("non-canonical-trailing-bits", trailing_bits),
        ("prefix-only", "obk2.".to_owned()),
    ] {
        seeds.push((name.to_owned(), text.into_bytes()));
    }
    seeds
}

fn annotations_of(vector: &Value) -> BTreeMap<String, Vec<u8>> {
    vector["expected"]["annotations"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(key, value)| {
                    let value = value.as_str().unwrap_or_default().as_bytes().to_vec();
                    (key.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn annotation_maps() -> Seeds {
    let vectors = vectors();
    let mut seeds: Seeds = vectors
        .iter()
        .map(|vector| {
            let bytes = wire::encode_annotation_map(&annotations_of(vector));
            (name_of(vector), bytes)
        })
        .collect();
    let golden = vectors.first().map(annotations_of).unwrap_or_default();
    let edit = |key: &str, value: Option<&[u8]>| {
        let mut map = golden.clone();
        match value {
            Some(value) => map.insert(key.to_owned(), value.to_vec()),
            None => map.remove(key),
        };
        wire::encode_annotation_map(&map)
    };
    seeds.push((
        "extra-informational-key".into(),
        edit("note.kms.openbao.org", Some(b"anything")),
    ));
    seeds.push((
        "non-fqdn-key".into(),
        edit("provider", Some(b"openbao-transit")),
    ));
    seeds.push((
        "version-leading-zero".into(),
        edit("transit-key-version.kms.openbao.org", Some(b"03")),
    ));
    seeds.push((
        "missing-aad-version".into(),
        edit("aad-version.kms.openbao.org", None),
    ));
    seeds
}

fn ciphertexts() -> Vec<(&'static str, Vec<u8>)> {
    [
        (
            "openbao-32-byte-seed",
            "vault:v1:fneq8VV1WxqdrAC3htKtj7a9ncQQql2rpI2K1fnz2TDCTgY2dTOu+4W9VDB7SR8xe10pSOy5wGzzk/s3",
        ),
        (
            "openbao-empty-plaintext",
            "vault:v1:1GQeiJl54o6uU8LuFrmILdnaqTTYmIr4x1H/HQ==",
        ),
        ("too-short", "vault:v1:zzzz"),
        ("version-not-a-number", "vault:vX:1GQeiJl54o6uU8LuFrmILdnaqTTYmIr4x1H/HQ=="),
        ("version-leading-zero", "vault:v01:1GQeiJl54o6uU8LuFrmILdnaqTTYmIr4x1H/HQ=="),
        ("no-prefix", "garbage"),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.as_bytes().to_vec()))
    .collect()
}

fn identities() -> Seeds {
    vectors()
        .iter()
        .map(|vector| {
            let input = &vector["input"];
            let text = |field: &str| input[field].as_str().unwrap_or_default().to_owned();
            let number = |field: &str| input[field].as_i64().unwrap_or_default().to_string();
            let fields = [
                text("providerName"),
                text("clusterId"),
                text("openbaoInstanceId"),
                text("openbaoNamespace"),
                text("transitMountId"),
                text("transitKeyLineageId"),
                number("transitVersion"),
                number("transitVersionCreatedAtUnix"),
            ];
            (name_of(vector), fields.join("\0").into_bytes())
        })
        .collect()
}

fn state_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("golden-one-record", STATE_ONE.as_bytes().to_vec()),
        ("golden-three-records", STATE_THREE.as_bytes().to_vec()),
        ("namespaced-escaping", STATE_ESCAPING.as_bytes().to_vec()),
        (
            "golden-one-record-compact",
            STATE_ONE
                .lines()
                .map(str::trim_start)
                .collect::<String>()
                .into_bytes(),
        ),
    ]
}

fn checkpoints() -> Seeds {
    let mut seeds: Seeds = vec![(
        "golden-three-records".into(),
        CHECKPOINT_THREE.as_bytes().to_vec(),
    )];
    for (name, state) in [
        ("golden-one-record", STATE_ONE),
        ("namespaced-escaping", STATE_ESCAPING),
    ] {
        let state = StateFile::decode(state.as_bytes()).expect("fixture state decodes");
        let checkpoint = Checkpoint::for_state(&state).encode();
        seeds.push((name.into(), checkpoint.into_bytes()));
    }
    seeds.push((
        "generation-zero".into(),
        CHECKPOINT_THREE
            .replace("\"generation\": 7", "\"generation\": 0")
            .into_bytes(),
    ));
    seeds
}

fn configs() -> Seeds {
    let mut seeds = Seeds::new();
    let mut rest = CONFIGURATION_DOC;
    while let Some(start) = rest.find("```yaml\n") {
        let block = &rest[start + 8..];
        let end = block.find("```").unwrap_or(block.len());
        seeds.push((
            format!("configuration-md-example-{}", seeds.len() + 1),
            block.as_bytes()[..end].to_vec(),
        ));
        rest = &block[end..];
    }
    seeds.push((
        "wrong-types-and-unknown-key".into(),
        b"configVersion: v1alpha1\nserver:\n  socketMode: 0660\n  unknown: 1\nopenbao:\n  \
          timeout: 2\n"
            .to_vec(),
    ));
    seeds.push(("duration".into(), b"1h2m3.5s".to_vec()));
    seeds
}

fn transit_answers() -> Vec<(&'static str, Vec<u8>)> {
    let answers: [(&str, &str); 8] = [
        (
            "key-metadata",
            r#"{"request_id":"8d908d3f-5d0e-4a8e-9c1e-2f0f4a1d9b7c","lease_id":"","renewable":false,"lease_duration":0,"wrap_info":null,"warnings":null,"auth":null,"data":{"allow_plaintext_backup":false,"auto_rotate_period":0,"deletion_allowed":false,"derived":false,"exportable":false,"imported_key":false,"keys":{"1":1795805642},"latest_version":1,"min_available_version":0,"min_decryption_version":1,"min_encryption_version":0,"name":"kms-key","soft_deleted":false,"supports_decryption":true,"supports_derivation":true,"supports_encryption":true,"supports_signing":false,"type":"aes256-gcm96"}}"#,
        ),
        (
            "key-metadata-rotated-min-decryption-2",
            r#"{"data":{"allow_plaintext_backup":false,"auto_rotate_period":0,"deletion_allowed":false,"derived":false,"exportable":false,"imported_key":false,"keys":{"2":1795805700,"3":1795805760},"latest_version":3,"min_available_version":0,"min_decryption_version":2,"min_encryption_version":0,"name":"kms-key","soft_deleted":false,"supports_decryption":true,"supports_derivation":true,"supports_encryption":true,"supports_signing":false,"type":"aes256-gcm96"}}"#,
        ),
        (
            "encrypt",
            r#"{"data":{"ciphertext":"vault:v1:fneq8VV1WxqdrAC3htKtj7a9ncQQql2rpI2K1fnz2TDCTgY2dTOu+4W9VDB7SR8xe10pSOy5wGzzk/s3","key_version":1}}"#,
        ),
        (
            "decrypt",
            r#"{"data":{"plaintext":"aGVsbG8gb3BlbmJhbyB0cmFuc2l0IDMyIGJ5dGVzISE="}}"#,
        ),
        (
            "batch-partial-failure",
            r#"{"data":{"batch_results":[{"plaintext":"aGVsbG8gb3BlbmJhbyB0cmFuc2l0IDMyIGJ5dGVzISE=","reference":"0"},{"error":"cipher: message authentication failed","plaintext":"","reference":"1"},{"error":"invalid ciphertext: no prefix","plaintext":"","reference":"2"}]},"request_id":"4f1c2a3b-0000-4000-8000-000000000000"}"#,
        ),
        (
            "batch-documented-references",
            r#"{"data":{"batch_results":[{"plaintext":"aGVsbG8gb3BlbmJhbyB0cmFuc2l0IDMyIGJ5dGVzISE=","reference":"good"},{"error":"cipher: message authentication failed","plaintext":"","reference":"tampered"},{"error":"ciphertext or signature version is disallowed by policy (too old)","plaintext":"","reference":"garbage"}]}}"#,
        ),
        (
            "error-policy-denied",
            r#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
        ),
        (
            "health",
            r#"{"cluster_id":"c0ffee00-0000-4000-8000-000000000000","cluster_name":"vault-cluster-2fec5be8","initialized":true,"replication_dr_mode":"disabled","replication_performance_mode":"disabled","sealed":false,"server_time_utc":1795805665,"standby":false,"version":"2.7.2"}"#,
        ),
    ];
    answers
        .into_iter()
        .map(|(name, text)| (name, text.as_bytes().to_vec()))
        .collect()
}
