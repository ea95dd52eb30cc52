#!/usr/bin/env python3
"""Derives the extra wire-format-v1 vectors (wire-v1-extra.json) from the written rules alone.

Nothing here imports, runs or mirrors the Rust code under test. Every output is computed from the
rules in docs/reference/wire-format.md (the preview releases' key_id, annotation and AAD rules):

* key_id = "obk2." + base64url-nopad(SHA-256(parts)), each part followed by one 0x00 byte;
  the namespace is a part only when it is non-empty.
* every published digest is base64url-nopad(SHA-256(UTF-8 value)): 43 characters.
* the AAD is the compact JSON Go's encoding/json.Marshal writes for a struct with a fixed field
  order. Its string escaping is written out by hand below (go_string), not taken from Python's
  json module, whose defaults differ from Go (Python escapes all non-ASCII when ensure_ascii is
  set and never escapes <, >, &, U+2028 or U+2029).
* Transit receives the AAD as standard base64 with padding.

Before anything is printed the script re-derives the golden vector (wire-v1.json, a byte copy of
the project's reference vector) and asserts that every value matches, so the rules implemented
here are the ones the preview releases use.

Usage, from the repository root:

    python3 core/tests/vectors/derive_vectors.py > core/tests/vectors/wire-v1-extra.json

Python 3.8 or later, standard library only.
"""

import base64
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

KEY_ID_DOMAIN = "openbao-kubernetes-kms/key-id/v1"
FINGERPRINT_DOMAIN = "openbao-kubernetes-kms/config-identity/v1"
PROVIDER_KIND = "openbao-transit"
AAD_PURPOSE = "kubernetes-etcd-kms-v2"

PROVIDER = "provider.kms.openbao.org"
KEY_ID_HASH = "key-id-hash.kms.openbao.org"
TRANSIT_KEY_VERSION = "transit-key-version.kms.openbao.org"
TRANSIT_MOUNT_HASH = "transit-mount-hash.kms.openbao.org"
TRANSIT_KEY_HASH = "transit-key-hash.kms.openbao.org"
NAMESPACE_HASH = "openbao-namespace-hash.kms.openbao.org"
PLUGIN_VERSION = "plugin-version.kms.openbao.org"
AAD_VERSION = "aad-version.kms.openbao.org"


# --- primitives ---------------------------------------------------------------------------------

