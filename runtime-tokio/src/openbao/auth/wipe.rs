//! Wiping secrets from memory once they are no longer needed.
//!
//! JSON bodies exchanged with OpenBao carry tokens, secret ids, JWTs and base64 plaintext.
//! [`WipedJson`] owns such a body and overwrites every string in it with zeros when dropped;
//! credential strings are held in [`zeroize::Zeroizing`]. This narrows the window in which a
//! secret sits in freed heap memory (a later core dump is already prevented by
//! `PR_SET_DUMPABLE=0`); copies made inside the TLS stack are out of reach.

use std::ops::{Deref, DerefMut};

use serde_json::Value;
use zeroize::Zeroize as _;

/// Overwrites every string of `value` (keys excepted: they are field names) with zeros and
/// leaves it empty.
pub fn wipe_json(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe_json),
        Value::Object(fields) => fields.values_mut().for_each(wipe_json),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A JSON body whose strings are wiped when it is dropped.
#[derive(Default)]
pub struct WipedJson(Value);

impl WipedJson {
    /// Takes ownership of `value`.
    pub fn new(value: Value) -> Self {
        Self(value)
    }
}

impl From<Value> for WipedJson {
    fn from(value: Value) -> Self {
        Self(value)
    }
}

impl Deref for WipedJson {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

impl DerefMut for WipedJson {
    fn deref_mut(&mut self) -> &mut Value {
        &mut self.0
    }
}

impl Drop for WipedJson {
    fn drop(&mut self) {
        wipe_json(&mut self.0);
    }
}

impl std::fmt::Debug for WipedJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WipedJson(..)")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn wiping_empties_every_string_at_any_depth_and_keeps_the_shape() {
        let mut body = json!({
            "auth": {"client_token": "s.secret", "policies": ["a", "b"], "lease_duration": 60},
            "plaintext": "aGk=",
        });
        wipe_json(&mut body);
        assert_eq!(
            body,
            json!({"auth": {"client_token": "", "policies": ["", ""], "lease_duration": 60},
                   "plaintext": ""})
        );
    }

    #[test]
    fn the_wrapper_reads_like_the_value_and_debug_shows_nothing() {
        let body = WipedJson::new(json!({"secret_id": "abc"}));
        assert_eq!(body.get("secret_id").and_then(Value::as_str), Some("abc"));
        assert_eq!(format!("{body:?}"), "WipedJson(..)");
    }
}
