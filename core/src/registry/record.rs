//! One registry record: a Transit key version, the key_id derived from it, and its state.

use std::cmp::Ordering;

use crate::gojson::GoValue;
use crate::identity::KeyScope;
use crate::key_id::KeyId;
use crate::registry::error::StateError;
use crate::version::KeyVersion;

/// The lifecycle state of one key version in the registry.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum SnapshotState {
    /// The one version Status advertises and Encrypt uses.
    Active,
    /// A newer version observed in Transit, decrypt-only until it is promoted.
    Pending,
    /// A former active or skipped version, kept for decrypting old data.
    Retired,
    /// Legacy state of older releases; never decrypts and is never written for new records.
    Rejected,
    /// Retired by an explicit operator request; never decrypts.
    Removed,
}

impl SnapshotState {
    /// Every state, in canonical file order.
    pub const ALL: [Self; 5] = [
        Self::Active,
        Self::Pending,
        Self::Retired,
        Self::Rejected,
        Self::Removed,
    ];

    /// The state as written in the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Pending => "pending",
            Self::Retired => "retired",
            Self::Rejected => "rejected",
            Self::Removed => "removed",
        }
    }

    /// Parses the state-file spelling; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }

    /// Whether ciphertext of a version in this state may be decrypted.
    pub fn decrypts(self) -> bool {
        match self {
            Self::Active | Self::Pending | Self::Retired => true,
            Self::Rejected | Self::Removed => false,
        }
    }

    /// Position in the canonical record order of the Go provider (active first, removed last).
    fn rank(self) -> u8 {
        match self {
            Self::Active => 0,
            Self::Pending => 1,
            Self::Retired => 2,
            Self::Rejected => 3,
            Self::Removed => 4,
        }
    }
}

/// How a key version binds AAD; wire format v1 knows exactly one mode.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub enum AadMode {
    /// Every Transit call carries the canonical AAD.
    #[default]
    Required,
}

impl AadMode {
    /// The mode as written in the state file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "aad.required",
        }
    }

    /// Parses the state-file spelling; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        (text == Self::Required.as_str()).then_some(Self::Required)
    }
}

/// Rotation bookkeeping of a record. Zero means "not set": the Go provider writes these fields
/// with `omitempty`, so a zero can never be told apart from an absent value on disk.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub struct Observation {
    /// When the version was first observed as a candidate (Unix seconds).
    pub observed_at_unix: i64,
    /// How many consecutive probes saw the same candidate.
    pub stable_observation_count: u32,
    /// When the candidate reached the stability threshold (Unix seconds).
    pub stable_at_unix: i64,
    /// When the version became active (Unix seconds).
    pub promoted_at_unix: i64,
}

impl Observation {
    /// No observation metadata at all.
    pub const NONE: Self = Self {
        observed_at_unix: 0,
        stable_observation_count: 0,
        stable_at_unix: 0,
        promoted_at_unix: 0,
    };

    /// Checks the ordering rules the Go provider enforces on load.
    fn check(&self) -> Result<(), RecordProblem> {
        let problem = |field, reason| Err(RecordProblem { field, reason });
        let timestamps = [
            ("observedAtUnix", self.observed_at_unix),
            ("stableAtUnix", self.stable_at_unix),
            ("promotedAtUnix", self.promoted_at_unix),
        ];
        if let Some((field, _)) = timestamps.iter().find(|(_, value)| *value < 0) {
            return problem(field, "must not be negative");
        }
        let observed = self.observed_at_unix > 0;
        if self.stable_observation_count > 0 && !observed {
            return problem("stableObservationCount", "is set without observedAtUnix");
        }
        if self.stable_at_unix > 0 && self.stable_observation_count == 0 {
            return problem("stableAtUnix", "is set without stableObservationCount");
        }
        if self.stable_at_unix > 0 && observed && self.stable_at_unix < self.observed_at_unix {
            return problem("stableAtUnix", "is earlier than observedAtUnix");
        }
        if self.promoted_at_unix > 0 && observed && self.promoted_at_unix < self.observed_at_unix {
            return problem("promotedAtUnix", "is earlier than observedAtUnix");
        }
        Ok(())
    }
}

/// A validated registry record. Construction derives (or re-derives) the key_id, so a record
/// whose key_id does not match its identity values, version and creation time cannot exist.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StateRecord {
    scope: KeyScope,
    version: KeyVersion,
    created_at_unix: i64,
    key_id: KeyId,
    state: SnapshotState,
    aad_mode: AadMode,
    observation: Observation,
}