def b64url_nopad(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def digest(value):
    """H(value): base64url-nopad(SHA-256(UTF-8 bytes of value))."""
    return b64url_nopad(hashlib.sha256(value.encode("utf-8")).digest())


def go_string(text):
    """A JSON string literal exactly as Go's encoding/json writes it (HTML-safe mode, the default
    of json.Marshal and json.Encoder)."""
    short = {"\n": "\\n", "\r": "\\r", "\t": "\\t",
             # Go 1.22 and later; earlier releases wrote \u0008 and \u000c. Identity values can
             # never contain control characters, so the difference cannot reach the wire.
             "\b": "\\b", "\f": "\\f"}
    out = ['"']
    for ch in text:
        code = ord(ch)
        # A Python str from this file never holds lone surrogates; Go would write U+FFFD for
        # invalid UTF-8, which a Rust String (or a YAML config) cannot carry either.
        assert not 0xD800 <= code <= 0xDFFF, "lone surrogate"
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch in "<>&":
            out.append("\\u%04x" % code)
        elif code < 0x20:
            out.append(short.get(ch, "\\u%04x" % code))
        elif code in (0x2028, 0x2029):
            out.append("\\u%04x" % code)
        else:
            # Everything else, including DEL and all other non-ASCII text, is written raw.
            out.append(ch)
    out.append('"')
    return "".join(out)


def go_object(fields):
    """Compact Go JSON of an object whose fields are all strings, in the given order."""
    return "{" + ",".join(go_string(name) + ":" + go_string(value)
                          for name, value in fields) + "}"


# --- wire format v1 -----------------------------------------------------------------------------

def key_id(inp):
    parts = [KEY_ID_DOMAIN, inp["providerName"], inp["clusterId"], inp["openbaoInstanceId"]]
    if inp["openbaoNamespace"]:
        parts.append(inp["openbaoNamespace"])
    parts += [inp["transitMountId"], inp["transitKeyLineageId"],
              str(inp["transitVersion"]), str(inp["transitVersionCreatedAtUnix"])]
    data = b"".join(part.encode("utf-8") + b"\0" for part in parts)
    return "obk2." + b64url_nopad(hashlib.sha256(data).digest())


def annotations(inp, kid):
    out = {
        PROVIDER: PROVIDER_KIND,
        KEY_ID_HASH: digest(kid),
        TRANSIT_KEY_VERSION: str(inp["transitVersion"]),
        TRANSIT_MOUNT_HASH: digest(inp["transitMountId"]),
        TRANSIT_KEY_HASH: digest(inp["transitKeyLineageId"]),
    }
    if inp["openbaoNamespace"]:
        out[NAMESPACE_HASH] = digest(inp["openbaoNamespace"])
    out[PLUGIN_VERSION] = inp["pluginVersion"]
    out[AAD_VERSION] = "v1"
    return out


def aad_json(inp, kid):
    fields = [
        ("aad_version", "v1"),
        ("purpose", AAD_PURPOSE),
        ("provider", PROVIDER_KIND),
        ("provider_name", inp["providerName"]),
        ("cluster_id_hash", digest(inp["clusterId"])),
        ("openbao_instance_hash", digest(inp["openbaoInstanceId"])),
    ]
    if inp["openbaoNamespace"]:
        fields.append(("openbao_namespace_hash", digest(inp["openbaoNamespace"])))
    fields += [
        ("transit_mount_hash", digest(inp["transitMountId"])),
        ("transit_key_hash", digest(inp["transitKeyLineageId"])),
        ("key_id_hash", digest(kid)),
        ("key_version", str(inp["transitVersion"])),
    ]
    return go_object(fields)


def fingerprint(inp):
    """cfg1. identity fingerprint; needs the mount path and key name (extra vectors only)."""
    fields = [
        ("domain", FINGERPRINT_DOMAIN),
        ("provider_name", inp["providerName"]),
        ("cluster_id", inp["clusterId"]),
        ("openbao_instance_id", inp["openbaoInstanceId"]),
    ]
    if inp["openbaoNamespace"]:
        fields.append(("openbao_namespace", inp["openbaoNamespace"]))
    fields += [
        ("transit_mount_id", inp["transitMountId"]),
        ("key_lineage_id", inp["transitKeyLineageId"]),
        ("transit_mount_path", inp["transitMountPath"]),
        ("transit_key_name", inp["transitKeyName"]),
    ]
    canonical = go_object(fields).encode("utf-8")
    return "cfg1." + b64url_nopad(hashlib.sha256(canonical).digest())


def apiserver_key_id_hash(kid):
    """How kube-apiserver names a key_id in its metrics and logs: sha256:<lowercase hex>."""
    return "sha256:" + hashlib.sha256(kid.encode("utf-8")).hexdigest()


def expected(inp):
    kid = key_id(inp)
    aad = aad_json(inp, kid)
    out = {
        "keyId": kid,
        "annotations": annotations(inp, kid),
        "aadJson": aad,
        "transitAssociatedData": base64.b64encode(aad.encode("utf-8")).decode("ascii"),
        "apiserverKeyIdHash": apiserver_key_id_hash(kid),
    }
    if "transitMountPath" in inp:
        out["identityFingerprint"] = fingerprint(inp)
    return out


# --- self checks --------------------------------------------------------------------------------

def check_golden():
    """The rules above must reproduce the reference vector byte for byte."""
    with open(os.path.join(HERE, "wire-v1.json"), encoding="utf-8") as handle:
        golden = json.load(handle)
    assert golden["vectors"], "golden file has no vectors"
    for vector in golden["vectors"]:
        derived = expected(vector["input"])
        want = vector["expected"]
        for name in ("keyId", "annotations", "aadJson", "transitAssociatedData"):
            assert derived[name] == want[name], (vector["name"], name, derived[name], want[name])
        assert list(derived["annotations"]) == list(want["annotations"]), "annotation order"


def check_vector(vector):
    inp, out = vector["input"], vector["expected"]
    assert len(out["keyId"]) == 48 and out["keyId"].startswith("obk2.")
    for value in out["annotations"].values():
        assert value, "empty annotation value"
    total = sum(len(k.encode()) + len(v.encode()) for k, v in out["annotations"].items())
    assert total <= 32768
    aad = out["aadJson"]
    # The AAD is valid JSON, its field order is the fixed v1 order, and the only raw value
    # round-trips exactly.
    pairs = json.loads(aad, object_pairs_hook=lambda items: items)
    names = [name for name, _ in pairs]
    order = ["aad_version", "purpose", "provider", "provider_name", "cluster_id_hash",
             "openbao_instance_hash"]
    if inp["openbaoNamespace"]:
        order.append("openbao_namespace_hash")
    order += ["transit_mount_hash", "transit_key_hash", "key_id_hash", "key_version"]
    assert names == order, names
    assert dict(pairs)["provider_name"] == inp["providerName"]
    for raw in ("<", ">", "&", "\u2028", "\u2029"):
        assert raw not in aad, "raw %r in AAD" % raw
    assert base64.b64decode(out["transitAssociatedData"], validate=True) == aad.encode("utf-8")


# --- the extra vectors --------------------------------------------------------------------------

GOLDEN_IDENTITY = {
    "providerName": "openbao-kms-workload-a",
    "clusterId": "workload-a",
    "openbaoInstanceId": "bao-prod-a",
    "openbaoNamespace": "",
    "transitMountId": "transit-prod-primary",
    "transitKeyLineageId": "01HXEXAMPLEKEYLINEAGEID",
}

VECTORS = [
    {
        "name": "namespace-set",
        "description": "The golden identity with an OpenBao namespace: the namespace becomes a "
                       "key_id part between the instance id and the mount id, the AAD gains "
                       "openbao_namespace_hash right after openbao_instance_hash, and the "
                       "annotations gain openbao-namespace-hash.kms.openbao.org.",
        "input": dict(GOLDEN_IDENTITY, openbaoNamespace="team-a/child", transitVersion=3,
                      transitVersionCreatedAtUnix=1715803200, pluginVersion="v0.1.0",
                      transitMountPath="transit", transitKeyName="kms-key"),
    },
    {
        "name": "escaped-provider-name",
        "description": "A provider name with <, >, &, U+2028, U+2029 and other non-ASCII text. "
                       "provider_name is the only raw value inside the AAD: Go writes the first "
                       "five as \\u003c \\u003e \\u0026 \\u2028 \\u2029 and leaves e-acute and "
                       "the snowman as raw UTF-8. The key_id hashes the raw UTF-8 bytes.",
        "input": dict(GOLDEN_IDENTITY, providerName="kms<prod>&co\u2028\u00e9\u2029\u2603",
                      transitVersion=7, transitVersionCreatedAtUnix=1717200000,
                      pluginVersion="v0.1.0", transitMountPath="transit",
                      transitKeyName="kms-key"),
    },
    {
        "name": "max-version",
        "description": "Another identity at the largest Transit version this release accepts "
                       "(2^32-1, ten digits) created after the 32-bit time_t limit.",
        "input": {
            "providerName": "openbao-kms-workload-b",
            "clusterId": "workload-b",
            "openbaoInstanceId": "bao-dr-b",
            "openbaoNamespace": "",
            "transitMountId": "transit-dr",
            "transitKeyLineageId": "01J0B2LINEAGEWORKLOADB",
            "transitVersion": 4294967295,
            "transitVersionCreatedAtUnix": 2147483648,
            "pluginVersion": "v1.2.3-rc.1+build.7",
            "transitMountPath": "kms/transit",
            "transitKeyName": "k8s_kms.key-b",
        },
    },
    {
        "name": "namespace-quotes-and-astral",
        "description": "Namespace plus a provider name with a double quote, a backslash, an "
                       "inner space and a 4-byte UTF-8 character (written raw by Go, not as a "
                       "surrogate pair); non-ASCII and < in values that only appear hashed in "
                       "the AAD but raw in the identity fingerprint.",
        "input": {
            "providerName": "kms \"blue\" \\ \U0001F511 \u00fc",
            "clusterId": "\u30af\u30e9\u30b9\u30bf-1",
            "openbaoInstanceId": "bao<blue>&1",
            "openbaoNamespace": "tenants/blue",
            "transitMountId": "transit-blue",
            "transitKeyLineageId": "lineage-blue-2024",
            "transitVersion": 10,
            "transitVersionCreatedAtUnix": 946684800,
            "pluginVersion": "0.2.0",
            "transitMountPath": "tenants/blue/transit",
            "transitKeyName": "kms-key",
        },
    },
]


def non_canonical_digest():
    # 43 characters decode 258 bits into 32 bytes; the last two bits must be zero. "B" sets one.
    return "A" * 42 + "B"


# Applied to every vector's annotations; Annotations::parse must refuse each one. "refusal" is
# the reason: missing:<key>, malformed:<key>, key-not-fqdn or unsupported-aad-version.
MALFORMED = [
    {"case": "missing provider", "drop": PROVIDER, "refusal": "missing:" + PROVIDER},
    {"case": "empty provider", "set": {PROVIDER: ""}, "refusal": "missing:" + PROVIDER},
    {"case": "other provider", "set": {PROVIDER: "openbao-transit-v2"},
     "refusal": "malformed:" + PROVIDER},
    {"case": "missing aad version", "drop": AAD_VERSION, "refusal": "missing:" + AAD_VERSION},
    {"case": "unknown aad version", "set": {AAD_VERSION: "v2"},
     "refusal": "unsupported-aad-version"},
    {"case": "aad version in upper case", "set": {AAD_VERSION: "V1"},
     "refusal": "unsupported-aad-version"},
    {"case": "missing version", "drop": TRANSIT_KEY_VERSION,
     "refusal": "missing:" + TRANSIT_KEY_VERSION},
    {"case": "version zero", "set": {TRANSIT_KEY_VERSION: "0"},
     "refusal": "malformed:" + TRANSIT_KEY_VERSION},
    {"case": "version negative", "set": {TRANSIT_KEY_VERSION: "-3"},
     "refusal": "malformed:" + TRANSIT_KEY_VERSION},
    {"case": "version not an integer", "set": {TRANSIT_KEY_VERSION: "3.0"},
     "refusal": "malformed:" + TRANSIT_KEY_VERSION},
    {"case": "version beyond 32 bits", "set": {TRANSIT_KEY_VERSION: "4294967296"},
     "refusal": "malformed:" + TRANSIT_KEY_VERSION},
    {"case": "version with leading zero (stricter than preview)",
     "set": {TRANSIT_KEY_VERSION: "03"}, "refusal": "malformed:" + TRANSIT_KEY_VERSION},
    {"case": "version with plus sign (stricter than preview)",
     "set": {TRANSIT_KEY_VERSION: "+3"}, "refusal": "malformed:" + TRANSIT_KEY_VERSION},
    {"case": "missing key-id hash", "drop": KEY_ID_HASH, "refusal": "missing:" + KEY_ID_HASH},
    {"case": "key-id hash of 44 characters", "set": {KEY_ID_HASH: digest("x") + "A"},
     "refusal": "malformed:" + KEY_ID_HASH},
    {"case": "key-id hash padded", "set": {KEY_ID_HASH: digest("x") + "="},
     "refusal": "malformed:" + KEY_ID_HASH},
    {"case": "key-id hash in the standard alphabet", "set": {KEY_ID_HASH: "+" * 42 + "A"},
     "refusal": "malformed:" + KEY_ID_HASH},
    {"case": "missing mount hash", "drop": TRANSIT_MOUNT_HASH,
     "refusal": "missing:" + TRANSIT_MOUNT_HASH},
    {"case": "mount hash with non-zero trailing bits (stricter than preview)",
     "set": {TRANSIT_MOUNT_HASH: non_canonical_digest()},
     "refusal": "malformed:" + TRANSIT_MOUNT_HASH},
    {"case": "missing key hash", "drop": TRANSIT_KEY_HASH,
     "refusal": "missing:" + TRANSIT_KEY_HASH},
    {"case": "bad key hash", "set": {TRANSIT_KEY_HASH: "not-base64url-sha256"},
     "refusal": "malformed:" + TRANSIT_KEY_HASH},
    {"case": "malformed namespace hash", "add": {NAMESPACE_HASH: "team-a/child"},
     "refusal": "malformed:" + NAMESPACE_HASH},
    {"case": "empty namespace hash", "add": {NAMESPACE_HASH: ""},
     "refusal": "missing:" + NAMESPACE_HASH},
    {"case": "missing plugin version", "drop": PLUGIN_VERSION,
     "refusal": "missing:" + PLUGIN_VERSION},
    {"case": "empty plugin version", "set": {PLUGIN_VERSION: ""},
     "refusal": "missing:" + PLUGIN_VERSION},
    {"case": "non-FQDN key", "add": {"provider": PROVIDER_KIND}, "refusal": "key-not-fqdn"},
    {"case": "key with a slash (pre-preview layout)",
     "add": {"kms.openbao.org/provider": PROVIDER_KIND}, "refusal": "key-not-fqdn"},
    {"case": "key in upper case", "add": {"Provider.kms.openbao.org": PROVIDER_KIND},
     "refusal": "key-not-fqdn"},
    {"case": "key with an underscore", "add": {"a_b.kms.openbao.org": "x"},
     "refusal": "key-not-fqdn"},
    {"case": "key label starting with a hyphen", "add": {"-a.kms.openbao.org": "x"},
     "refusal": "key-not-fqdn"},
    {"case": "key with an empty label", "add": {"a..kms.openbao.org": "x"},
     "refusal": "key-not-fqdn"},
    {"case": "key label longer than 63", "add": {"a" * 64 + ".kms.openbao.org": "x"},
     "refusal": "key-not-fqdn"},
    {"case": "key longer than 253", "add": {".".join(["a" * 63] * 4): "x"},
     "refusal": "key-not-fqdn"},
    {"case": "key with one label", "add": {"localhost": "x"}, "refusal": "key-not-fqdn"},
]

# Applied to every vector; Annotations::parse accepts and the binding still matches.
TOLERATED = [
    {"case": "extra informational key", "add": {"note.kms.openbao.org": "anything"}},
    {"case": "extra key of another domain", "add": {"example.com": "x"}},
    {"case": "extra key with a trailing dot", "add": {"note.example.com.": "x"}},
    {"case": "extra key of 253 characters",
     "add": {".".join(["a" * 63] * 3 + ["b" * 61]): "x"}},
]

# Parse succeeds but the annotations do not name the vector's key; "mismatch" is the annotation
# named first (version, key-id hash, mount hash, key hash, namespace hash). "appliesTo" is all,
# namespaced or unnamespaced.
MISMATCHED = [
    {"case": "other version", "appliesTo": "all", "set": {TRANSIT_KEY_VERSION: "2"},
     "mismatch": TRANSIT_KEY_VERSION},
    {"case": "other key_id", "appliesTo": "all",
     "set": {KEY_ID_HASH: digest("obk2.ig7zS9_yvQrdlcvWgJUhA5q_fQYupc5jRX5MzhAMQSl")},
     "mismatch": KEY_ID_HASH},
    {"case": "other mount id", "appliesTo": "all",
     "set": {TRANSIT_MOUNT_HASH: digest("transit-other")}, "mismatch": TRANSIT_MOUNT_HASH},
    {"case": "other key lineage", "appliesTo": "all",
     "set": {TRANSIT_KEY_HASH: digest("01HXOTHERLINEAGE")}, "mismatch": TRANSIT_KEY_HASH},
    {"case": "namespace hash on an unnamespaced key", "appliesTo": "unnamespaced",
     "add": {NAMESPACE_HASH: digest("team-a/child")}, "mismatch": NAMESPACE_HASH},
    {"case": "namespace hash dropped", "appliesTo": "namespaced", "drop": NAMESPACE_HASH,
     "mismatch": NAMESPACE_HASH},
    {"case": "other namespace", "appliesTo": "namespaced",
     "set": {NAMESPACE_HASH: digest("team-b")}, "mismatch": NAMESPACE_HASH},
]


def main():
    check_golden()
    vectors = []
    for vector in VECTORS:
        built = dict(vector, expected=expected(vector["input"]))
        check_vector(built)
        vectors.append(built)
    assert len({v["expected"]["keyId"] for v in vectors}) == len(vectors)
    document = {
        "description": "Extra wire format v1 vectors, same shape as wire-v1.json. Derived by "
                       "derive_vectors.py from the written rules (independently of the Rust "
                       "code), after checking that the same rules reproduce wire-v1.json. "
                       "Inputs may add transitMountPath and transitKeyName (for "
                       "identityFingerprint); expected adds apiserverKeyIdHash and "
                       "identityFingerprint. malformedAnnotations and toleratedAnnotations "
                       "apply to every vector; mismatchedAnnotations as appliesTo says.",
        "vectors": vectors,
        "malformedAnnotations": MALFORMED,
        "toleratedAnnotations": TOLERATED,
        "mismatchedAnnotations": MISMATCHED,
    }
    # ASCII-only output: U+2028 and friends appear as JSON escapes, never as invisible bytes.
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=True) + "\n")


if __name__ == "__main__":
    main()
