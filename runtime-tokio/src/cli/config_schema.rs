//! The JSON Schema (draft 2020-12) of the configuration file, printed by `config schema`.
//!
//! It mirrors the strict decoder in `crate::config`: every object refuses unknown keys, strings
//! must be strings, durations are Go duration strings. A key written with no value (`key:` or
//! `key: ~`) counts as absent in the file, so every key but `configVersion` also accepts `null`.
//! Cross-field rules (`status.probeInterval` below `status.statusMaxStaleness`, distinct
//! listeners, the section matching `auth.method`) are left to the loader, which reports them.

use serde_json::{Map, Value, json};

/// The schema's `$id`.
pub(super) const SCHEMA_ID: &str = "https://bao-kms-provider.invalid/config.schema.json";

/// Go duration syntax with a unit (`30s`, `1m30s`, `500ms`); a bare `0` is allowed.
const DURATION: &str = r"^[+-]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";
/// No surrounding whitespace, no control characters.
const LABEL: &str = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$";
/// An absolute file path: no `.` or `..` segment, no trailing `/`.
const FILE_PATH: &str = r"^(?!(.*/)?\.\.?(/|$))/[^\x00-\x1f\x7f-\x9f]*[^\s/\x00-\x1f\x7f-\x9f]$";
/// An absolute directory path other than `/`.
const DIR_PATH: &str = r"^(?!(.*/)?\.\.?(/|$))/[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f]$";
/// A relative OpenBao path (surrounding `/` tolerated), no `%`, no `.` or `..` segment.
const RELATIVE_PATH: &str = r"^(?!(.*/)?\.\.?(/|$))[^%\s\x00-\x1f\x7f-\x9f]([^%\x00-\x1f\x7f-\x9f]*[^%\s\x00-\x1f\x7f-\x9f])?$";
/// An OpenBao namespace: relative, no leading `/`; empty means none.
const NAMESPACE: &str = r"^$|^(?!/)(?!(.*/)?\.\.?(/|$))[^%\s\x00-\x1f\x7f-\x9f]([^%\x00-\x1f\x7f-\x9f]*[^%\s\x00-\x1f\x7f-\x9f])?$";
/// An auth mount, starting with `auth/`.
const AUTH_MOUNT: &str =
    r"^(?!(.*/)?\.\.?(/|$))auth/[^%\x00-\x1f\x7f-\x9f]*[^%\s\x00-\x1f\x7f-\x9f]$";
/// OpenBao's `GenericNameRegex`, ASCII only.
const KEY_NAME: &str = r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$";
/// Four octal digits without execute bits and without access for others (bits `0117`).
const SOCKET_MODE: &str = r"^0[0246][0246]0$";
/// A group name or a decimal gid.
const SOCKET_GROUP: &str = r"^([0-9]+|[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31})$";
/// `host:port`, `[v6]:port`, or empty (disabled).
const LISTEN: &str = r"^$|^(\[[0-9A-Fa-f:.]+(%[^\]\s]+)?\]|[^\s:\[\]/]+):[0-9]{1,5}$";
/// `https://host[:port]` with an optional trailing `/`.
const OPENBAO_URL: &str = r"^[hH][tT][tT][pP][sS]://[^\s/?#@]+/?$";

/// The whole schema.
pub(super) fn schema() -> Value {
    let mut root = object(
        "bao-kms-provider configuration (configVersion v1alpha1). Unknown keys are refused at \
         every level; a key with no value counts as absent. Keys marked (ours) are not accepted \
         by the bao-kms-provider preview releases.",
        vec![
            ("server", server()),
            ("openbao", openbao()),
            ("auth", auth()),
            ("transit", transit()),
            ("state", state()),
            ("bootstrap", bootstrap()),
            ("status", status()),
            ("rotation", rotation()),
            ("logging", logging()),
            ("performance", performance()),
        ],
        &["configVersion", "openbao", "auth", "transit"],
    );
    if let Some(map) = root.as_object_mut() {
        map.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        map.insert("$id".into(), json!(SCHEMA_ID));
        map.insert("title".into(), json!("bao-kms-provider configuration"));
        // The root is an object, never null, and configVersion is the one non-nullable key.
        map.insert("type".into(), json!("object"));
        if let Some(Value::Object(properties)) = map.get_mut("properties") {
            properties.insert(
                "configVersion".into(),
                json!({
                    "const": "v1alpha1",
                    "description": "Required. The only accepted value is v1alpha1.",
                }),
            );
        }
    }
    root
}