/// A record problem before it is attributed to a construction or a file position.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct RecordProblem {
    pub(crate) field: &'static str,
    pub(crate) reason: &'static str,
}

impl RecordProblem {
    pub(crate) fn at(self, index: usize) -> StateError {
        StateError::CorruptRecord {
            index,
            field: self.field,
            reason: self.reason,
        }
    }
}

impl From<RecordProblem> for StateError {
    fn from(problem: RecordProblem) -> Self {
        Self::InvalidRecord {
            field: problem.field,
            reason: problem.reason,
        }
    }
}

impl StateRecord {
    /// A record for one Transit version, with its key_id derived and no observation metadata.
    ///
    /// # Errors
    /// [`StateError::InvalidRecord`] when the creation time is not positive.
    pub fn new(
        scope: KeyScope,
        version: KeyVersion,
        created_at_unix: i64,
        state: SnapshotState,
    ) -> Result<Self, StateError> {
        let key_id = KeyId::derive(&scope, version, created_at_unix);
        Self::assemble(
            scope,
            version,
            created_at_unix,
            &key_id,
            state,
            Observation::NONE,
        )
        .map_err(StateError::from)
    }

    /// Checks every record rule and returns the record; used for records read from disk.
    pub(crate) fn assemble(
        scope: KeyScope,
        version: KeyVersion,
        created_at_unix: i64,
        key_id: &KeyId,
        state: SnapshotState,
        observation: Observation,
    ) -> Result<Self, RecordProblem> {
        if created_at_unix <= 0 {
            return Err(RecordProblem {
                field: "transitVersionCreatedAtUnix",
                reason: "must be positive",
            });
        }
        let derived = KeyId::derive(&scope, version, created_at_unix);
        if &derived != key_id {
            return Err(RecordProblem {
                field: "kubernetesKeyId",
                reason: "key_id does not match its record",
            });
        }
        observation.check()?;
        Ok(Self {
            scope,
            version,
            created_at_unix,
            key_id: derived,
            state,
            aad_mode: AadMode::Required,
            observation,
        })
    }

    /// The same record in another state; observation metadata is kept.
    #[must_use]
    pub fn with_state(mut self, state: SnapshotState) -> Self {
        self.state = state;
        self
    }

    /// The same record with new observation metadata.
    ///
    /// # Errors
    /// [`StateError::InvalidRecord`] when the metadata breaks an ordering rule (negative value,
    /// count without observation time, stable or promotion time before the observation).
    pub fn with_observation(mut self, observation: Observation) -> Result<Self, StateError> {
        observation.check()?;
        self.observation = observation;
        Ok(self)
    }

    /// The identity values the key_id is derived from.
    pub fn scope(&self) -> &KeyScope {
        &self.scope
    }

    /// The Transit key version.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// The Transit creation time of the version, in whole Unix seconds.
    pub fn created_at_unix(&self) -> i64 {
        self.created_at_unix
    }

    /// The Kubernetes key_id of the version.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The lifecycle state.
    pub fn state(&self) -> SnapshotState {
        self.state
    }

    /// The AAD mode.
    pub fn aad_mode(&self) -> AadMode {
        self.aad_mode
    }

    /// The rotation bookkeeping.
    pub fn observation(&self) -> Observation {
        self.observation
    }

    /// Whether ciphertext of this version may be decrypted.
    pub fn decrypts(&self) -> bool {
        self.state.decrypts()
    }

    /// The Go provider's record order: by state rank, then newest version first, then key_id.
    pub(crate) fn canonical_cmp(&self, other: &Self) -> Ordering {
        self.state
            .rank()
            .cmp(&other.state.rank())
            .then_with(|| other.version.cmp(&self.version))
            .then_with(|| self.key_id.cmp(&other.key_id))
    }

