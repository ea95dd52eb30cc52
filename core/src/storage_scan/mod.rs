//! The storage scan: what etcd still holds under which key, and which Transit versions may be
//! retired.
//!
//! The runtime streams `(key, value)` pairs from etcd into a [`Tally`]; this module classifies
//! each value ([`classify()`]), decodes KMS v2 `EncryptedObject`s of this provider
//! ([`encrypted_object`]) and counts them per resource type and per key_id. [`ScanSummary::build`]
//! then matches the counted key_ids against the key registry and gives every Transit version a
//! [`Verdict`]. Nothing here decrypts, reads etcd or a clock: values and time arrive as inputs.
//!
//! Memory is bounded by the number of distinct resource types and key_ids, never by the number
//! of objects; both maps are capped ([`MAX_BUCKETS`]) so a hostile store cannot grow them without
//! limit.

pub mod classify;
pub mod encrypted_object;
pub mod gate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::annotations::TRANSIT_KEY_VERSION;
use crate::digest::IdentityDigest;
use crate::registry::{SnapshotState, StateFile};

pub use self::classify::{Classified, ValueKind, classify};

/// At most this many distinct resource types and key_ids are tracked one by one; the rest are
/// counted under [`OVERFLOW_BUCKET`].
pub const MAX_BUCKETS: usize = 4096;
/// Where objects beyond [`MAX_BUCKETS`] distinct names are counted.
pub const OVERFLOW_BUCKET: &str = "(other)";

/// Counts of one key_id seen in storage.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
struct KeyCount {
    objects: u64,
    /// The `transit-key-version` annotation of the first object seen, for key_ids the registry
    /// does not know.
    annotated_version: Option<u32>,
}

/// Running counts of one scan.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    prefix: String,
    provider_name: String,
    objects: u64,
    bytes: u64,
    resources: BTreeMap<String, BTreeMap<ValueKind, u64>>,
    /// Per resource type and key_id digest.
    resource_keys: BTreeMap<(String, String), u64>,
    /// Per key_id digest.
    keys: BTreeMap<String, KeyCount>,
}

impl Tally {
    /// A tally of values stored under `prefix` (e.g. `/registry/`) for provider `provider_name`.
    pub fn new(prefix: &str, provider_name: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            provider_name: provider_name.to_owned(),
            ..Self::default()
        }
    }

    /// Counts one etcd key and value.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.objects += 1;
        self.bytes += value.len() as u64;
        let resource = capped(&self.resources, resource_type(key, self.prefix.as_bytes()));
        let classified = classify(value, &self.provider_name);
        *self
            .resources
            .entry(resource.clone())
            .or_default()
            .entry(classified.kind())
            .or_default() += 1;
        if let Classified::Ours(info) = classified {
            let digest = IdentityDigest::of(info.key_id.as_bytes())
                .as_str()
                .to_owned();
            let digest = capped(&self.keys, digest);
            let entry = self.keys.entry(digest.clone()).or_default();
            entry.objects += 1;
            if entry.annotated_version.is_none() {
                entry.annotated_version = info
                    .annotations
                    .get(TRANSIT_KEY_VERSION)
                    .and_then(|raw| std::str::from_utf8(raw).ok())
                    .and_then(|text| text.parse().ok());
            }
            *self.resource_keys.entry((resource, digest)).or_default() += 1;
        }
    }

    /// Objects counted so far.
    pub fn objects(&self) -> u64 {
        self.objects
    }
}

/// `name`, or [`OVERFLOW_BUCKET`] once `map` already tracks [`MAX_BUCKETS`] other names.
fn capped<V>(map: &BTreeMap<String, V>, name: String) -> String {
    if map.len() >= MAX_BUCKETS && !map.contains_key(&name) {
        OVERFLOW_BUCKET.to_owned()
    } else {
        name
    }
}

/// The resource type of an etcd key: `/registry/secrets/ns/name` is `secrets`;
/// `/registry/<group>/<resource>/...` (a dotted group, as custom resources are stored) is
/// `<resource>.<group>`.
pub fn resource_type(key: &[u8], prefix: &[u8]) -> String {
    let Some(rest) = key.strip_prefix(prefix) else {
        return OVERFLOW_BUCKET.to_owned();
    };
    let rest = String::from_utf8_lossy(rest);
    let mut parts = rest.split('/').filter(|part| !part.is_empty());
    match (parts.next(), parts.next()) {
        (Some(group), Some(resource)) if group.contains('.') => format!("{resource}.{group}"),
        (Some(first), _) => first.to_owned(),
        (None, _) => OVERFLOW_BUCKET.to_owned(),
    }
}

/// What a Transit version's stored objects allow.
#[derive(Clone, Copy, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The active or pending version: it is written with, never retired.
    Current,
    /// Objects are still encrypted under it: migrate storage before retiring it.
    StillReferenced,
    /// No object references it: it can be retired.
    SafeToRetire,
    /// Objects reference a version the registry has removed or rejected: they do not decrypt
    /// until it is restored.
    Unreadable,
    /// Objects reference a key_id the registry does not know (another cluster or lineage, or
    /// a registry that lost a version).
    UnknownKeyId,
}

