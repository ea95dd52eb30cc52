//! A bounded, allocation-light decoder of kube-apiserver's KMS v2 `EncryptedObject` protobuf.
//!
//! kube-apiserver stores `k8s:enc:kms:v2:<provider>:` followed by this message:
//!
//! ```text
//! message EncryptedObject {
//!   bytes encryptedData = 1;
//!   string keyID = 2;
//!   bytes encryptedDEKSource = 3;
//!   map<string, bytes> annotations = 4;
//!   EncryptedDEKSourceType encryptedDEKSourceType = 5;
//! }
//! ```
//!
//! The scan only needs the key_id and the annotations, so the ciphertext fields are kept as
//! lengths, never copied. Every length is checked against the remaining input before it is
//! used, the annotation count and sizes are capped, and any malformed input is an error value:
//! the decoder cannot panic on etcd content (a fuzz target holds it to that).

use std::collections::BTreeMap;

/// At most this many annotations are accepted (kube-apiserver allows far fewer in practice).
pub const MAX_ANNOTATIONS: usize = 64;
/// The longest key_id accepted; kube-apiserver caps key_ids at 1 KiB.
pub const MAX_KEY_ID_LEN: usize = 1024;
/// The longest annotation key or value accepted (kube-apiserver caps all annotations at 32 KiB).
pub const MAX_ANNOTATION_LEN: usize = 32 * 1024;

/// What a stored `EncryptedObject` says about its key, without its ciphertext.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct EncryptedObjectInfo {
    /// Length of `encryptedData` (the object encrypted with the DEK).
    pub encrypted_data_len: usize,
    /// The key_id the plugin returned from Encrypt.
    pub key_id: String,
    /// Length of `encryptedDEKSource`.
    pub encrypted_dek_source_len: usize,
    /// The annotations the plugin returned from Encrypt.
    pub annotations: BTreeMap<String, Vec<u8>>,
    /// `encryptedDEKSourceType`: 0 is an AES-GCM DEK, 1 a seed for HKDF.
    pub encrypted_dek_source_type: u64,
}

/// Why a value is not a well-formed `EncryptedObject`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The input ends inside a field.
    #[error("truncated")]
    Truncated,
    /// A varint runs past 10 bytes.
    #[error("varint overflow")]
    VarintOverflow,
    /// Field number 0, or a wire type protobuf does not define (or groups, which proto3 lacks).
    #[error("invalid wire type or field number")]
    InvalidTag,
    /// A known field arrives with the wrong wire type.
    #[error("field {0} has the wrong wire type")]
    WrongWireType(u32),
    /// The key_id or an annotation key is not UTF-8.
    #[error("field {0} is not UTF-8")]
    NotUtf8(u32),
    /// A size or count cap is exceeded.
    #[error("field {0} exceeds its limit")]
    TooLarge(u32),
}

const MAX_FIELD_NUMBER: u32 = (1 << 29) - 1;
const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// A cursor over a byte slice; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for index in 0..10 {
            let (&byte, rest) = self.rest.split_first().ok_or(DecodeError::Truncated)?;
            self.rest = rest;
            // The tenth byte may only carry the top bit of a u64.
            if index == 9 && byte > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
        if len > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.varint()?;
        self.take(len)
    }

    /// The next (field number, wire type), or `None` at the end.
    fn tag(&mut self) -> Result<Option<(u32, u8)>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = u32::try_from(tag >> 3).map_err(|_| DecodeError::InvalidTag)?;
        let wire = u8::try_from(tag & 7).map_err(|_| DecodeError::InvalidTag)?;
        // Protobuf field numbers run from 1 to 2^29 - 1.
        if field == 0 || field > MAX_FIELD_NUMBER {
            return Err(DecodeError::InvalidTag);
        }
        Ok(Some((field, wire)))
    }

    /// Skips one value of an unknown field (newer kube-apiservers may add fields).
    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(8).map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_FIXED32 => self.take(4).map(drop),
            _ => Err(DecodeError::InvalidTag),
        }
    }
}

