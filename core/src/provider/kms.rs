//! Status, Encrypt and Decrypt decisions, and the Transit calls they wait on.

use std::collections::BTreeMap;
use std::time::Instant;

use super::calls::InFlightDecrypt;
use super::io::{Event, KmsMethod, KmsRequest, KmsResponse, Output, RequestId};
use super::probes::ProbeCall;
use super::{PendingRequest, Provider};
use crate::aad::Aad;
use crate::annotations::Annotations;
use crate::ciphertext::TransitCiphertext;
use crate::key_id::KeyId;
use crate::limits;
use crate::plaintext::Plaintext;
use crate::refusal::{Refusal, TransitStep};
use crate::rotation::ObserveMode;
use crate::transit::{BatchDecryptItem, TransitFailure, TransitRequest, TransitResponse};
use crate::version::KeyVersion;

/// Who waits for a Transit call.
#[derive(Debug)]
pub(super) enum CallPurpose {
    /// A probe step.
    Probe(ProbeCall),
    /// An Encrypt request.
    Encrypt {
        request: RequestId,
        key_id: KeyId,
        version: KeyVersion,
    },
    /// A Decrypt call: one item alone or several as a batch; each item is shared by every
    /// request for the same ciphertext and AAD.
    Decrypt { items: Vec<InFlightDecrypt> },
}

/// Decrypt requests parked while discovery looks for their key_id.
#[derive(Debug, Default)]
pub(super) struct Discovery {
    /// When the last discovery started; at most one per probe interval.
    pub(super) last_attempt: Option<Instant>,
    /// Whether discovery is waiting for a metadata probe or a save.
    pub(super) in_flight: bool,
    pub(super) waiters: Vec<(RequestId, DecryptParts)>,
    /// Discovery found new identities but could not save them yet (another save pending).
    pub(super) save_deferred: bool,
}

/// The unvalidated fields of a Decrypt request.
#[derive(Clone, Debug)]
pub(super) struct DecryptParts {
    ciphertext: Vec<u8>,
    key_id: String,
    annotations: BTreeMap<String, Vec<u8>>,
}

/// A Decrypt ready for Transit.
struct PreparedDecrypt {
    ciphertext: TransitCiphertext,
    associated_data: String,
}

/// Why a Decrypt cannot go to Transit yet.
enum NotPrepared {
    Refused(Refusal),
    Unknown,
}

impl Provider {
    pub(super) fn handle_request(
        &mut self,
        now: Instant,
        id: RequestId,
        deadline: Instant,
        request: KmsRequest,
    ) {
        if self.shutting_down {
            return self.respond(id, Err(Refusal::ShuttingDown));
        }
        // The caller's deadline, never later than `openbao.timeout` from now: a caller without
        // a deadline (or a generous one) still gets an answer in bounded time.
        let deadline = deadline.min(now + self.config.request_timeout);
        if deadline <= now {
            return self.respond(id, Err(Refusal::DeadlineExceeded));
        }
        let method = request.method();
        if self.in_flight(method) >= self.limit(method) {
            return self.respond(id, Err(Refusal::ConcurrencyLimit));
        }
        match request {
            KmsRequest::Status => {
                let key_id = self.healthy_key(now).map(|(key_id, _)| key_id);
                self.respond(id, Ok(KmsResponse::Status { key_id }));
            }
            KmsRequest::Encrypt { plaintext } => self.encrypt(now, id, deadline, plaintext),
            KmsRequest::Decrypt {
                ciphertext,
                key_id,
                annotations,
            } => {
                let parts = DecryptParts {
                    ciphertext,
                    key_id,
                    annotations,
                };
                self.requests
                    .insert(id, PendingRequest { deadline, method });
                self.decrypt(now, id, parts);
            }
        }
    }

    /// The active key_id and version when Status is healthy: the single predicate shared by
    /// Status and Encrypt, so the two can never disagree.
    pub(super) fn healthy_key(&self, now: Instant) -> Option<(KeyId, KeyVersion)> {
        if !self.health(now).healthy {
            return None;
        }
        let state = self.published.as_ref()?;
        Some((state.active_key_id().clone(), state.active().version()))
    }

