//! The KMS v2 gRPC service: converts messages, forwards them to the driver, maps refusals.
//!
//! No request logic lives here. Every field is handed to the core as plain data, the core
//! validates and decides, and [`status_for`] is the one place a refusal becomes a gRPC status.

pub mod authority;

use std::time::Duration;

use bao_kms_core::grpc_timeout::parse_grpc_timeout;
use bao_kms_core::provider::KmsMethod;
use bao_kms_core::refusal::TransitStep;
use bao_kms_core::transit::FailureClass;
use bao_kms_core::{KmsRequest, KmsResponse, Plaintext, Refusal};
use bao_kms_proto::{
    DecryptRequest, DecryptResponse, EncryptRequest, EncryptResponse, KeyManagementService,
    StatusRequest, StatusResponse,
};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use crate::clock;
use crate::driver::DriverHandle;

/// Observes every finished RPC (metrics and the `kms.request` log line).
pub trait RpcObserver: Send + Sync + 'static {
    /// One RPC finished with `code`; `class` is the refusal's error class when refused.
    fn rpc_finished(
        &self,
        method: KmsMethod,
        code: Code,
        class: Option<&'static str>,
        elapsed: Duration,
    );
}

/// The KMS v2 service.
pub struct KmsService {
    driver: DriverHandle,
    request_timeout: Duration,
    observer: std::sync::Arc<dyn RpcObserver>,
}

impl KmsService {
    /// A service forwarding to `driver`; each request gets `request_timeout` to complete.
    pub fn new(
        driver: DriverHandle,
        request_timeout: Duration,
        observer: std::sync::Arc<dyn RpcObserver>,
    ) -> Self {
        Self {
            driver,
            request_timeout,
            observer,
        }
    }

    /// Hands a request to the driver with the caller's deadline (its `grpc-timeout`, when it
    /// sent one; the core caps it at `openbao.timeout`) and words the answer.
    async fn forward(
        &self,
        request: KmsRequest,
        metadata: &MetadataMap,
    ) -> Result<KmsResponse, Status> {
        let method = request.method();
        let started = clock::now();
        let caller_timeout = metadata
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(parse_grpc_timeout)
            .unwrap_or(self.request_timeout);
        let deadline = started + caller_timeout;
        let answer = self.driver.submit(request, deadline).await;
        let elapsed = clock::now().saturating_duration_since(started);
        self.finish(method, answer, elapsed)
    }

    fn finish(
        &self,
        method: KmsMethod,
        answer: Result<KmsResponse, Refusal>,
        elapsed: Duration,
    ) -> Result<KmsResponse, Status> {
        match answer {
            Ok(response) => {
                self.observer.rpc_finished(method, Code::Ok, None, elapsed);
                Ok(response)
            }
            Err(refusal) => {
                let status = status_for(&refusal);
                self.observer
                    .rpc_finished(method, status.code(), Some(refusal.class()), elapsed);
                Err(status)
            }
        }
    }
}

#[tonic::async_trait]
impl KeyManagementService for KmsService {
    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        // kube-apiserver polls Status often and every /readyz hits it: while the core's view is
        // current, the answer comes from the published snapshot without a driver round trip.
        let started = clock::now();
        let answer = match self.driver.status_from_snapshot(started) {
            Some(key_id) => {
                let elapsed = clock::now().saturating_duration_since(started);
                self.finish(
                    KmsMethod::Status,
                    Ok(KmsResponse::Status { key_id }),
                    elapsed,
                )?
            }
            None => self.forward(KmsRequest::Status, request.metadata()).await?,
        };
        let KmsResponse::Status { key_id } = answer else {
            return Err(Status::internal("kms request failed"));
        };
        let (healthz, key_id) = match key_id {
            Some(key_id) => (bao_kms_proto::HEALTHZ_OK.to_owned(), key_id.to_string()),
            // An empty key_id on purpose: kube-apiserver keeps extending an unchanged key_id's
            // write lease even when healthz is not ok, so an unhealthy answer must not carry one.
            None => ("unhealthy".to_owned(), String::new()),
        };
        Ok(Response::new(StatusResponse {
            version: bao_kms_proto::API_VERSION.to_owned(),
            healthz,
            key_id,
        }))
    }

    async fn decrypt(
        &self,
        request: Request<DecryptRequest>,
    ) -> Result<Response<DecryptResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let DecryptRequest {
            ciphertext,
            uid: _,
            key_id,
            annotations,
        } = message;
        let decrypt = KmsRequest::Decrypt {
            ciphertext,
            key_id,
            annotations,
        };
        let answer = self.forward(decrypt, &metadata).await?;
        let KmsResponse::Decrypted { plaintext } = answer else {
            return Err(Status::internal("kms request failed"));
        };
        Ok(Response::new(DecryptResponse {
            plaintext: plaintext.expose().to_vec(),
        }))
    }

    async fn encrypt(
        &self,
        request: Request<EncryptRequest>,
    ) -> Result<Response<EncryptResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        let EncryptRequest { plaintext, uid: _ } = message;
        let plaintext = Plaintext::new(plaintext);
        let answer = self
            .forward(KmsRequest::Encrypt { plaintext }, &metadata)
            .await?;
        let KmsResponse::Encrypted {
            ciphertext,
            key_id,
            annotations,
        } = answer
        else {
            return Err(Status::internal("kms request failed"));
        };
        Ok(Response::new(EncryptResponse {
            ciphertext,
            key_id: key_id.to_string(),
            annotations,
        }))
    }
}

/// The single mapping from a core refusal to a gRPC status. Messages are the core's fixed
/// texts: no secrets, paths, key names or backend errors.
pub fn status_for(refusal: &Refusal) -> Status {
    let code = match refusal {
        Refusal::DeadlineExceeded => Code::DeadlineExceeded,
        Refusal::ShuttingDown | Refusal::KeyMetadataRefreshFailed => Code::Unavailable,
        Refusal::PlaintextRequired
        | Refusal::PlaintextTooLarge
        | Refusal::CiphertextRequired
        | Refusal::RequestLimitExceeded
        | Refusal::KeyIdMalformed
        | Refusal::AnnotationsInvalid
        | Refusal::AnnotationMismatch
        | Refusal::CiphertextMalformed => Code::InvalidArgument,
        Refusal::ResponseLimitExceeded | Refusal::TransitResponseInvalid => Code::Internal,
        Refusal::ConcurrencyLimit => Code::ResourceExhausted,
        Refusal::UnknownKeyId => Code::NotFound,
        Refusal::StatusUnhealthy | Refusal::ActiveKeyUnavailable => Code::FailedPrecondition,
        Refusal::Transit { failure, during } => transit_code(failure.class, *during),
    };
    Status::new(code, refusal.message())
}

fn transit_code(class: FailureClass, _during: TransitStep) -> Code {
    match class {
        FailureClass::Unauthenticated | FailureClass::AuthFailed => Code::Unauthenticated,
        FailureClass::PermissionDenied => Code::PermissionDenied,
        FailureClass::NotFound => Code::NotFound,
        FailureClass::InvalidRequest
        | FailureClass::DecryptFailed
        | FailureClass::VersionDisallowed => Code::InvalidArgument,
        FailureClass::RateLimited => Code::ResourceExhausted,
        FailureClass::Timeout => Code::DeadlineExceeded,
        FailureClass::Sealed
        | FailureClass::Unavailable
        | FailureClass::TlsFailed
        | FailureClass::DnsFailed
        | FailureClass::ConnectionFailed => Code::Unavailable,
    }
}

/// The snake_case name of a gRPC code, as used in metric labels.
pub fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}
