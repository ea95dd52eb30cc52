//! The Transit call path: call slots, decrypt batches, retries and abandoned calls.
//!
//! Every Transit call the core asks for is tracked here from the moment it is handed out until
//! its answer is used, it is given up, or nobody waits for it any more. The rules:
//! - a call's deadline is the latest deadline of the requests it serves (never later than
//!   `openbao.timeout` from when it was made), and the runtime gives the HTTP client only the time
//!   that is left;
//! - a transient failure is retried with jittered backoff while the deadline allows
//!   ([`super::retry`]);
//! - a call whose requests all expired or were cancelled is dropped at once: if it waits for a
//!   retry it is never sent again, and if it is in flight its slot is free for the next call.

use std::time::{Duration, Instant};

use super::batch::CoalesceKey;
use super::io::{Event, KmsResponse, Output, RequestId};
use super::kms::CallPurpose;
use super::retry::RetryVerdict;
use super::{CallId, Provider};
use crate::refusal::{Refusal, TransitStep};
use crate::transit::{
    BatchDecryptItem, FailureClass, TransitFailure, TransitRequest, TransitResponse,
};

/// Least time worth starting an attempt with: a retry that would leave less before the deadline
/// is not made.
const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(10);

/// One Transit call in flight (or waiting to be sent again) and what it is for.
#[derive(Debug)]
pub(super) struct Call {
    pub(super) deadline: Instant,
    pub(super) purpose: CallPurpose,
    /// Kept for retries: every call the core makes is idempotent.
    request: TransitRequest,
    /// Attempts made so far, the first included.
    attempt: u32,
    /// Set while the call waits out a backoff before its next attempt.
    retry_at: Option<Instant>,
}

/// One distinct item of an in-flight Decrypt call.
#[derive(Clone, Debug)]
pub(super) struct InFlightDecrypt {
    pub(super) key: CoalesceKey,
    pub(super) waiters: Vec<RequestId>,
}

impl Provider {
    /// Hands a call to the runtime and tracks it.
    pub(super) fn call(
        &mut self,
        deadline: Instant,
        request: TransitRequest,
        purpose: CallPurpose,
    ) -> CallId {
        let call = self.next_call_id();
        self.outputs.push_back(Output::CallTransit {
            call,
            deadline,
            request: request.clone(),
        });
        self.calls.insert(
            call,
            Call {
                deadline,
                purpose,
                request,
                attempt: 1,
                retry_at: None,
            },
        );
        call
    }

