#!/usr/bin/env python3
"""A client of api-warden that signs with a standard RFC 9421 library (PyPI
http-message-signatures), for the interoperability tests.

Usage: rfc9421_client.py '{"url": ..., "method": ..., "key_id": ..., "secret": ...,
                           "body": ..., "nonce": ..., "components": [...], "tamper": ...}'
Prints {"status": ..., "body": ..., "signature_input": ...} as JSON.
"""
import json
import sys

import requests
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

args = json.loads(sys.argv[1])
body = args.get("body")
body = body.encode() if body is not None else None
request = requests.Request(
    args["method"], args["url"], data=body, headers={"X-Forwarded-For": "192.168.1.50"}
).prepare()
signer = HTTPMessageSigner(
    signature_algorithm=algorithms.HMAC_SHA256,
    key_resolver=MappingKeyResolver(public_keys={}, private_keys={args["key_id"]: args["secret"].encode()}),
)
signer.sign(
    request,
    key_id=args["key_id"],
    nonce=args.get("nonce"),
    label="sig1",
    covered_component_ids=tuple(args.get("components", ["@method", "@authority", "@target-uri"])),
    body=body,
)
if args.get("tamper") and body is not None:
    request.body = body.replace(b"a@", b"evil@")
answer = requests.Session().send(request, timeout=10)
print(json.dumps({
    "status": answer.status_code,
    "body": answer.text,
    "signature_input": request.headers.get("Signature-Input"),
    "content_digest": request.headers.get("Content-Digest"),
}))
