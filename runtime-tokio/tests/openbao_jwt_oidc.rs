//! JWT auth with a real chain and no hand-made tokens: OpenBao's own identity tokens
//! (`identity/oidc/token/<role>`, signed by an `identity/oidc/key`) are the JWTs, and OpenBao's
//! JWT auth method verifies them against OpenBao's own JWKS
//! (`/v1/identity/oidc/.well-known/keys`, reached over the dev server's TLS with the dev CA).
//!
//! The workload identity is an entity created by a `userpass` login; its token asks for the
//! identity token, whose `sub` is the entity id and whose `aud` is the OIDC role's `client_id`.
//! The tests of this binary share one OpenBao 2.7.2 dev server; each uses its own mounts,
//! OIDC key and roles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bao_kms_core::ciphertext::TransitCiphertext;
use bao_kms_core::plaintext::Plaintext;
use bao_kms_core::transit::{FailureClass, TransitFailure, TransitRequest, TransitResponse};
use bao_kms_core::version::KeyVersion;
use bao_kms_runtime_tokio::openbao::{AuthSettings, OpenBaoClient};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::assert_no_secret;
use support::bao::BaoServer;

const AAD: &str = "dWlkLTEyMw==";
const OTHER_AAD: &str = "dWlkLTQ1Ng==";
const KEY: &str = "kms-key";

