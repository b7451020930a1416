#!/usr/bin/env python3
"""Cross-checks `outbox sign` against botocore, an independent SigV4 signer.

Generates random requests (seeded) in the three modes of `outbox sign` (header for non-S3
services, s3-header, s3-presign), signs each with botocore at a fixed time, runs them all
through `outbox sign` once, and compares canonical requests and signatures. Amazon MSK's IAM
tokens (mode msk-iam-token) are compared byte for byte with the token made the way AWS's
aws-msk-iam-sasl-signer-python makes it: botocore's SigV4QueryAuth on the kafka-cluster
Connect request, a User-Agent parameter added after signing, base64url without padding.

The generator stays inside what both signers define the same way. Where they differ on
purpose it says so: botocore drops the trailing '/' of a path ending in '..' (RFC 3986 keeps
it; so do we), uses the wire query as given instead of decoding and re-encoding it, and
collapses repeated keys when pre-signing.

Usage: sigv4_botocore_crosscheck.py PATH_TO_OUTBOX [COUNT] [SEED]
"""
import base64
import datetime
import json
import random
import subprocess
import sys
from unittest import mock
from urllib.parse import parse_qs, quote, urlencode, urlparse, urlunparse

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
FIXED_TIME = datetime.datetime(2026, 11, 22, 23, 59, 59)


class FixedDatetime(datetime.datetime):
    @classmethod
    def utcnow(cls):
        return FIXED_TIME


def encode(text):
    return quote(text, safe="-_.~")


def random_text(rng, alphabet, low, high):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def random_segment(rng):
    # Wire form: unreserved characters and escapes, as a client would send them.
    parts = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.random()
        if kind < 0.6:
            parts.append(random_text(rng, UNRESERVED, 1, 6))
        else:
            parts.append(encode(rng.choice([" ", "$", "/", "+", "=", "&", "%", "\u1234", "é", "*", "@", ":"])))
    return "".join(parts)


def random_path(rng, s3):
    segments = []
    for _ in range(rng.randint(0, 5)):
        r = rng.random()
        if not s3 and r < 0.1:
            segments.append(".")
        elif not s3 and r < 0.2:
            segments.append("..")
        elif r < 0.3:
            segments.append("")  # '//'
        else:
            segments.append(random_segment(rng))
    while segments and segments[-1] in (".", ".."):
        segments.pop()  # see the module docstring
    path = "/" + "/".join(segments)
    if rng.random() < 0.3 and segments:
        path += "/"
    return path


def random_query(rng, unique_keys):
    keys = ["Action", "Param", "param", "X-Custom", "a", "Z", "\u00e9t\u00e9", "k y"]
    pairs, used = [], set()
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(keys)
        if unique_keys and key in used:
            continue
        used.add(key)
        value = "".join(rng.choice(UNRESERVED + " /+=&%é") for _ in range(rng.randint(0, 8)))
        pairs.append(encode(key) + ("=" + encode(value) if value or rng.random() < 0.5 else ""))
    return "&".join(pairs)


def random_headers(rng):
    # No Date: botocore replaces it with its own and then leaves X-Amz-Date out.
    names = ["X-Custom-A", "x-custom-a", "Content-Type", "X-Amz-Meta-Note", "X-Amz-Target"]
    headers = []
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(names)
        value = rng.choice(["", " ", "\t"]) + " ".join(
            random_text(rng, UNRESERVED + "\"'(),;:", 1, 6) for _ in range(rng.randint(1, 3))
        ).replace(" ", rng.choice([" ", "  ", " \t "])) + rng.choice(["", "  "])
        headers.append([name, value])
    return headers


def random_case(rng, index):
    mode = rng.choice(["header", "s3-header", "s3-presign"])
    s3 = mode != "header"
    scheme, host = rng.choice([("https", "sqs.eu-west-1.amazonaws.com"), ("http", "127.0.0.1:4566"),
                               ("https", "bucket.s3.us-east-1.amazonaws.com"), ("http", "localhost:9000")])
    path = random_path(rng, s3)
    query = random_query(rng, unique_keys=mode == "s3-presign")
    url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
    token = rng.choice([None, None, "FwoGZXIvYXdzE+token/with==" + random_text(rng, UNRESERVED, 4, 12)])
    case = {
        "id": f"case-{index}",
        "mode": mode,
        "method": rng.choice(["GET", "POST", "PUT"]),
        "url": url,
        "headers": random_headers(rng),
        "region": rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2"]),
        "service": "s3" if s3 else rng.choice(["sqs", "service"]),
        "credentials": {"access_key": "AKID" + random_text(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 16, 16),
                        "secret_key": random_text(rng, UNRESERVED + "/+", 40, 40)},
        "timestamp": FIXED_TIME.strftime("%Y%m%dT%H%M%SZ"),
    }
    if token:
        case["credentials"]["token"] = token
    if mode == "s3-presign":
        case["expires"] = rng.randint(1, 604800)
    else:
        case["body"] = random_text(rng, UNRESERVED + " {}\":,", 0, 300)
    return case


