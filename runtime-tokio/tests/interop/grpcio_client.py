"""Drive the plugin's KMS v2 service with gRPC C-core (the PyPI package grpcio).

Usage: grpcio_client.py SOCKET_PATH AUTHORITY_MODE

AUTHORITY_MODE picks the HTTP/2 :authority the client sends over the Unix socket:
  default    what C-core chooses itself for unix:// targets (the percent-encoded socket path)
  localhost  what grpc-go sends
  empty      an empty :authority
  path       the raw socket path, slashes included (what grpc-java and older clients send)

Calls Status, Encrypt and Decrypt once each and prints one JSON object on stdout:
{"authority": ..., "status": {...}, "encrypt": {...}, "roundtrip": true} or, when a call fails,
{"authority": ..., "error": {"method": ..., "code": ..., "details": ...}} (exit code 1).

The messages are encoded by the small protobuf codec below, so the only third-party code on the
wire path is grpcio's transport: the point of the test.
"""

import json
import os
import sys

import grpc

SERVICE = "/v2.KeyManagementService/"
TIMEOUT_SECONDS = 10


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number, payload):
    """A length-delimited field (wire type 2): bytes, strings, messages."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def parse(data):
    """Length-delimited fields of a message as {number: [bytes, ...]}; other wire types fail."""
    fields = {}
    i = 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire != 2:
            raise ValueError(f"unexpected wire type {wire} for field {number}")
        length, i = read_varint(data, i)
        fields.setdefault(number, []).append(data[i : i + length])
        i += length
    return fields


def read_varint(data, i):
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def text(fields, number):
    return b"".join(fields.get(number, [b""])).decode()


def blob(fields, number):
    return b"".join(fields.get(number, [b""]))


def annotations(fields, number):
    """A map<string, bytes> field: each entry is a message {1: key, 2: value}."""
    entries = {}
    for entry in fields.get(number, []):
        pair = parse(entry)
        entries[text(pair, 1)] = blob(pair, 2)
    return entries


def encode_annotations(number, entries):
    return b"".join(field(number, field(1, k.encode()) + field(2, v)) for k, v in sorted(entries.items()))


def main():
    socket_path, mode = sys.argv[1], sys.argv[2]
    options = []
    if mode == "localhost":
        options.append(("grpc.default_authority", "localhost"))
    elif mode == "empty":
        options.append(("grpc.default_authority", ""))
    elif mode == "path":
        options.append(("grpc.default_authority", socket_path))
    elif mode != "default":
        raise SystemExit(f"unknown authority mode {mode!r}")
    identity = lambda message: message
    result = {"authority": mode}
    with grpc.insecure_channel("unix://" + socket_path, options=options) as channel:
        def call(method, request):
            stub = channel.unary_unary(SERVICE + method, request_serializer=identity, response_deserializer=identity)
            try:
                return parse(stub(request, timeout=TIMEOUT_SECONDS))
            except grpc.RpcError as error:
                result["error"] = {"method": method, "code": error.code().name, "details": error.details()}
                print(json.dumps(result))
                sys.exit(1)

        status = call("Status", b"")
        result["status"] = {"version": text(status, 1), "healthz": text(status, 2), "key_id": text(status, 3)}
        plaintext = os.urandom(32)
        encrypted = call("Encrypt", field(1, plaintext) + field(2, b"grpcio-uid"))
        key_id = text(encrypted, 2)
        notes = annotations(encrypted, 3)
        result["encrypt"] = {"key_id": key_id, "annotation_keys": sorted(notes), "ciphertext_bytes": len(blob(encrypted, 1))}
        decrypted = call(
            "Decrypt",
            field(1, blob(encrypted, 1)) + field(2, b"grpcio-uid") + field(3, key_id.encode()) + encode_annotations(4, notes),
        )
        result["roundtrip"] = blob(decrypted, 1) == plaintext
    print(json.dumps(result))


if __name__ == "__main__":
    main()