    /// The record as Go marshals its snapshot struct: fixed field order, `omitempty` honoured.
    pub(crate) fn to_go_value(&self) -> GoValue {
        let scope = &self.scope;
        let mut fields = vec![
            ("providerName", GoValue::str(scope.provider_name())),
            ("clusterId", GoValue::str(scope.cluster_id())),
            (
                "openbaoInstanceId",
                GoValue::str(scope.openbao_instance_id()),
            ),
        ];
        if let Some(namespace) = scope.openbao_namespace() {
            fields.push(("openbaoNamespace", GoValue::str(namespace)));
        }
        fields.extend([
            ("transitMountId", GoValue::str(scope.transit_mount_id())),
            ("transitKeyLineageId", GoValue::str(scope.key_lineage_id())),
            (
                "transitVersion",
                GoValue::Unsigned(u64::from(self.version.get())),
            ),
            (
                "transitVersionCreatedAtUnix",
                GoValue::Signed(self.created_at_unix),
            ),
            ("kubernetesKeyId", GoValue::str(self.key_id.as_str())),
            ("state", GoValue::str(self.state.as_str())),
            ("aadMode", GoValue::str(self.aad_mode.as_str())),
        ]);
        let observation = &self.observation;
        let optional = [
            ("observedAtUnix", observation.observed_at_unix),
            (
                "stableObservationCount",
                i64::from(observation.stable_observation_count),
            ),
            ("stableAtUnix", observation.stable_at_unix),
            ("promotedAtUnix", observation.promoted_at_unix),
        ];
        for (name, value) in optional {
            if value != 0 {
                fields.push((name, GoValue::Signed(value)));
            }
        }
        GoValue::Object(fields)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::test_support::{golden_scope, version};

    #[test]
    fn only_active_pending_and_retired_decrypt() {
        let decrypting: Vec<_> = SnapshotState::ALL
            .into_iter()
            .filter(|state| state.decrypts())
            .collect();
        assert_eq!(
            decrypting,
            [
                SnapshotState::Active,
                SnapshotState::Pending,
                SnapshotState::Retired
            ]
        );
    }

    #[test]
    fn state_and_aad_spellings_round_trip() {
        for state in SnapshotState::ALL {
            assert_eq!(SnapshotState::parse(state.as_str()), Some(state));
        }
        assert_eq!(SnapshotState::parse("Active"), None);
        assert_eq!(AadMode::parse("aad.required"), Some(AadMode::Required));
        assert_eq!(AadMode::parse("aad.optional"), None);
    }

    #[test]
    fn new_derives_the_golden_key_id() {
        let record = StateRecord::new(
            golden_scope().key_scope().clone(),
            version(3),
            1_715_803_200,
            SnapshotState::Active,
        )
        .unwrap();
        assert_eq!(
            record.key_id().as_str(),
            "obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSk"
        );
    }

    #[test]
    fn a_creation_time_that_is_not_positive_is_refused() {
        let scope = golden_scope().key_scope().clone();
        let error = StateRecord::new(scope, version(1), 0, SnapshotState::Active).unwrap_err();
        assert_eq!(
            error,
            StateError::InvalidRecord {
                field: "transitVersionCreatedAtUnix",
                reason: "must be positive"
            }
        );
    }

    #[test]
    fn observation_ordering_rules_are_enforced() {
        let record = StateRecord::new(
            golden_scope().key_scope().clone(),
            version(2),
            100,
            SnapshotState::Pending,
        )
        .unwrap();
        let bad = [
            Observation {
                observed_at_unix: -1,
                ..Observation::NONE
            },
            Observation {
                stable_observation_count: 1,
                ..Observation::NONE
            },
            Observation {
                observed_at_unix: 5,
                stable_at_unix: 6,
                ..Observation::NONE
            },
            Observation {
                observed_at_unix: 5,
                stable_observation_count: 2,
                stable_at_unix: 4,
                ..Observation::NONE
            },
            Observation {
                observed_at_unix: 5,
                promoted_at_unix: 4,
                ..Observation::NONE
            },
        ];
        for observation in bad {
            assert!(
                record.clone().with_observation(observation).is_err(),
                "{observation:?}"
            );
        }
        let good = Observation {
            observed_at_unix: 5,
            stable_observation_count: 3,
            stable_at_unix: 7,
            promoted_at_unix: 9,
        };
        assert_eq!(record.with_observation(good).unwrap().observation(), good);
    }

    #[test]
    fn a_promotion_time_alone_is_allowed_for_bootstrap() {
        let observation = Observation {
            promoted_at_unix: 10,
            ..Observation::NONE
        };
        assert!(observation.check().is_ok());
    }

    #[test]
    fn zero_observation_fields_are_omitted_like_go_omitempty() {
        let record = StateRecord::new(
            golden_scope().key_scope().clone(),
            version(1),
            1,
            SnapshotState::Retired,
        )
        .unwrap();
        let json = record.to_go_value().to_compact();
        assert!(
            json.ends_with(r#""state":"retired","aadMode":"aad.required"}"#),
            "{json}"
        );
        assert!(!json.contains("openbaoNamespace"));
    }
}