def random_msk_case(rng, index):
    case = {
        "id": f"msk-{index}",
        "mode": "msk-iam-token",
        "region": rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1"]),
        "credentials": {"access_key": "ASIA" + random_text(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 16, 16),
                        "secret_key": random_text(rng, UNRESERVED + "/+", 40, 40)},
        "timestamp": FIXED_TIME.strftime("%Y%m%dT%H%M%SZ"),
        "user_agent": rng.choice(["outbox-msk-iam", "aws-msk-iam-sasl-signer-python/1.0.1"]),
    }
    if rng.random() < 0.5:
        case["credentials"]["token"] = "IQoJb3JpZ2luX2Vj/+=" + random_text(rng, UNRESERVED + "/+=", 20, 60)
    return case


def reference_msk_token(case):
    """aws-msk-iam-sasl-signer-python's __construct_auth_token and expiry, on botocore."""
    region = case["region"]
    creds = Credentials(case["credentials"]["access_key"], case["credentials"]["secret_key"],
                        case["credentials"].get("token"))
    request = AWSRequest(method="GET", url=f"https://kafka.{region}.amazonaws.com/",
                         params={"Action": "kafka-cluster:Connect"})
    with mock.patch("botocore.auth.datetime.datetime", FixedDatetime):
        SigV4QueryAuth(creds, "kafka-cluster", region, expires=900).add_auth(request)
    parsed = urlparse(request.url)
    query = parse_qs(parsed.query)
    query["User-Agent"] = [case["user_agent"]]
    url = urlunparse(parsed._replace(query=urlencode(query, doseq=True)))
    token = base64.urlsafe_b64encode(url.encode("utf-8")).decode("utf-8").rstrip("=")
    signed_at = datetime.datetime.strptime(parse_qs(parsed.query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    expires_ms = (int(signed_at.replace(tzinfo=datetime.timezone.utc).timestamp()) + 900) * 1000
    return token, expires_ms


def botocore_sign(case):
    creds = Credentials(case["credentials"]["access_key"], case["credentials"]["secret_key"],
                        case["credentials"].get("token"))
    request = AWSRequest(method=case["method"], url=case["url"], data=case.get("body", "").encode())
    for name, value in case["headers"]:
        request.headers[name] = value  # appends: repeated names are kept
    if case["mode"] == "header":
        auth = SigV4Auth(creds, case["service"], case["region"])
    elif case["mode"] == "s3-header":
        auth = S3SigV4Auth(creds, case["service"], case["region"])
    else:
        auth = S3SigV4QueryAuth(creds, case["service"], case["region"], expires=case["expires"])
    captured = {}
    original = auth.canonical_request

    def capture(req):
        captured["canonical_request"] = original(req)
        return captured["canonical_request"]

    auth.canonical_request = capture
    with mock.patch("botocore.auth.datetime.datetime", FixedDatetime):
        auth.add_auth(request)
    if case["mode"] == "s3-presign":
        signature = request.url.rsplit("X-Amz-Signature=", 1)[1]
    else:
        signature = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    return captured["canonical_request"], signature


def main():
    outbox = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 20261122
    rng = random.Random(seed)
    cases = [random_case(rng, i) for i in range(count)]
    msk_cases = [random_msk_case(rng, i) for i in range(max(1, count // 10))]
    cases += msk_cases
    result = subprocess.run([outbox, "sign", "-"], input=json.dumps(cases).encode(), capture_output=True)
    if result.returncode != 0:
        print(f"outbox sign failed ({result.returncode}): {result.stderr.decode()}")
        return 1
    ours = {r["id"]: r for r in json.loads(result.stdout)}
    mismatches = 0
    by_mode = {}
    for case in msk_cases:
        token, expires_ms = reference_msk_token(case)
        mine = ours[case["id"]]
        by_mode[case["mode"]] = by_mode.get(case["mode"], 0) + 1
        if mine["token"] != token or mine["expires_at_ms"] != expires_ms:
            mismatches += 1
            if mismatches <= 3:
                print(f"MISMATCH {case['id']}: {json.dumps(case)}")
                print(f"--- reference token ({expires_ms}):\n{base64.urlsafe_b64decode(token + '===').decode()}")
                print(f"--- outbox ({mine['expires_at_ms']}):\n{base64.urlsafe_b64decode(mine['token'] + '===').decode()}")
    for case in cases:
        if case["mode"] == "msk-iam-token":
            continue
        canonical, signature = botocore_sign(case)
        mine = ours[case["id"]]
        by_mode[case["mode"]] = by_mode.get(case["mode"], 0) + 1
        if mine["signature"] != signature or mine["canonical_request"] != canonical:
            mismatches += 1
            if mismatches <= 3:
                print(f"MISMATCH {case['id']}: {json.dumps(case)}")
                print(f"--- botocore canonical request:\n{canonical}\n--- outbox:\n{mine['canonical_request']}")
    modes = ", ".join(f"{n} {m}" for m, n in sorted(by_mode.items()))
    print(f"botocore cross-check (seed {seed}): {len(cases)} requests ({modes}), {mismatches} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