fn server() -> Value {
    object(
        "The KMS socket, the HTTP listeners and the request limits.",
        vec![
            (
                "socketPath",
                string(
                    FILE_PATH,
                    Some("/run/openbao-kms/kms.sock"),
                    "Absolute path of the KMS gRPC Unix socket, at most 107 bytes, directly \
                     inside one of server.socketDirectories.",
                ),
            ),
            (
                "socketMode",
                string(
                    SOCKET_MODE,
                    Some("0660"),
                    "Octal mode of the socket, quoted (\"0660\"); no execute bits and no access \
                     for others (bits 0117).",
                ),
            ),
            (
                "socketGroup",
                string(
                    SOCKET_GROUP,
                    None,
                    "Group of the socket: a name (at most 32 ASCII letters, digits, _, - and .) \
                     or a decimal gid written as a string (\"996\"). Unset keeps the process \
                     group.",
                ),
            ),
            (
                "socketDirectories",
                nullable(json!({
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": DIR_PATH},
                    "default": ["/run/openbao-kms", "/var/run/openbao-kms"],
                    "description": "(ours) Directories the socket may live in; absolute, not /. \
                                    Replaces the default list.",
                })),
            ),
            (
                "metricsAddress",
                string(
                    LISTEN,
                    Some("127.0.0.1:8081"),
                    "Prometheus listener host:port; empty disables it; port 0 picks a free port.",
                ),
            ),
            (
                "healthAddress",
                string(
                    LISTEN,
                    Some("127.0.0.1:8082"),
                    "/live and /ready listener host:port; empty disables it; its fixed endpoint \
                     must differ from the metrics endpoint.",
                ),
            ),
            (
                "maxConcurrentStatus",
                integer(
                    1,
                    Some(1024),
                    16,
                    "Concurrent Status requests; more are refused.",
                ),
            ),
            (
                "maxConcurrentEncrypt",
                integer(
                    1,
                    Some(1024),
                    32,
                    "Concurrent Encrypt requests; more are refused.",
                ),
            ),
            (
                "maxConcurrentDecrypt",
                integer(
                    1,
                    Some(1024),
                    64,
                    "Concurrent Decrypt requests; more are refused.",
                ),
            ),
        ],
        &[],
    )
}

fn openbao() -> Value {
    object(
        "Where OpenBao is and how to trust it.",
        vec![
            (
                "address",
                string(
                    OPENBAO_URL,
                    None,
                    "Required unless addresses is set. https://host[:port] of OpenBao; no user \
                     information, path, query or fragment.",
                ),
            ),
            (
                "addresses",
                nullable(json!({
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 16,
                    "uniqueItems": true,
                    "items": {"type": "string", "pattern": OPENBAO_URL},
                    "description": "(ours) The nodes of one OpenBao HA cluster; every call goes \
                                    to the active node, found through sys/health. When address \
                                    is also set it must be one of them and is tried first.",
                })),
            ),
            (
                "caCertFile",
                string(
                    FILE_PATH,
                    None,
                    "Required. PEM CA bundle, the only trust anchor for OpenBao.",
                ),
            ),
            (
                "tlsServerName",
                string(
                    LABEL,
                    None,
                    "Required. DNS name or IP the server certificate must carry.",
                ),
            ),
            (
                "instanceId",
                string(
                    LABEL,
                    None,
                    "Required, identity-bearing. Operator label for this OpenBao deployment.",
                ),
            ),
            (
                "namespace",
                string(
                    NAMESPACE,
                    None,
                    "Identity-bearing. Sent as X-Vault-Namespace; relative, no leading /, no %, \
                     no empty, . or .. segments.",
                ),
            ),
            (
                "timeout",
                duration(
                    "2s",
                    "Greater than 0. Deadline of each OpenBao request and each KMS request.",
                ),
            ),
        ],
        &["caCertFile", "tlsServerName", "instanceId"],
    )
}

fn auth() -> Value {
    object(
        "How the provider obtains and keeps an OpenBao token. Only the section of the chosen \
         method may be present.",
        vec![
            (
                "method",
                enumeration(
                    &["jwt", "token", "approle"],
                    "jwt",
                    "jwt, token (ours) or approle (ours).",
                ),
            ),
            (
                "loginBeforeTokenExpiry",
                duration(
                    "5m",
                    "Greater than 0. Renew or log in again this long before the token expires.",
                ),
            ),
            (
                "tokenRenewalIncrement",
                duration(
                    "1h",
                    "Greater than 0 and than loginBeforeTokenExpiry. Increment asked for on \
                     renewal.",
                ),
            ),
            (
                "loginTimeout",
                duration(
                    "0s",
                    "Bounds one shared login or renewal; 0s means the larger of openbao.timeout \
                     and 5s.",
                ),
            ),
            ("jwt", jwt()),
            (
                "token",
                object(
                    "(ours) Method token: an OpenBao token read from a file and renewed.",
                    vec![(
                        "tokenFile",
                        string(
                            FILE_PATH,
                            None,
                            "Required. Absolute path of the file holding the token.",
                        ),
                    )],
                    &["tokenFile"],
                ),
            ),
            (
                "approle",
                object(
                    "(ours) Method approle: AppRole login with ids read from files.",
                    vec![
                        (
                            "mountPath",
                            string(
                                AUTH_MOUNT,
                                Some("auth/approle"),
                                "The AppRole auth mount, including auth/.",
                            ),
                        ),
                        (
                            "roleIdFile",
                            string(FILE_PATH, None, "Required. File holding the role_id."),
                        ),
                        (
                            "secretIdFile",
                            string(FILE_PATH, None, "Required. File holding the secret_id."),
                        ),
                    ],
                    &["roleIdFile", "secretIdFile"],
                ),
            ),
        ],
        &[],
    )
}

