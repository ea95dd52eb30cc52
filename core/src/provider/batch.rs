//! Decrypts waiting for a Transit call slot, and how they are grouped into calls.
//!
//! The rule is adaptive and adds no latency when the plugin is idle: a Decrypt goes to Transit at
//! once while a call slot is free. When every slot is busy, Decrypts queue here, and the next
//! free slot takes up to `max_items` of them, oldest first, as one `batch_input` call. So batches
//! form exactly when calls are already in flight, and their size follows the load. Identical
//! requests (same ciphertext and AAD) share one item, whether it is queued or in flight.

use std::collections::{BTreeSet, VecDeque};

use crate::transit::BatchDecryptItem;

use super::io::RequestId;

/// What makes two Decrypts identical: the ciphertext text and the base64 AAD.
pub(super) type CoalesceKey = (String, String);

/// One distinct Decrypt and every request waiting for it.
#[derive(Clone, Debug)]
pub(super) struct DecryptItem {
    pub(super) key: CoalesceKey,
    pub(super) item: BatchDecryptItem,
    pub(super) waiters: Vec<RequestId>,
}

/// The queue of Decrypts waiting for a call slot, and the count of slots in use.
#[derive(Debug)]
pub(super) struct DecryptQueue {
    waiting: VecDeque<DecryptItem>,
    /// The keys in `waiting`: in a storm of distinct Decrypts almost every lookup misses, and
    /// this answers a miss without comparing long ciphertexts item by item.
    keys: BTreeSet<CoalesceKey>,
    calls_in_flight: u32,
    max_items: usize,
    max_calls: u32,
}

impl DecryptQueue {
    /// A queue that allows `max_calls` Decrypt calls in flight, each with at most `max_items`
    /// items (both at least 1).
    pub(super) fn new(max_items: u32, max_calls: u32) -> Self {
        Self {
            waiting: VecDeque::new(),
            keys: BTreeSet::new(),
            calls_in_flight: 0,
            max_items: usize::try_from(max_items.max(1)).unwrap_or(usize::MAX),
            max_calls: max_calls.max(1),
        }
    }

    /// Adds `request` to the queued item with the same key, if there is one.
    pub(super) fn join(&mut self, key: &CoalesceKey, request: RequestId) -> bool {
        if !self.keys.contains(key) {
            return false;
        }
        match self.waiting.iter_mut().find(|queued| &queued.key == key) {
            Some(queued) => {
                queued.waiters.push(request);
                true
            }
            None => false,
        }
    }

    /// Queues a new distinct Decrypt.
    pub(super) fn push(&mut self, key: CoalesceKey, item: BatchDecryptItem, request: RequestId) {
        self.keys.insert(key.clone());
        self.waiting.push_back(DecryptItem {
            key,
            item,
            waiters: vec![request],
        });
    }

    /// The items of the next call, when a slot is free and something waits. The caller must
    /// report the call's end with [`Self::call_finished`].
    pub(super) fn next_call(&mut self) -> Option<Vec<DecryptItem>> {
        if self.calls_in_flight >= self.max_calls || self.waiting.is_empty() {
            return None;
        }
        let take = self.waiting.len().min(self.max_items);
        self.calls_in_flight += 1;
        let items: Vec<DecryptItem> = self.waiting.drain(..take).collect();
        for item in &items {
            self.keys.remove(&item.key);
        }
        Some(items)
    }

    /// A call taken with [`Self::next_call`] ended (answered, given up or abandoned).
    pub(super) fn call_finished(&mut self) {
        self.calls_in_flight = self.calls_in_flight.saturating_sub(1);
    }

    /// Keeps only the waiters `still_waiting` accepts; an item nobody waits for any more is
    /// dropped, so it is never sent.
    pub(super) fn retain_waiters(&mut self, still_waiting: impl Fn(RequestId) -> bool) {
        for queued in &mut self.waiting {
            queued.waiters.retain(|id| still_waiting(*id));
        }
        let keys = &mut self.keys;
        self.waiting.retain(|queued| {
            let keep = !queued.waiters.is_empty();
            if !keep {
                keys.remove(&queued.key);
            }
            keep
        });
    }