/// A plain HTTPS agent trusting only the dev CA, for calls made with a non-root token.
fn agent(ca_pem: &[u8]) -> ureq::Agent {
    let certs: Vec<_> = ureq::tls::parse_pem(ca_pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(tls)
        .build()
        .into()
}

/// `GET` with `token`, or `POST body` without a token when `body` is set: `(status, body)`.
fn call(agent: &ureq::Agent, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let result = match (body, token) {
        (None, Some(token)) => agent.get(url).header("X-Vault-Token", token).call(),
        (None, None) => agent.get(url).call(),
        (Some(body), Some(token)) => agent
            .post(url)
            .header("X-Vault-Token", token)
            .send_json(body),
        (Some(body), None) => agent.post(url).send_json(body),
    };
    let mut response = result.expect("the call reached OpenBao");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The claims (payload) and header of a compact JWS, decoded without verification.
fn decode(jwt: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS");
    let part = |text: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap()
    };
    (part(parts[1]), part(parts[0]))
}

/// Writes a credential as one line with mode 0600.
fn write_secret_file(path: &Path, value: &str) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    writeln!(file, "{value}").unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// How the JWT auth mount finds OpenBao's signing keys.
#[derive(Clone, Copy)]
enum KeySource {
    /// `oidc_discovery_url` + `oidc_discovery_ca_pem` (the issuer's discovery document).
    Discovery,
    /// `jwks_url` + `jwks_ca_pem` (the key set directly).
    Jwks,
}

/// One workload identity, its OpenBao-signed JWTs and a JWT auth mount trusting OpenBao.
struct Chain {
    /// `https://127.0.0.1:PORT/v1/identity/oidc`: the `iss` of identity tokens.
    issuer: String,
    /// The OIDC role's `client_id`: the `aud` of its tokens.
    client_id: String,
    /// The workload entity: the `sub` of its identity tokens.
    entity_id: String,
    /// An OpenBao identity token for `client_id`, in `jwt_file`.
    jwt: String,
    jwt_file: PathBuf,
    /// An identity token of the same entity for another OIDC role (another `aud`).
    other_aud_jwt: String,
    other_aud_jwt_file: PathBuf,
    /// `auth/<mount>`, with role `kms` bound to (`client_id`, `entity_id`), policy `kms-plugin`.
    mount_path: String,
    /// Secrets that must never show up in an error or a Debug output.
    secrets: Vec<String>,
}

impl Chain {
    fn set_up(server: &BaoServer, source: KeySource) -> Self {
        let address = server.address();
        let ca_pem = String::from_utf8(server.ca_pem()).unwrap();
        let agent = agent(ca_pem.as_bytes());
        let unique = server.unique("oidc");

        // OpenBao as an OIDC issuer: the issuer must be the server's own address; the `iss` of
        // the tokens is then `<issuer>/v1/identity/oidc`.
        server.root_ok(
            "POST",
            "identity/oidc/config",
            Some(json!({ "issuer": address })),
        );
        let issuer = format!("{address}/v1/identity/oidc");
        let key = format!("{unique}-key");
        server.root_ok(
            "POST",
            &format!("identity/oidc/key/{key}"),
            Some(json!({
                "algorithm": "RS256",
                "allowed_client_ids": "*",
                "rotation_period": "24h",
                "verification_ttl": "24h",
            })),
        );
        let role = format!("{unique}-kms");
        let other_role = format!("{unique}-other");
        for name in [&role, &other_role] {
            server.root_ok(
                "POST",
                &format!("identity/oidc/role/{name}"),
                Some(json!({ "key": key, "ttl": "10m" })),
            );
        }
        let client_id_of = |name: &str| {
            server.root_ok("GET", &format!("identity/oidc/role/{name}"), None)["data"]["client_id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (client_id, other_client_id) = (client_id_of(&role), client_id_of(&other_role));
        assert_ne!(client_id, other_client_id);

        // The workload: a userpass user whose first login creates its entity, with a policy
        // that lets it ask for identity tokens of the two roles only.
        let policy = format!("{unique}-token");
        server.root_ok(
            "POST",
            &format!("sys/policies/acl/{policy}"),
            Some(json!({ "policy": format!(
                "path \"identity/oidc/token/{role}\" {{ capabilities = [\"read\"] }}\n\
                 path \"identity/oidc/token/{other_role}\" {{ capabilities = [\"read\"] }}\n"
            ) })),
        );
        let userpass = format!("{unique}-userpass");
        server.root_ok(
            "POST",
            &format!("sys/auth/{userpass}"),
            Some(json!({ "type": "userpass" })),
        );
        let password = format!("workload-password-{unique}-{}", std::process::id());
        server.root_ok(
            "POST",
            &format!("auth/{userpass}/users/workload"),
            Some(json!({ "password": password, "token_policies": [policy], "token_ttl": "10m" })),
        );
        let (status, login) = call(
            &agent,
            &format!("{address}/v1/auth/{userpass}/login/workload"),
            None,
            Some(json!({ "password": password })),
        );
        assert_eq!(status, 200, "userpass login: {}", login["errors"]);
        let entity_token = login["auth"]["client_token"].as_str().unwrap().to_owned();
        let entity_id = login["auth"]["entity_id"].as_str().unwrap().to_owned();
        assert!(
            !entity_id.is_empty(),
            "the userpass login created no entity"
        );

        // OpenBao signs the JWTs: `identity/oidc/token/<role>` with the entity's token.
        let identity_token = |name: &str, expected_client_id: &str| {
            let (status, body) = call(
                &agent,
                &format!("{address}/v1/identity/oidc/token/{name}"),
                Some(&entity_token),
                None,
            );
            assert_eq!(status, 200, "identity token: {}", body["errors"]);
            assert_eq!(body["data"]["client_id"].as_str(), Some(expected_client_id));
            body["data"]["token"].as_str().unwrap().to_owned()
        };
        let jwt = identity_token(&role, &client_id);
        let other_aud_jwt = identity_token(&other_role, &other_client_id);

        // The claims OpenBao put in: iss, aud = client_id, sub = entity id, a 10 min lifetime.
        let (claims, header) = decode(&jwt);
        assert_eq!(claims["iss"].as_str(), Some(issuer.as_str()), "{claims}");
        assert_eq!(claims["aud"].as_str(), Some(client_id.as_str()), "{claims}");
        assert_eq!(claims["sub"].as_str(), Some(entity_id.as_str()), "{claims}");
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, 600, "{claims}");
        assert_eq!(header["alg"].as_str(), Some("RS256"), "{header}");
        let (other_claims, _) = decode(&other_aud_jwt);
        assert_eq!(other_claims["aud"].as_str(), Some(other_client_id.as_str()));
        assert_eq!(other_claims["sub"].as_str(), Some(entity_id.as_str()));

        // The signing key is published, unauthenticated, in OpenBao's JWKS.
        let (status, jwks) = call(&agent, &format!("{issuer}/.well-known/keys"), None, None);
        assert_eq!(status, 200);
        let kid = header["kid"].as_str().unwrap();
        assert!(
            jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|key| key["kid"].as_str() == Some(kid)),
            "kid {kid} not in {jwks}"
        );

        let jwt_file = server.file(&format!("{unique}.jwt"));
        let other_aud_jwt_file = server.file(&format!("{unique}.other-aud.jwt"));
        write_secret_file(&jwt_file, &jwt);
        write_secret_file(&other_aud_jwt_file, &other_aud_jwt);

        // OpenBao's JWT auth method, trusting OpenBao's own keys over TLS with the dev CA.
        let mount = format!("{unique}-jwt");
        server.root_ok(
            "POST",
            &format!("sys/auth/{mount}"),
            Some(json!({ "type": "jwt" })),
        );
        let config = match source {
            KeySource::Discovery => json!({
                "oidc_discovery_url": issuer,
                "oidc_discovery_ca_pem": ca_pem,
                "bound_issuer": issuer,
            }),
            KeySource::Jwks => json!({
                "jwks_url": format!("{issuer}/.well-known/keys"),
                "jwks_ca_pem": ca_pem,
                "bound_issuer": issuer,
            }),
        };
        server.root_ok("POST", &format!("auth/{mount}/config"), Some(config));
        let chain = Self {
            issuer,
            client_id,
            entity_id,
            jwt,
            jwt_file,
            other_aud_jwt,
            other_aud_jwt_file,
            mount_path: format!("auth/{mount}"),
            secrets: vec![entity_token, password, server.secret("root-token")],
        };
        chain.write_role("kms", &chain.entity_id.clone(), server);
        chain
    }

    /// A JWT role bound to `client_id` and `subject`, issuing 15 min `kms-plugin` tokens.
    fn write_role(&self, name: &str, subject: &str, server: &BaoServer) {
        server.root_ok(
            "POST",
            &format!("{}/role/{name}", self.mount_path),
            Some(json!({
                "role_type": "jwt",
                "bound_audiences": [self.client_id],
                "user_claim": "sub",
                "bound_subject": subject,
                "token_policies": ["kms-plugin"],
                "token_no_default_policy": true,
                "token_ttl": "15m",
                "token_max_ttl": "15m",
            })),
        );
    }

    /// The plugin's auth settings for `role`, reading `jwt_file`, expecting this chain's claims.
    fn auth(&self, role: &str, jwt_file: &Path) -> AuthSettings {
        AuthSettings::Jwt {
            mount_path: self.mount_path.clone(),
            role: role.to_owned(),
            jwt_file: jwt_file.to_path_buf(),
            min_remaining_ttl: Duration::from_secs(120),
            clock_skew_leeway: Duration::from_secs(30),
            expected_issuer: Some(self.issuer.clone()),
            expected_audience: vec![self.client_id.clone()],
            expected_subject: Some(self.entity_id.clone()),
        }
    }

    /// Every secret of the chain, JWTs included.
    fn all_secrets(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        all.extend([self.jwt.as_str(), self.other_aud_jwt.as_str()]);
        // The signature part alone must not leak either.
        all.extend(self.jwt.rsplit('.').next());
        all
    }
}

fn encrypt_request(plaintext: &[u8]) -> TransitRequest {
    TransitRequest::Encrypt {
        plaintext: Plaintext::new(plaintext.to_vec()),
        key_version: KeyVersion::new(1).unwrap(),
        associated_data: AAD.to_owned(),
    }
}

fn decrypt(
    client: &OpenBaoClient,
    ciphertext: &str,
    aad: &str,
) -> Result<Plaintext, TransitFailure> {
    let request = TransitRequest::Decrypt {
        ciphertext: TransitCiphertext::parse(ciphertext.as_bytes()).unwrap(),
        associated_data: aad.to_owned(),
    };
    client.execute(&request).map(|response| {
        let TransitResponse::Decrypted { plaintext } = response else {
            panic!("unexpected answer to decrypt");
        };
        plaintext
    })
}

#[test]
fn a_jwt_issued_by_openbao_identity_oidc_logs_in_through_openbao_jwt_auth_and_encrypts() {
    let server = BaoServer::shared();
    let chain = Chain::set_up(&server, KeySource::Discovery);
    let client =
        OpenBaoClient::new(server.settings(KEY, chain.auth("kms", &chain.jwt_file))).unwrap();
    assert_eq!(client.requests_sent(), 0, "building the client does no IO");

    // Explicit-version encrypt with AAD: the first call logs in with the OpenBao-signed JWT.
    let secret = b"0123456789abcdef0123456789abcdef";
    let TransitResponse::Encrypted {
        ciphertext,
        key_version,
    } = client.execute(&encrypt_request(secret)).unwrap()
    else {
        panic!("unexpected answer to encrypt");
    };
    assert_eq!(key_version, 1);
    assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");
    assert_eq!(decrypt(&client, &ciphertext, AAD).unwrap().expose(), secret);
    let wrong_aad = decrypt(&client, &ciphertext, OTHER_AAD).unwrap_err();
    assert_eq!(wrong_aad.class, FailureClass::DecryptFailed);

    let stats = client.auth_stats();
    assert_eq!((stats.logins_succeeded, stats.logins_failed), (1, 0));
    // The token of the JWT role: token_ttl 15m.
    let ttl = client.token_ttl_seconds().unwrap();
    assert!((800.0..=900.0).contains(&ttl), "{ttl}");

    // Nothing secret in the errors or in the client's Debug output.
    let mut secrets = chain.all_secrets();
    let plaintext_b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    secrets.push(&plaintext_b64);
    assert_no_secret(&wrong_aad, &secrets);
    let shown = format!("{client:?}");
    assert!(!secrets.iter().any(|s| shown.contains(s)), "{shown}");
}

#[test]
fn openbao_identity_jwts_with_a_foreign_audience_or_subject_are_refused() {
    let server = BaoServer::shared();
    let chain = Chain::set_up(&server, KeySource::Jwks);
    let secrets = chain.all_secrets();

    // The mount configured with `jwks_url` accepts the right JWT for the right role.
    let good =
        OpenBaoClient::new(server.settings(KEY, chain.auth("kms", &chain.jwt_file))).unwrap();
    good.ensure_token().unwrap();
    assert_eq!(good.auth_stats().logins_succeeded, 1);

    // An OpenBao-signed JWT of the same entity for another OIDC role: its `aud` is not the
    // expected audience, so it is refused locally and never sent.
    let other_aud =
        OpenBaoClient::new(server.settings(KEY, chain.auth("kms", &chain.other_aud_jwt_file)))
            .unwrap();
    let refused = other_aud.execute(&encrypt_request(b"x")).unwrap_err();
    assert_eq!(
        (refused.class, refused.http_status),
        (FailureClass::AuthFailed, None)
    );
    assert_eq!(other_aud.requests_sent(), 0, "nothing reached OpenBao");
    let stats = other_aud.auth_stats();
    assert_eq!((stats.logins_succeeded, stats.logins_failed), (0, 1));
    assert_no_secret(&refused, &secrets);

    // A role bound to another entity: the JWT passes the local checks, OpenBao verifies its
    // signature and refuses the subject (HTTP 400 "invalid subject (sub) claim").
    let other_entity = server.root_ok(
        "POST",
        "identity/entity",
        Some(json!({ "name": server.unique("other-workload") })),
    );
    let other_entity_id = other_entity["data"]["id"].as_str().unwrap().to_owned();
    assert_ne!(other_entity_id, chain.entity_id);
    chain.write_role("other", &other_entity_id, &server);
    let foreign =
        OpenBaoClient::new(server.settings(KEY, chain.auth("other", &chain.jwt_file))).unwrap();
    let denied = foreign.execute(&encrypt_request(b"x")).unwrap_err();
    assert_eq!(
        (denied.class, denied.http_status),
        (FailureClass::AuthFailed, Some(400))
    );
    assert_eq!(foreign.requests_sent(), 1, "one login, no transit call");
    let stats = foreign.auth_stats();
    assert_eq!((stats.logins_succeeded, stats.logins_failed), (0, 1));
    assert_no_secret(&denied, &secrets);

    for client in [&good, &other_aud, &foreign] {
        let shown = format!("{client:?}");
        assert!(!secrets.iter().any(|s| shown.contains(s)), "{shown}");
    }
}