fn jwt() -> Value {
    object(
        "Method jwt: a JWT read from a file before every login.",
        vec![
            (
                "source",
                enumeration(&["file"], "file", "Only file in this release."),
            ),
            (
                "mountPath",
                string(
                    AUTH_MOUNT,
                    None,
                    "Required. The JWT auth mount, including auth/ (auth/k8s-workload-a-jwt).",
                ),
            ),
            (
                "role",
                string(LABEL, None, "Required. The OpenBao role to log in as."),
            ),
            (
                "jwtFile",
                string(FILE_PATH, None, "Required. File holding the JWT."),
            ),
            (
                "minRemainingTtl",
                duration(
                    "2m",
                    "Greater than 0. A JWT with less time left is not sent.",
                ),
            ),
            (
                "clockSkewLeeway",
                duration("30s", "Tolerance applied to nbf, iat and exp."),
            ),
            (
                "expectedIssuer",
                string(LABEL, None, "If set, the JWT's iss must match."),
            ),
            (
                "expectedAudience",
                nullable(json!({
                    "type": "array",
                    "items": {"type": "string", "pattern": LABEL},
                    "default": [],
                    "description": "If non-empty, the JWT's aud must contain one of these.",
                })),
            ),
            (
                "expectedSubject",
                string(LABEL, None, "If set, the JWT's sub must match."),
            ),
        ],
        &["mountPath", "role", "jwtFile"],
    )
}

fn transit() -> Value {
    object(
        "The Transit key. Every value here is identity-bearing: all nodes of a cluster must \
         use identical values.",
        vec![
            (
                "mountPath",
                string(
                    RELATIVE_PATH,
                    None,
                    "Required. Relative Transit mount path (surrounding / are dropped).",
                ),
            ),
            (
                "keyName",
                string(
                    KEY_NAME,
                    None,
                    "Required. Transit key name: ASCII letters, digits, _, - and ., starting \
                     and ending with a letter, digit or _.",
                ),
            ),
            (
                "keyIdScope",
                object(
                    "Identity labels hashed into every key_id and bound into every AAD.",
                    vec![
                        (
                            "providerName",
                            string(
                                LABEL,
                                None,
                                "Required. The provider name in kube-apiserver's \
                                 EncryptionConfiguration.",
                            ),
                        ),
                        (
                            "clusterId",
                            string(LABEL, None, "Required. Label of the protected cluster."),
                        ),
                        (
                            "transitMountId",
                            string(
                                LABEL,
                                None,
                                "Required. Operator label of the Transit mount (not the \
                                 accessor).",
                            ),
                        ),
                        (
                            "keyLineageId",
                            string(
                                LABEL,
                                None,
                                "Required. Changes only when the Transit key is deleted and \
                                 created again (init --new-key generates one).",
                            ),
                        ),
                    ],
                    &[
                        "providerName",
                        "clusterId",
                        "transitMountId",
                        "keyLineageId",
                    ],
                ),
            ),
        ],
        &["mountPath", "keyName", "keyIdScope"],
    )
}

fn state() -> Value {
    object(
        "The key registry files.",
        vec![(
            "path",
            string(
                FILE_PATH,
                Some("/var/lib/openbao-kms/state/key-registry.json"),
                "The registry state file; .checkpoint, .lock and temporary files sit beside it.",
            ),
        )],
        &[],
    )
}

fn bootstrap() -> Value {
    object(
        "How long serve waits for a verified data path before binding the socket.",
        vec![
            (
                "graceTimeout",
                duration("60s", "How long to keep trying; 0s means a single attempt."),
            ),
            (
                "retryInterval",
                duration("5s", "Greater than 0. Time between attempts."),
            ),
        ],
        &[],
    )
}