    fn encrypt(&mut self, now: Instant, id: RequestId, deadline: Instant, plaintext: Plaintext) {
        if plaintext.is_empty() {
            return self.respond(id, Err(Refusal::PlaintextRequired));
        }
        let Some((key_id, version)) = self.healthy_key(now) else {
            let refusal = if self.published.is_some()
                && self
                    .probes
                    .only_deep_probe_missing(now, &self.config, self.published.as_ref())
            {
                Refusal::ActiveKeyUnavailable
            } else {
                Refusal::StatusUnhealthy
            };
            return self.respond(id, Err(refusal));
        };
        let digits = version.to_string().len();
        if plaintext.len() > limits::max_plaintext_bytes(digits) {
            return self.respond(id, Err(Refusal::PlaintextTooLarge));
        }
        let associated_data =
            Aad::v1(self.config.identity.key_scope(), &key_id, version).to_transit_base64();
        self.requests.insert(
            id,
            PendingRequest {
                deadline,
                method: KmsMethod::Encrypt,
            },
        );
        let request = TransitRequest::Encrypt {
            plaintext,
            key_version: version,
            associated_data,
        };
        self.call(
            deadline,
            request,
            CallPurpose::Encrypt {
                request: id,
                key_id,
                version,
            },
        );
    }

    fn decrypt(&mut self, now: Instant, id: RequestId, parts: DecryptParts) {
        let prepared = match self.prepare_decrypt(&parts) {
            Ok(prepared) => prepared,
            Err(NotPrepared::Refused(refusal)) => return self.respond(id, Err(refusal)),
            Err(NotPrepared::Unknown) => return self.discover(now, id, parts),
        };
        let key = (
            prepared.ciphertext.as_str().to_owned(),
            prepared.associated_data.clone(),
        );
        let item = BatchDecryptItem {
            ciphertext: prepared.ciphertext,
            associated_data: prepared.associated_data,
        };
        self.enqueue_decrypt(id, key, item);
        self.dispatch_decrypts(now);
    }

    /// Validates a Decrypt completely before any Transit call: limits, key_id, registry,
    /// annotations, ciphertext prefix, then the AAD is rebuilt from the registry record.
    fn prepare_decrypt(&self, parts: &DecryptParts) -> Result<PreparedDecrypt, NotPrepared> {
        let refuse = |refusal| Err(NotPrepared::Refused(refusal));
        if parts.ciphertext.is_empty() {
            return refuse(Refusal::CiphertextRequired);
        }
        let annotation_bytes: usize = parts
            .annotations
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        if parts.ciphertext.len() > limits::MAX_CIPHERTEXT_BYTES
            || parts.key_id.len() > limits::MAX_KEY_ID_BYTES
            || annotation_bytes > limits::MAX_ANNOTATIONS_BYTES
        {
            return refuse(Refusal::RequestLimitExceeded);
        }
        let Ok(key_id) = KeyId::parse(&parts.key_id) else {
            return refuse(Refusal::KeyIdMalformed);
        };
        let Some(state) = self.published.as_ref() else {
            return refuse(Refusal::StatusUnhealthy);
        };
        let record = match state.record_by_key_id(&key_id) {
            Some(record) if record.decrypts() => record,
            // Removed and rejected records are known on purpose: they never decrypt and never
            // trigger discovery.
            Some(_) => return refuse(Refusal::UnknownKeyId),
            None => return Err(NotPrepared::Unknown),
        };
        let Ok(annotations) = Annotations::parse(&parts.annotations) else {
            return refuse(Refusal::AnnotationsInvalid);
        };
        let scope = self.config.identity.key_scope();
        if annotations
            .check_binding(scope, &key_id, record.version())
            .is_err()
        {
            return refuse(Refusal::AnnotationMismatch);
        }
        let Ok(ciphertext) = TransitCiphertext::parse(&parts.ciphertext) else {
            return refuse(Refusal::CiphertextMalformed);
        };
        // The AAD binds the version, so a mismatched prefix could never decrypt; refusing it
        // here saves the Transit call.
        if ciphertext.version() != record.version() {
            return refuse(Refusal::AnnotationMismatch);
        }
        let associated_data = Aad::v1(scope, &key_id, record.version()).to_transit_base64();
        Ok(PreparedDecrypt {
            ciphertext,
            associated_data,
        })
    }

    /// Parks a Decrypt of an unknown, well-formed key_id behind one metadata discovery.
    fn discover(&mut self, now: Instant, id: RequestId, parts: DecryptParts) {
        if self.discovery.in_flight {
            self.discovery.waiters.push((id, parts));
            return;
        }
        let recently = self
            .discovery
            .last_attempt
            .is_some_and(|last| now < last + self.config.probe_interval);
        if recently {
            return self.respond(id, Err(Refusal::UnknownKeyId));
        }
        self.discovery.last_attempt = Some(now);
        self.discovery.in_flight = true;
        self.discovery.waiters.push((id, parts));
        self.event(Event::DiscoveryStarted);
        self.start_metadata_probe(now, ObserveMode::Discover);
    }

