"""A third-party JWT issuer for tests/policies_auth.rs: PyJWT and cryptography make the keys
and sign the tokens; headway only ever sees public keys (and the HS256 secret).

Usage: mint_jwt.py OUT_DIR ISSUER AUDIENCE. Writes rsa_pub.pem, ec_pub.pem, hs.secret,
jwks.json (kids rsa-1, ec-1), jwks_rotated.json (rsa-1 and a new rsa-2), tokens.json.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

out, issuer, audience = sys.argv[1], sys.argv[2], sys.argv[3]
now = int(time.time())


def pem(private):
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def jwk(private, kid, alg):
    d = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private.public_key()))
    d.update(kid=kid, alg=alg, use="sig")
    return d


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write(name, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(out, name), mode) as f:
        f.write(data)


rsa1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rsa2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec1 = ec.generate_private_key(ec.SECP256R1())
secret = os.urandom(32).hex().encode()

write("rsa_pub.pem", pem(rsa1))
write("ec_pub.pem", pem(ec1))
write("hs.secret", secret + b"\n")
write("jwks.json", json.dumps({"keys": [jwk(rsa1, "rsa-1", "RS256"), jwk(ec1, "ec-1", "ES256")]}))
write(
    "jwks_rotated.json",
    json.dumps({"keys": [jwk(rsa1, "rsa-1", "RS256"), jwk(rsa2, "rsa-2", "RS256")]}),
)


def claims(**changes):
    c = {"iss": issuer, "aud": audience, "sub": "alice", "exp": now + 300, "iat": now}
    c.update(changes)
    return {k: v for k, v in c.items() if v is not None}


def rs(c, key=rsa1, kid="rsa-1"):
    return jwt.encode(c, key, algorithm="RS256", headers={"kid": kid})


def unsigned(header, c):
    """`alg: none`, and the HS256-with-the-RSA-public-key confusion, which PyJWT refuses to
    make (rightly): built by hand."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(c).encode())
    if header["alg"] == "none":
        return head + "."
    mac = hmac.new(pem(rsa1), head.encode(), hashlib.sha256).digest()
    return head + "." + b64(mac)


good_rs = rs(claims())
tokens = {
    "rs256": good_rs,
    "es256": jwt.encode(claims(sub="bob"), ec1, algorithm="ES256", headers={"kid": "ec-1"}),
    "hs256": jwt.encode(claims(sub="carol"), secret, algorithm="HS256", headers={"kid": "hs-1"}),
    "rs256_new_key": rs(claims(sub="dave"), rsa2, "rsa-2"),
    "expired": rs(claims(exp=now - 600)),
    "not_yet_valid": rs(claims(nbf=now + 600)),
    "wrong_audience": rs(claims(aud="someone-else")),
    "wrong_issuer": rs(claims(iss="https://evil.test")),
    "no_exp": rs(claims(exp=None)),
    # GHSA-h395-gr6q-cpjc: a claim of the wrong JSON type must not count as absent.
    "string_exp": rs(claims(exp=str(now + 300))),
    "string_nbf": rs(claims(nbf=str(now + 600))),
    "bad_signature": rs(claims(), rogue, "rsa-1"),
    "tampered": good_rs.rsplit(".", 2)[0] + "." + b64(json.dumps(claims(sub="root")).encode())
    + "." + good_rs.rsplit(".", 1)[1],
    "alg_none": unsigned({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims()),
    "hs256_with_rsa_public_key": unsigned({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims()),
    "garbage": "not.a.token",
    # Verified, cached by the gateway, then expired while in its cache.
    "short_lived": rs(claims(sub="erin", exp=now + 6)),
    "short_lived_exp": now + 6,
}
write("tokens.json", json.dumps(tokens))