fn status() -> Value {
    object(
        "Probe cadence and staleness.",
        vec![
            (
                "probeInterval",
                duration(
                    "30s",
                    "Greater than 0 and less than statusMaxStaleness. Metadata probe cadence \
                     and unknown-key discovery rate limit.",
                ),
            ),
            (
                "deepProbeInterval",
                duration(
                    "5m",
                    "Greater than 0. Encrypt/decrypt round-trip probe cadence.",
                ),
            ),
            (
                "statusMaxStaleness",
                duration(
                    "2m",
                    "Greater than 0. Status is unhealthy when the last good probe is older.",
                ),
            ),
        ],
        &[],
    )
}

fn rotation() -> Value {
    object(
        "How rotations done in OpenBao are followed.",
        vec![
            (
                "mode",
                enumeration(&["observed"], "observed", "Only observed."),
            ),
            (
                "activationDelay",
                duration(
                    "2m",
                    "Greater than 0. How long a stable new version waits before encrypting.",
                ),
            ),
            (
                "requireStableObservationCount",
                integer(
                    1,
                    None,
                    3,
                    "Consecutive observations a new version needs to count as stable.",
                ),
            ),
            (
                "rejectVersionRollback",
                boolean(true, "Treat latest_version going backwards as unhealthy."),
            ),
        ],
        &[],
    )
}

fn logging() -> Value {
    object(
        "Logs.",
        vec![
            (
                "level",
                enumeration(
                    &["debug", "info", "warn", "error"],
                    "info",
                    "Log level (trace is not offered).",
                ),
            ),
            (
                "format",
                enumeration(&["json", "text"], "json", "Log format."),
            ),
            (
                "logOpenBaoRequestIDs",
                boolean(true, "Include OpenBao request IDs in logs."),
            ),
        ],
        &[],
    )
}

fn performance() -> Value {
    object(
        "(ours) Decrypt batching.",
        vec![(
            "decryptBatchMaxItems",
            integer(
                1,
                Some(128),
                64,
                "Most Decrypt requests combined into one Transit batch call; 1 turns batching \
                 off.",
            ),
        )],
        &[],
    )
}

/// An object that refuses unknown keys; every property also accepts `null` (absent).
fn object(description: &str, properties: Vec<(&str, Value)>, required: &[&str]) -> Value {
    let properties: Map<String, Value> = properties
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), nullable(schema)))
        .collect();
    let mut schema = json!({
        "type": ["object", "null"],
        "description": description,
        "additionalProperties": false,
        "properties": properties,
    });
    if !required.is_empty()
        && let Some(map) = schema.as_object_mut()
    {
        map.insert("required".into(), json!(required));
    }
    schema
}

/// Adds `null` to the schema's `type` (and to its `enum`), once.
fn nullable(mut schema: Value) -> Value {
    if let Some(map) = schema.as_object_mut() {
        if let Some(kind) = map.get("type").cloned() {
            let mut kinds = match kind {
                Value::Array(kinds) => kinds,
                other @ (Value::Null
                | Value::Bool(_)
                | Value::Number(_)
                | Value::String(_)
                | Value::Object(_)) => vec![other],
            };
            if !kinds.contains(&Value::Null) && !kinds.contains(&json!("null")) {
                kinds.push(json!("null"));
            }
            map.insert("type".into(), Value::Array(kinds));
        }
        if let Some(Value::Array(values)) = map.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
    }
    schema
}

fn string(pattern: &str, default: Option<&str>, description: &str) -> Value {
    let mut schema = json!({
        "type": "string",
        "pattern": pattern,
        "description": description,
    });
    if let (Some(default), Some(map)) = (default, schema.as_object_mut()) {
        map.insert("default".into(), json!(default));
    }
    schema
}

fn duration(default: &str, description: &str) -> Value {
    json!({
        "type": "string",
        "pattern": DURATION,
        "default": default,
        "description": format!(
            "{description} A Go duration string with a unit (\"2s\", \"500ms\", \"1m30s\"); \
             negative values are refused."
        ),
    })
}

fn integer(minimum: u32, maximum: Option<u32>, default: u32, description: &str) -> Value {
    let mut schema = json!({
        "type": "integer",
        "minimum": minimum,
        "default": default,
        "description": description,
    });
    if let (Some(maximum), Some(map)) = (maximum, schema.as_object_mut()) {
        map.insert("maximum".into(), json!(maximum));
    }
    schema
}

fn boolean(default: bool, description: &str) -> Value {
    json!({"type": "boolean", "default": default, "description": description})
}

fn enumeration(values: &[&str], default: &str, description: &str) -> Value {
    json!({
        "type": "string",
        "enum": values,
        "default": default,
        "description": description,
    })
}