    /// Ends discovery: parked requests are retried against the registry now in use.
    pub(super) fn finish_discovery(&mut self, now: Instant, failed: bool) {
        if !self.discovery.in_flight {
            return;
        }
        self.discovery.in_flight = false;
        let failed = failed || std::mem::take(&mut self.discovery.save_deferred);
        for (id, parts) in std::mem::take(&mut self.discovery.waiters) {
            if !self.requests.contains_key(&id) {
                continue;
            }
            match self.prepare_decrypt(&parts) {
                Err(NotPrepared::Unknown) if failed => {
                    self.respond(id, Err(Refusal::KeyMetadataRefreshFailed));
                }
                Err(NotPrepared::Unknown) => self.respond(id, Err(Refusal::UnknownKeyId)),
                Err(NotPrepared::Refused(_)) | Ok(_) => self.decrypt(now, id, parts),
            }
        }
    }

    pub(super) fn finish_kms_call(
        &mut self,
        now: Instant,
        purpose: CallPurpose,
        result: Result<TransitResponse, TransitFailure>,
    ) {
        if result.is_ok() {
            // OpenBao answered a real request: an open breaker need not wait out its cooldown.
            self.probes.backend_answered(now);
        }
        match purpose {
            CallPurpose::Probe(_) => {}
            CallPurpose::Encrypt {
                request,
                key_id,
                version,
            } => {
                let response = self.encrypt_response(result, key_id, version);
                self.respond_if_waiting(request, response);
            }
            // Decrypt calls are answered item by item in `calls.rs`.
            CallPurpose::Decrypt { .. } => {}
        }
    }

    fn encrypt_response(
        &self,
        result: Result<TransitResponse, TransitFailure>,
        key_id: KeyId,
        version: KeyVersion,
    ) -> Result<KmsResponse, Refusal> {
        let (ciphertext, returned_version) = match result {
            Ok(TransitResponse::Encrypted {
                ciphertext,
                key_version,
            }) => (ciphertext, key_version),
            Ok(_) => return Err(Refusal::TransitResponseInvalid),
            Err(failure) => {
                return Err(Refusal::Transit {
                    failure,
                    during: TransitStep::Encrypt,
                });
            }
        };
        let parsed = TransitCiphertext::parse(ciphertext.as_bytes())
            .map_err(|_| Refusal::TransitResponseInvalid)?;
        if parsed.version() != version || returned_version != u64::from(version.get()) {
            return Err(Refusal::TransitResponseInvalid);
        }
        let annotations = Annotations::for_encrypt(
            self.config.identity.key_scope(),
            &key_id,
            version,
            &self.config.plugin_version,
        );
        let annotation_bytes: usize = annotations
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum();
        if parsed.len() > limits::MAX_CIPHERTEXT_BYTES
            || annotation_bytes > limits::MAX_ANNOTATIONS_BYTES
        {
            return Err(Refusal::ResponseLimitExceeded);
        }
        Ok(KmsResponse::Encrypted {
            ciphertext: ciphertext.into_bytes(),
            key_id,
            annotations,
        })
    }

    pub(super) fn respond(&mut self, id: RequestId, response: Result<KmsResponse, Refusal>) {
        self.requests.remove(&id);
        self.outputs.push_back(Output::Respond { id, response });
    }

    /// Answers a request that waited on IO, unless it already timed out or was cancelled.
    pub(super) fn respond_if_waiting(
        &mut self,
        id: RequestId,
        response: Result<KmsResponse, Refusal>,
    ) {
        if self.requests.contains_key(&id) {
            self.respond(id, response);
        }
    }

    pub(super) fn forget_request(&mut self, id: RequestId) {
        self.requests.remove(&id);
        self.discovery.waiters.retain(|(waiting, _)| *waiting != id);
    }

    pub(super) fn expire_requests(&mut self, now: Instant) {
        let expired: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, request)| request.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.discovery.waiters.retain(|(waiting, _)| *waiting != id);
            self.respond(id, Err(Refusal::DeadlineExceeded));
        }
    }

    pub(super) fn shut_down(&mut self) {
        self.shutting_down = true;
        let waiting: Vec<RequestId> = self.requests.keys().copied().collect();
        self.discovery.waiters.clear();
        self.decrypts.clear();
        for id in waiting {
            self.respond(id, Err(Refusal::ShuttingDown));
        }
    }

    fn in_flight(&self, method: KmsMethod) -> u32 {
        let count = self
            .requests
            .values()
            .filter(|request| request.method == method)
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    fn limit(&self, method: KmsMethod) -> u32 {
        match method {
            KmsMethod::Status => self.config.concurrency.status,
            KmsMethod::Encrypt => self.config.concurrency.encrypt,
            KmsMethod::Decrypt => self.config.concurrency.decrypt,
        }
    }
}
