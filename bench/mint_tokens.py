#!/usr/bin/env python3
"""Mints COUNT distinct JWTs for the benchmark with a fresh key pair: ES256, ES384, RS256, PS256
or EdDSA.

Writes PREFIX.tokens (one per line, each with its own jti) and PREFIX.jwks (the public key as
a JWK set, kid "bench"). Uses `cryptography` from the Makefile's virtualenv.
usage: mint_tokens.py ALG COUNT PREFIX
"""
import base64
import json
import sys
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int) -> str:
    return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def main() -> None:
    alg, count, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if alg in ("ES256", "ES384"):
        curve, digest, size, crv = {
            "ES256": (ec.SECP256R1(), hashes.SHA256(), 32, "P-256"),
            "ES384": (ec.SECP384R1(), hashes.SHA384(), 48, "P-384"),
        }[alg]
        key = ec.generate_private_key(curve)
        pub = key.public_key().public_numbers()
        jwk = {"kty": "EC", "crv": crv, "x": b64(pub.x.to_bytes(size, "big")),
               "y": b64(pub.y.to_bytes(size, "big"))}

        def sign(data: bytes) -> bytes:
            r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    elif alg in ("RS256", "PS256"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = key.public_key().public_numbers()
        jwk = {"kty": "RSA", "n": uint(pub.n), "e": uint(pub.e)}
        # PS256: MGF1 with SHA-256 and a salt as long as the digest (RFC 7518, 3.5).
        scheme = padding.PKCS1v15() if alg == "RS256" else padding.PSS(
            mgf=padding.MGF1(hashes.SHA256()), salt_length=32)

        def sign(data: bytes) -> bytes:
            return key.sign(data, scheme, hashes.SHA256())
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        from cryptography.hazmat.primitives import serialization
        raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
        sign = key.sign
    else:
        raise SystemExit(f"unknown alg {alg}")
    jwk.update({"kid": "bench", "alg": alg, "use": "sig"})
    now = int(time.time())
    header = b64(json.dumps({"alg": alg, "typ": "JWT", "kid": "bench"}).encode())
    with open(prefix + ".tokens", "w") as out:
        for i in range(count):
            claims = {"client_id": "marketing", "aud": "email-api", "iat": now,
                      "exp": now + 7200, "jti": f"bench-{i}"}
            signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
            out.write(f"{signing_input}.{b64(sign(signing_input.encode()))}\n")
    with open(prefix + ".jwks", "w") as out:
        json.dump({"keys": [jwk]}, out)


if __name__ == "__main__":
    main()
