"""Signs COUNT POSTs of bench/signed.lua's 1 KiB body to /api/send/bulk with the seed's scheme
(HMAC-SHA256 over method, target, body, timestamp and nonce, as src/auth/hmac_signature does),
each with its own nonce, timestamped now: one "<timestamp> <nonce> <signature>" line each.

usage: mint_signed.py SECRET COUNT OUT
"""
import hashlib
import hmac
import sys
import time

secret, count, out = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
body = b"x" * 1024
ts = str(int(time.time()))
run = f"{time.time_ns():x}"
with open(out, "w") as f:
    for n in range(count):
        nonce = f"{run}-{n}"
        message = b"\n".join([b"POST", b"/api/send/bulk", body, ts.encode(), nonce.encode()])
        f.write(f"{ts} {nonce} {hmac.new(secret, message, hashlib.sha256).hexdigest()}\n")