impl Verdict {
    /// The stable name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::StillReferenced => "still-referenced",
            Self::SafeToRetire => "safe-to-retire",
            Self::Unreadable => "unreadable",
            Self::UnknownKeyId => "unknown-key-id",
        }
    }
}

/// One Transit version (or unknown key_id) and the objects stored under it.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionVerdict {
    /// The Transit version: the registry's, or for an unknown key_id its annotation's.
    pub transit_version: Option<u32>,
    /// The digest of the key_id (`key-id-hash`).
    pub key_id_hash: String,
    /// The registry state: active, pending, retired, removed, rejected, or `unknown`.
    pub registry_state: String,
    /// Objects stored under this key_id.
    pub objects: u64,
    /// What the count allows.
    pub verdict: Verdict,
}

/// Counts of one resource type.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceCounts {
    /// The resource type, e.g. `secrets`.
    pub resource: String,
    /// Objects of this type.
    pub objects: u64,
    /// Objects per value kind ([`ValueKind::as_str`]).
    pub kinds: BTreeMap<String, u64>,
    /// This provider's objects per key_id digest.
    pub key_id_hashes: BTreeMap<String, u64>,
}

/// The result of one scan: counts and verdicts, serializable as the scan report.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    /// The etcd key prefix scanned.
    pub prefix: String,
    /// The KMS provider name values were matched against.
    pub provider_name: String,
    /// When the scan finished (Unix seconds).
    pub scanned_at_unix: i64,
    /// Whether every key under the prefix was read. An incomplete scan proves nothing about
    /// the versions it found no objects for; a report without the field counts as incomplete.
    #[serde(default)]
    pub complete: bool,
    /// Objects scanned.
    pub objects: u64,
    /// Bytes of values scanned.
    pub bytes: u64,
    /// Per resource type.
    pub resources: Vec<ResourceCounts>,
    /// Per Transit version of the registry, then per unknown key_id.
    pub versions: Vec<VersionVerdict>,
}

impl ScanSummary {
    /// Matches the tally against the registry (`None` when there is none: every key_id is then
    /// unknown). `complete` says whether the tally holds every key under the prefix.
    pub fn build(
        tally: &Tally,
        registry: Option<&StateFile>,
        scanned_at_unix: i64,
        complete: bool,
    ) -> Self {
        let mut resources: Vec<ResourceCounts> = tally
            .resources
            .iter()
            .map(|(resource, kinds)| ResourceCounts {
                resource: resource.clone(),
                objects: kinds.values().sum(),
                kinds: kinds
                    .iter()
                    .map(|(kind, count)| (kind.as_str().to_owned(), *count))
                    .collect(),
                key_id_hashes: BTreeMap::new(),
            })
            .collect();
        for ((resource, digest), count) in &tally.resource_keys {
            if let Some(entry) = resources
                .iter_mut()
                .find(|entry| entry.resource == *resource)
            {
                entry.key_id_hashes.insert(digest.clone(), *count);
            }
        }
        let mut versions = Vec::new();
        let mut known = Vec::new();
        for record in registry.map(StateFile::records).unwrap_or_default() {
            let digest = record.key_id().digest().as_str().to_owned();
            let objects = tally.keys.get(&digest).map_or(0, |count| count.objects);
            let state = record.state();
            let verdict = match state {
                SnapshotState::Active | SnapshotState::Pending => Verdict::Current,
                SnapshotState::Removed | SnapshotState::Rejected if objects > 0 => {
                    Verdict::Unreadable
                }
                SnapshotState::Retired | SnapshotState::Removed | SnapshotState::Rejected => {
                    if objects > 0 {
                        Verdict::StillReferenced
                    } else {
                        Verdict::SafeToRetire
                    }
                }
            };
            versions.push(VersionVerdict {
                transit_version: Some(record.version().get()),
                key_id_hash: digest.clone(),
                registry_state: state.as_str().to_owned(),
                objects,
                verdict,
            });
            known.push(digest);
        }
        for (digest, count) in &tally.keys {
            if known.contains(digest) {
                continue;
            }
            versions.push(VersionVerdict {
                transit_version: count.annotated_version,
                key_id_hash: digest.clone(),
                registry_state: "unknown".to_owned(),
                objects: count.objects,
                verdict: Verdict::UnknownKeyId,
            });
        }
        Self {
            prefix: tally.prefix.clone(),
            provider_name: tally.provider_name.clone(),
            scanned_at_unix,
            complete,
            objects: tally.objects,
            bytes: tally.bytes,
            resources,
            versions,
        }
    }

    /// Objects stored under a Transit version below `before` (by the registry's version, or an
    /// unknown key_id's annotation): what retiring those versions would make unreadable.
    pub fn referenced_below(&self, before: u32) -> Vec<&VersionVerdict> {
        self.versions
            .iter()
            .filter(|entry| entry.objects > 0)
            .filter(|entry| {
                entry
                    .transit_version
                    .is_some_and(|version| version < before)
            })
            .collect()
    }

    /// Objects of `kind` across every resource type.
    pub fn count_of(&self, kind: ValueKind) -> u64 {
        self.resources
            .iter()
            .filter_map(|entry| entry.kinds.get(kind.as_str()))
            .sum()
    }
}

#[cfg(test)]
mod tests;
