#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use bao_kms_core::storage_scan::encrypted_object;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

/// A stand-in for etcd's JSON gateway: answers `POST /v3/kv/range` from `store`, records every
/// request body, and closes each connection after one answer.
fn fake_etcd(
    store: BTreeMap<Vec<u8>, Vec<u8>>,
    requests: usize,
) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let start = STANDARD.decode(request["key"].as_str().unwrap()).unwrap();
            let end = STANDARD
                .decode(request["range_end"].as_str().unwrap())
                .unwrap();
            let limit: usize = request["limit"].as_str().unwrap().parse().unwrap();
            log.lock().unwrap().push(request);
            let matching: Vec<_> = store.range(start..end).collect();
            let kvs: Vec<serde_json::Value> = matching
                .iter()
                .take(limit)
                .map(|(key, value)| {
                    serde_json::json!({"key": STANDARD.encode(key), "value": STANDARD.encode(value)})
                })
                .collect();
            let answer = serde_json::json!({
                "header": {"revision": "77"},
                "kvs": kvs,
                "more": matching.len() > limit,
                "count": matching.len().to_string(),
            })
            .to_string();
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{answer}",
                answer.len()
            )
            .unwrap();
        }
    });
    (format!("http://127.0.0.1:{port}"), seen)
}

fn kms_value(key_id: &str) -> Vec<u8> {
    let mut value = b"k8s:enc:kms:v2:bao-kms:".to_vec();
    value.extend(encrypted_object::encode(
        b"x",
        key_id,
        b"d",
        &BTreeMap::new(),
        1,
    ));
    value
}

#[test]
fn a_paginated_scan_reads_every_key_under_the_prefix_once_at_one_revision() {
    let mut store = BTreeMap::new();
    for n in 0..7 {
        store.insert(
            format!("/registry/secrets/ns/s{n}").into_bytes(),
            kms_value("key-a"),
        );
    }
    for n in 0..3 {
        store.insert(
            format!("/registry/configmaps/ns/c{n}").into_bytes(),
            b"k8s\x00cm".to_vec(),
        );
    }
    // Outside the prefix: never counted.
    store.insert(b"/registrx".to_vec(), b"k8s\x00".to_vec());
    store.insert(b"/other/x".to_vec(), b"k8s\x00".to_vec());
    let (endpoint, seen) = fake_etcd(store, 4);
    let gateway = Gateway::new(&EtcdSettings {
        endpoint,
        ca: None,
        cert: None,
        key: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let mut tally = Tally::new("/registry/", "bao-kms");
    let pacing = Pacing {
        page_size: 4,
        rate_limit: 0,
        progress: false,
    };
    let stats = scan(&gateway, b"/registry/", &pacing, &mut tally).unwrap();
    assert_eq!(stats.objects, 10);
    assert_eq!(stats.revision, 77);
    let summary = ScanSummary::build(&tally, None, 0, true);
    assert_eq!(summary.objects, 10);
    let secrets = summary
        .resources
        .iter()
        .find(|r| r.resource == "secrets")
        .unwrap();
    assert_eq!(secrets.kinds["kms-v2"], 7);
    let configmaps = summary
        .resources
        .iter()
        .find(|r| r.resource == "configmaps")
        .unwrap();
    assert_eq!(configmaps.kinds["identity"], 3);
    assert_eq!(summary.versions.len(), 1);
    assert_eq!(summary.versions[0].objects, 7);
    assert_eq!(summary.versions[0].verdict, Verdict::UnknownKeyId);

    // Three pages of at most 4; the first at the current revision, the rest pinned to it, each
    // starting right after the previous page's last key.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[0].get("revision").is_none());
    assert_eq!(seen[1]["revision"], "77");
    assert_eq!(seen[2]["revision"], "77");
    let second_start = STANDARD.decode(seen[1]["key"].as_str().unwrap()).unwrap();
    assert_eq!(second_start, b"/registry/secrets/ns/s0\x00");
    assert_eq!(
        STANDARD
            .decode(seen[0]["range_end"].as_str().unwrap())
            .unwrap(),
        b"/registry0"
    );

    let report = ScanReport {
        report: Report::new("storage-scan"),
        scan: summary,
    };
    let text = to_text(&report);
    assert!(
        text.contains("resource: secrets objects=7 kms-v2=7\n"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["name"], "storage-scan");
    assert_eq!(json["scan"]["objects"], 10);
}

#[test]
fn the_rate_limit_paces_the_pages() {
    let store: BTreeMap<Vec<u8>, Vec<u8>> = (0..6)
        .map(|n| {
            (
                format!("/registry/secrets/s{n}").into_bytes(),
                b"{}".to_vec(),
            )
        })
        .collect();
    let (endpoint, _) = fake_etcd(store, 4);
    let gateway = Gateway::new(&EtcdSettings {
        endpoint,
        ca: None,
        cert: None,
        key: None,
        timeout: Duration::from_secs(5),
    })
    .unwrap();
    let mut tally = Tally::new("/registry/", "bao-kms");
    // 2 objects per page at 10 objects/s: the pages after the first two wait 0.2 s each.
    let pacing = Pacing {
        page_size: 2,
        rate_limit: 10,
        progress: false,
    };
    let stats = scan(&gateway, b"/registry/", &pacing, &mut tally).unwrap();
    assert_eq!(stats.objects, 6);
    assert!(stats.seconds >= 0.35, "{}", stats.seconds);
}

#[test]
fn an_https_endpoint_without_client_credentials_is_a_usage_error() {
    let error = Gateway::new(&EtcdSettings {
        endpoint: "https://127.0.0.1:2379".into(),
        ca: None,
        cert: None,
        key: None,
        timeout: Duration::from_secs(1),
    })
    .unwrap_err();
    assert!(matches!(error, EtcdError::Usage(_)), "{error}");
    let error = Gateway::new(&EtcdSettings {
        endpoint: "127.0.0.1:2379".into(),
        ca: None,
        cert: None,
        key: None,
        timeout: Duration::from_secs(1),
    })
    .unwrap_err();
    assert!(matches!(error, EtcdError::Usage(_)), "{error}");
}