fn expect(field: u32, wire: u8, wanted: u8) -> Result<(), DecodeError> {
    if wire == wanted {
        Ok(())
    } else {
        Err(DecodeError::WrongWireType(field))
    }
}

/// Decodes the bytes after the `k8s:enc:kms:v2:<provider>:` prefix.
///
/// Protobuf semantics: a repeated scalar field keeps its last value, a repeated map key keeps
/// its last value, unknown fields are skipped.
///
/// # Errors
/// [`DecodeError`] for truncated, malformed or oversized input.
pub fn decode(input: &[u8]) -> Result<EncryptedObjectInfo, DecodeError> {
    let mut reader = Reader { rest: input };
    let mut info = EncryptedObjectInfo::default();
    while let Some((field, wire)) = reader.tag()? {
        match field {
            1 => {
                expect(field, wire, WIRE_LEN)?;
                info.encrypted_data_len = reader.bytes()?.len();
            }
            2 => {
                expect(field, wire, WIRE_LEN)?;
                let raw = reader.bytes()?;
                if raw.len() > MAX_KEY_ID_LEN {
                    return Err(DecodeError::TooLarge(field));
                }
                info.key_id = std::str::from_utf8(raw)
                    .map_err(|_| DecodeError::NotUtf8(field))?
                    .to_owned();
            }
            3 => {
                expect(field, wire, WIRE_LEN)?;
                info.encrypted_dek_source_len = reader.bytes()?.len();
            }
            4 => {
                expect(field, wire, WIRE_LEN)?;
                let (key, value) = map_entry(reader.bytes()?)?;
                info.annotations.insert(key, value);
                if info.annotations.len() > MAX_ANNOTATIONS {
                    return Err(DecodeError::TooLarge(field));
                }
            }
            5 => {
                expect(field, wire, WIRE_VARINT)?;
                info.encrypted_dek_source_type = reader.varint()?;
            }
            _ => reader.skip(wire)?,
        }
    }
    Ok(info)
}

/// One `map<string, bytes>` entry: field 1 the key, field 2 the value (both may be absent).
/// Every occurrence of a field is checked, not only the last one that wins: a repeated key
/// that is not UTF-8 is refused, as protobuf decoders refuse it.
fn map_entry(entry: &[u8]) -> Result<(String, Vec<u8>), DecodeError> {
    let mut reader = Reader { rest: entry };
    let mut key = "";
    let mut value: &[u8] = &[];
    while let Some((field, wire)) = reader.tag()? {
        match field {
            1 => {
                expect(4, wire, WIRE_LEN)?;
                let raw = reader.bytes()?;
                if raw.len() > MAX_ANNOTATION_LEN {
                    return Err(DecodeError::TooLarge(4));
                }
                key = std::str::from_utf8(raw).map_err(|_| DecodeError::NotUtf8(4))?;
            }
            2 => {
                expect(4, wire, WIRE_LEN)?;
                value = reader.bytes()?;
                if value.len() > MAX_ANNOTATION_LEN {
                    return Err(DecodeError::TooLarge(4));
                }
            }
            _ => reader.skip(wire)?,
        }
    }
    Ok((key.to_owned(), value.to_vec()))
}

