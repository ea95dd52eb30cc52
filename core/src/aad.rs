//! Canonical associated data (AAD) v1, bound into every Transit encrypt and decrypt.
//!
//! The bytes are what Go's `json.Marshal` produces for a fixed struct, so they are built with the
//! Go-compatible writer. Transit receives them as standard padded base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::gojson::GoValue;
use crate::identity::KeyScope;
use crate::key_id::KeyId;
use crate::version::KeyVersion;

/// The only AAD version this release reads and writes.
pub const AAD_VERSION_V1: &str = "v1";
/// The fixed purpose string of AAD v1.
const AAD_PURPOSE: &str = "kubernetes-etcd-kms-v2";
/// The provider name written into AAD and annotations.
pub const PROVIDER_KIND: &str = "openbao-transit";

/// Canonical AAD v1 bytes for one key version.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Aad(String);

impl Aad {
    /// Builds the AAD that binds a ciphertext to `key_id` and `version` within `scope`.
    pub fn v1(scope: &KeyScope, key_id: &KeyId, version: KeyVersion) -> Self {
        let mut fields = vec![
            ("aad_version", GoValue::str(AAD_VERSION_V1)),
            ("purpose", GoValue::str(AAD_PURPOSE)),
            ("provider", GoValue::str(PROVIDER_KIND)),
            ("provider_name", GoValue::str(scope.provider_name())),
            (
                "cluster_id_hash",
                GoValue::str(scope.cluster_id_digest().as_str()),
            ),
            (
                "openbao_instance_hash",
                GoValue::str(scope.instance_digest().as_str()),
            ),
        ];
        if let Some(namespace) = scope.namespace_digest() {
            fields.push(("openbao_namespace_hash", GoValue::str(namespace.as_str())));
        }
        fields.extend([
            (
                "transit_mount_hash",
                GoValue::str(scope.mount_digest().as_str()),
            ),
            (
                "transit_key_hash",
                GoValue::str(scope.lineage_digest().as_str()),
            ),
            ("key_id_hash", GoValue::str(key_id.digest().as_str())),
            ("key_version", GoValue::str(version.to_string())),
        ]);
        Self(GoValue::Object(fields).to_compact())
    }

    /// The canonical JSON text.
    pub fn as_json(&self) -> &str {
        &self.0
    }

    /// The `associated_data` value sent to Transit: padded standard base64 of the JSON.
    pub fn to_transit_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }
}