    /// Requests waiting in the queue (not in flight).
    #[cfg(test)]
    pub(super) fn queued_requests(&self) -> usize {
        self.waiting.iter().map(|queued| queued.waiters.len()).sum()
    }

    /// Drops everything queued (shutdown); in-flight calls are unaffected.
    pub(super) fn clear(&mut self) {
        self.waiting.clear();
        self.keys.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ciphertext::TransitCiphertext;

    /// A distinct, well-formed ciphertext per `n` (30 bytes of base64: 40 characters, where
    /// any last character is canonical).
    fn item(n: u8) -> (CoalesceKey, BatchDecryptItem) {
        let text = format!("vault:v1:{}{}", "A".repeat(39), char::from(b'A' + n));
        let ciphertext = TransitCiphertext::parse(text.as_bytes()).unwrap();
        let key = (text, "aad".to_owned());
        (
            key,
            BatchDecryptItem {
                ciphertext,
                associated_data: "aad".into(),
            },
        )
    }

    #[test]
    fn a_lone_decrypt_takes_a_free_slot_at_once() {
        let mut queue = DecryptQueue::new(64, 2);
        let (key, decrypt) = item(1);
        queue.push(key, decrypt, RequestId(1));
        let call = queue.next_call().unwrap();
        assert_eq!(call.len(), 1);
        assert!(queue.next_call().is_none(), "nothing else waits");
    }

    #[test]
    fn decrypts_that_wait_for_a_slot_leave_together_bounded_by_max_items() {
        let mut queue = DecryptQueue::new(3, 1);
        let (key, decrypt) = item(0);
        queue.push(key, decrypt, RequestId(0));
        assert_eq!(queue.next_call().unwrap().len(), 1);
        for n in 1..=5 {
            let (key, decrypt) = item(n);
            queue.push(key, decrypt, RequestId(u64::from(n)));
        }
        assert!(queue.next_call().is_none(), "the only slot is busy");
        queue.call_finished();
        let batch = queue.next_call().unwrap();
        let ids: Vec<u64> = batch.iter().map(|queued| queued.waiters[0].0).collect();
        assert_eq!(ids, [1, 2, 3], "oldest first, at most max_items");
        queue.call_finished();
        assert_eq!(queue.next_call().unwrap().len(), 2);
    }

    #[test]
    fn identical_decrypts_share_one_item() {
        let mut queue = DecryptQueue::new(8, 1);
        let (key, decrypt) = item(1);
        queue.push(key.clone(), decrypt.clone(), RequestId(1));
        let _busy = queue.next_call().unwrap();
        queue.push(key.clone(), decrypt, RequestId(2));
        assert!(queue.join(&key, RequestId(3)));
        assert!(!queue.join(&item(9).0, RequestId(4)));
        queue.call_finished();
        let batch = queue.next_call().unwrap();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].waiters, [RequestId(2), RequestId(3)]);
    }

    #[test]
    fn an_item_nobody_waits_for_is_never_sent() {
        let mut queue = DecryptQueue::new(8, 1);
        let _busy = {
            let (key, decrypt) = item(0);
            queue.push(key, decrypt, RequestId(0));
            queue.next_call().unwrap()
        };
        for n in 1..=3 {
            let (key, decrypt) = item(n);
            queue.push(key, decrypt, RequestId(u64::from(n)));
        }
        queue.retain_waiters(|id| id != RequestId(2));
        assert_eq!(queue.queued_requests(), 2);
        queue.call_finished();
        let batch = queue.next_call().unwrap();
        let ids: Vec<u64> = batch.iter().map(|queued| queued.waiters[0].0).collect();
        assert_eq!(ids, [1, 3]);
    }
}