/// Encodes an `EncryptedObject` (tests, seeds and the scan's own round-trip checks).
pub fn encode(
    encrypted_data: &[u8],
    key_id: &str,
    encrypted_dek_source: &[u8],
    annotations: &BTreeMap<String, Vec<u8>>,
    encrypted_dek_source_type: u64,
) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut value: u64) {
        while value >= 0x80 {
            out.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }
    fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        varint(out, (number << 3) | u64::from(WIRE_LEN));
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut out = Vec::new();
    field(&mut out, 1, encrypted_data);
    field(&mut out, 2, key_id.as_bytes());
    field(&mut out, 3, encrypted_dek_source);
    for (key, value) in annotations {
        let mut entry = Vec::new();
        field(&mut entry, 1, key.as_bytes());
        field(&mut entry, 2, value);
        field(&mut out, 4, &entry);
    }
    if encrypted_dek_source_type != 0 {
        varint(&mut out, 5 << 3);
        varint(&mut out, encrypted_dek_source_type);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Vec<u8> {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            "transit-key-version.kms.openbao.org".to_owned(),
            b"2".to_vec(),
        );
        annotations.insert("provider.kms.openbao.org".to_owned(), b"openbao".to_vec());
        encode(b"ciphertext", "obk2.key", b"dek", &annotations, 1)
    }

    #[test]
    fn a_well_formed_object_decodes_to_its_key_id_annotations_and_lengths() {
        let info = decode(&sample()).unwrap();
        assert_eq!(info.key_id, "obk2.key");
        assert_eq!(info.encrypted_data_len, 10);
        assert_eq!(info.encrypted_dek_source_len, 3);
        assert_eq!(info.encrypted_dek_source_type, 1);
        assert_eq!(
            info.annotations["transit-key-version.kms.openbao.org"],
            b"2"
        );
        assert_eq!(info.annotations.len(), 2);
    }

    #[test]
    fn every_truncation_of_a_valid_object_is_an_error_or_a_shorter_valid_prefix() {
        let bytes = sample();
        for end in 0..bytes.len() {
            // A cut exactly between fields is a valid (shorter) message; anywhere else it is
            // an error, never a panic.
            if let Ok(info) = decode(&bytes[..end]) {
                assert!(info.annotations.len() <= 2);
            }
        }
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn malformed_tags_lengths_and_types_are_refused() {
        // Field number 0.
        assert_eq!(decode(&[0x02, 0x00]), Err(DecodeError::InvalidTag));
        // Field number 2^29, one past the largest protobuf allows (tag varint 0x80 0x80 0x80 0x80 0x10).
        assert_eq!(
            decode(&[0x80, 0x80, 0x80, 0x80, 0x10, 0x00]),
            Err(DecodeError::InvalidTag)
        );
        // Group wire type (3) on an unknown field; on a known field it is the wrong type.
        assert_eq!(decode(&[0x33]), Err(DecodeError::InvalidTag));
        assert_eq!(decode(&[0x0b]), Err(DecodeError::WrongWireType(1)));
        // keyID as a varint.
        assert_eq!(decode(&[0x10, 0x01]), Err(DecodeError::WrongWireType(2)));
        // A length past the end.
        assert_eq!(decode(&[0x12, 0x05, b'a']), Err(DecodeError::Truncated));
        // A huge length does not allocate or overflow.
        let mut huge = vec![0x0a];
        huge.extend([0xff; 9]);
        huge.push(0x01);
        assert_eq!(decode(&huge), Err(DecodeError::Truncated));
        // An eleven-byte varint.
        let mut long = vec![0x28];
        long.extend([0xff; 10]);
        assert_eq!(decode(&long), Err(DecodeError::VarintOverflow));
        // A key_id that is not UTF-8.
        assert_eq!(decode(&[0x12, 0x01, 0xff]), Err(DecodeError::NotUtf8(2)));
        // An annotation key given twice, first not UTF-8: refused although the second is.
        assert_eq!(
            decode(&[0x22, 0x06, 0x0a, 0x01, 0xff, 0x0a, 0x01, b'k']),
            Err(DecodeError::NotUtf8(4))
        );
    }

    #[test]
    fn unknown_fields_are_skipped_and_caps_hold() {
        let mut bytes = sample();
        bytes.extend([0x30, 0x07, 0x3d, 1, 2, 3, 4, 0x39, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(decode(&bytes).unwrap().key_id, "obk2.key");

        let long = "k".repeat(MAX_KEY_ID_LEN + 1);
        let bytes = encode(b"", &long, b"", &BTreeMap::new(), 0);
        assert_eq!(decode(&bytes), Err(DecodeError::TooLarge(2)));

        let many: BTreeMap<String, Vec<u8>> = (0..=MAX_ANNOTATIONS)
            .map(|n| (format!("a{n}"), Vec::new()))
            .collect();
        let bytes = encode(b"", "k", b"", &many, 0);
        assert_eq!(decode(&bytes), Err(DecodeError::TooLarge(4)));
    }
}
