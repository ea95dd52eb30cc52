//! Smoke tests of the generated types: prost encoding and the gRPC names.

use std::collections::BTreeMap;

use bao_kms_proto::v2::key_management_service_server::SERVICE_NAME;
use bao_kms_proto::{
    API_VERSION, DecryptRequest, EncryptResponse, HEALTHZ_OK, KeyManagementServiceServer,
    StatusResponse,
};
use prost::Message;
use tonic::server::NamedService;

#[test]
fn encrypt_response_survives_an_encode_decode_roundtrip() {
    let mut annotations = BTreeMap::new();
    annotations.insert("version.bao-kms.example.com".to_owned(), b"1".to_vec());
    annotations.insert("alg.bao-kms.example.com".to_owned(), vec![0, 1, 2, 255]);
    let original = EncryptResponse {
        ciphertext: vec![0xde, 0xad, 0xbe, 0xef, 0x00],
        key_id: "bao-transit/kms-key/7".to_owned(),
        annotations,
    };

    let wire = original.encode_to_vec();
    let decoded = EncryptResponse::decode(wire.as_slice()).expect("decodes");

    assert_eq!(decoded, original);
    assert_eq!(decoded.ciphertext, [0xde, 0xad, 0xbe, 0xef, 0x00]);
    assert_eq!(decoded.key_id, "bao-transit/kms-key/7");
    // BTreeMap: keys come back sorted, independent of insertion order.
    let keys: Vec<&str> = decoded.annotations.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["alg.bao-kms.example.com", "version.bao-kms.example.com"]
    );
    assert_eq!(
        decoded.annotations["alg.bao-kms.example.com"],
        [0, 1, 2, 255]
    );
}

#[test]
fn field_numbers_match_the_upstream_proto() {
    // DecryptRequest { ciphertext = 1; uid = 2; key_id = 3; annotations = 4 }, hand-encoded.
    let wire: &[u8] = &[
        0x0a, 0x02, b'c', b't', // 1: ciphertext, length-delimited
        0x12, 0x01, b'u', // 2: uid
        0x1a, 0x01, b'k', // 3: key_id
        0x22, 0x07, 0x0a, 0x01, b'a', 0x12, 0x02, b'v', b'1', // 4: annotations entry {a: v1}
    ];
    let decoded = DecryptRequest::decode(wire).expect("decodes");
    assert_eq!(decoded.ciphertext, b"ct");
    assert_eq!(decoded.uid, "u");
    assert_eq!(decoded.key_id, "k");
    assert_eq!(
        decoded.annotations.get("a").map(Vec::as_slice),
        Some(&b"v1"[..])
    );
    assert_eq!(decoded.encode_to_vec(), wire);
}

#[test]
fn default_status_response_encodes_to_nothing() {
    assert!(StatusResponse::default().encode_to_vec().is_empty());
    let healthy = StatusResponse {
        version: API_VERSION.to_owned(),
        healthz: HEALTHZ_OK.to_owned(),
        key_id: "k1".to_owned(),
    };
    let decoded = StatusResponse::decode(healthy.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, healthy);
}

#[test]
fn grpc_service_and_method_paths() {
    // tonic exposes the service name but no per-method path constants; the generated server
    // routes on "/{SERVICE_NAME}/{Method}".
    assert_eq!(SERVICE_NAME, "v2.KeyManagementService");
    assert_eq!(
        <KeyManagementServiceServer<()> as NamedService>::NAME,
        SERVICE_NAME
    );
    assert_eq!(
        format!("/{SERVICE_NAME}/Status"),
        "/v2.KeyManagementService/Status"
    );
    assert_eq!(API_VERSION, "v2");
    assert_eq!(HEALTHZ_OK, "ok");
}
