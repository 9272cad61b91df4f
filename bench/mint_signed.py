"""Signs COUNT POSTs of bench/signed.lua's 1 KiB body to /api/send/bulk, each with its own
nonce, timestamped now: one "<timestamp> <nonce> <signature>" line each.

SCHEME "seed" (the default): HMAC-SHA256 over method, target, body, timestamp and nonce, as
src/auth/hmac_signature does; the signature in lowercase hex.
SCHEME "rfc9421": RFC 9421 with hmac-sha256 over "@method", "@request-target" and
"content-digest" (RFC 9530's sha-256 of the body), keyid "marketing", as src/auth/http_signature
checks it; the signature in base64, for `Signature: sig1=:<it>:`.

usage: mint_signed.py SECRET COUNT OUT [SCHEME]
"""
import base64
import hashlib
import hmac
import sys
import time

secret, count, out = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
scheme = sys.argv[4] if len(sys.argv) > 4 else "seed"
body = b"x" * 1024
ts = str(int(time.time()))
run = f"{time.time_ns():x}"
digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def seed(nonce):
    message = b"\n".join([b"POST", b"/api/send/bulk", body, ts.encode(), nonce.encode()])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def rfc9421(nonce):
    # bench/signed.lua sends exactly these parameters in Signature-Input.
    params = (f'("@method" "@request-target" "content-digest");created={ts};'
              f'keyid="marketing";alg="hmac-sha256";nonce="{nonce}"')
    base = (f'"@method": POST\n"@request-target": /api/send/bulk\n'
            f'"content-digest": {digest}\n"@signature-params": {params}')
    return base64.b64encode(hmac.new(secret, base.encode(), hashlib.sha256).digest()).decode()


sign = {"seed": seed, "rfc9421": rfc9421}[scheme]
with open(out, "w") as f:
    for n in range(count):
        nonce = f"{run}-{n}"
        f.write(f"{ts} {nonce} {sign(nonce)}\n")