    /// A call finished: retry it if the failure is transient and time allows, else use the
    /// answer. Unknown ids (late answers of given-up calls) are ignored.
    pub(super) fn handle_transit(
        &mut self,
        now: Instant,
        id: CallId,
        result: Result<TransitResponse, TransitFailure>,
        wall_clock_unix: i64,
    ) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.retry_at.is_some() {
            // Waiting for its next attempt: no attempt is out, so this cannot be its answer.
            return;
        }
        if let Err(failure) = &result {
            let jitter = self.jitter.next_u32();
            let verdict = self.retry.after_failure(
                now,
                call.deadline,
                call.attempt,
                failure,
                jitter,
                MIN_ATTEMPT_TIME,
            );
            let operation = call.request.operation();
            match verdict {
                RetryVerdict::RetryAt(at) => {
                    call.retry_at = Some(at);
                    let class = failure.class;
                    self.event(Event::TransitRetried { operation, class });
                    return;
                }
                RetryVerdict::GiveUp => {
                    let class = failure.class;
                    self.event(Event::TransitRetriesExhausted { operation, class });
                }
                RetryVerdict::Final => {}
            }
        }
        let Some(finished) = self.calls.remove(&id) else {
            return;
        };
        match finished.purpose {
            CallPurpose::Probe(step) => self.continue_probe(now, step, result, wall_clock_unix),
            CallPurpose::Decrypt { items } => self.finish_decrypt(now, items, result),
            other @ CallPurpose::Encrypt { .. } => self.finish_kms_call(now, other, result),
        }
    }

    /// Sends again the calls whose backoff has passed.
    pub(super) fn resend_due_retries(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (id, call) in &mut self.calls {
            if call.retry_at.is_some_and(|at| at <= now) {
                call.retry_at = None;
                call.attempt += 1;
                due.push(Output::CallTransit {
                    call: *id,
                    deadline: call.deadline,
                    request: call.request.clone(),
                });
            }
        }
        self.outputs.extend(due);
    }

    /// When the next backoff ends.
    pub(super) fn retry_deadlines(&self) -> impl Iterator<Item = Instant> + '_ {
        self.calls.values().filter_map(|call| call.retry_at)
    }

    /// Gives up on calls whose deadline passed; late answers for them are ignored.
    pub(super) fn expire_calls(&mut self, now: Instant) {
        let expired: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, call)| call.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(call) = self.calls.get_mut(&id) {
                // A call that was waiting for a retry has no attempt out; the timeout is final.
                call.retry_at = None;
                call.attempt = self.retry.max_attempts;
            }
            let timeout = Err(TransitFailure::new(FailureClass::Timeout));
            self.handle_transit(now, id, timeout, self.wall_clock_unix);
        }
    }

    /// Queues a prepared Decrypt behind identical ones (queued or in flight) or as a new item.
    pub(super) fn enqueue_decrypt(
        &mut self,
        id: RequestId,
        key: CoalesceKey,
        item: BatchDecryptItem,
    ) {
        if let Some(call) = self.in_flight_decrypts.get(&key).copied()
            && let Some(Call {
                purpose: CallPurpose::Decrypt { items },
                ..
            }) = self.calls.get_mut(&call)
            && let Some(shared) = items.iter_mut().find(|shared| shared.key == key)
        {
            shared.waiters.push(id);
            return;
        }
        if self.decrypts.join(&key, id) {
            return;
        }
        self.decrypts.push(key, item, id);
    }

    /// Starts Decrypt calls while slots are free: one item alone, several as a batch.
    pub(super) fn dispatch_decrypts(&mut self, now: Instant) {
        while let Some(items) = self.decrypts.next_call() {
            let latest = items
                .iter()
                .flat_map(|item| item.waiters.iter())
                .filter_map(|id| self.requests.get(id).map(|request| request.deadline))
                .max()
                .unwrap_or(now);
            let deadline = latest.min(now + self.config.request_timeout);
            let in_flight: Vec<InFlightDecrypt> = items
                .iter()
                .map(|item| InFlightDecrypt {
                    key: item.key.clone(),
                    waiters: item.waiters.clone(),
                })
                .collect();
            let mut transit_items: Vec<_> = items.into_iter().map(|item| item.item).collect();
            let request = if transit_items.len() == 1 {
                let single = transit_items.remove(0);
                TransitRequest::Decrypt {
                    ciphertext: single.ciphertext,
                    associated_data: single.associated_data,
                }
            } else {
                TransitRequest::BatchDecrypt {
                    items: transit_items,
                }
            };
            let keys: Vec<CoalesceKey> = in_flight.iter().map(|item| item.key.clone()).collect();
            let call = self.call(deadline, request, CallPurpose::Decrypt { items: in_flight });
            for key in keys {
                self.in_flight_decrypts.insert(key, call);
            }
        }
    }

    /// Drops waiters that were answered (deadline) or cancelled, and calls nobody waits for.
    pub(super) fn drop_abandoned(&mut self) {
        let requests = &self.requests;
        self.decrypts
            .retain_waiters(|id| requests.contains_key(&id));
        let abandoned: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, call)| match &call.purpose {
                CallPurpose::Decrypt { items } => items
                    .iter()
                    .flat_map(|item| item.waiters.iter())
                    .all(|id| !requests.contains_key(id)),
                CallPurpose::Encrypt { request, .. } => !requests.contains_key(request),
                CallPurpose::Probe(_) => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in abandoned {
            if let Some(Call {
                purpose: CallPurpose::Decrypt { items },
                ..
            }) = self.calls.remove(&id)
            {
                self.release_decrypt_slot(&items);
            }
        }
    }

    fn release_decrypt_slot(&mut self, items: &[InFlightDecrypt]) {
        for item in items {
            self.in_flight_decrypts.remove(&item.key);
        }
        self.decrypts.call_finished();
    }

    /// Answers every waiter of a finished Decrypt call, item by item: a tampered item fails
    /// alone.
    fn finish_decrypt(
        &mut self,
        now: Instant,
        items: Vec<InFlightDecrypt>,
        result: Result<TransitResponse, TransitFailure>,
    ) {
        self.release_decrypt_slot(&items);
        if result.is_ok() {
            self.probes.backend_answered(now);
        }
        let transit_refusal = |failure| Refusal::Transit {
            failure,
            during: TransitStep::Decrypt,
        };
        let answers: Vec<Result<KmsResponse, Refusal>> = match result {
            Ok(TransitResponse::Decrypted { plaintext }) if items.len() == 1 => {
                vec![Ok(KmsResponse::Decrypted { plaintext })]
            }
            Ok(TransitResponse::BatchDecrypted { results }) if results.len() == items.len() => {
                results
                    .into_iter()
                    .map(|result| {
                        result
                            .map(|plaintext| KmsResponse::Decrypted { plaintext })
                            .map_err(transit_refusal)
                    })
                    .collect()
            }
            Ok(_) => vec![Err(Refusal::TransitResponseInvalid); items.len()],
            Err(failure) => vec![Err(transit_refusal(failure)); items.len()],
        };
        for (item, answer) in items.into_iter().zip(answers) {
            for id in item.waiters {
                self.respond_if_waiting(id, answer.clone());
            }
        }
    }
}
