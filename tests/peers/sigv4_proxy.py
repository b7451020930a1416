#!/usr/bin/env python3
"""A proxy for the integration tests, in front of an emulator that checks no signatures.

It checks every request's SigV4 signature with botocore (an independent signer) and
refuses a wrong one with 403, as AWS would. On a seeded schedule it also injects faults:

  500, 503   an HTTP error of that status (the request is not forwarded)
  throttle   400 ThrottlingException (not forwarded)
  reset      the connection closed before forwarding
  lost       forwarded, then the connection closed without the reply
  slow       forwarded, the reply held back for --slow-ms
  partial    SendMessageBatch only: some entries are not forwarded and come back in Failed
             with SenderFault false (ServiceUnavailable)
  md5        forwarded, and the reply's MD5OfMessageBody values altered (SQS only)
  refuse_batch  SendMessageBatch only: 400 InvalidParameterValue for the whole batch

Errors take the service's form: SQS JSON (__type, message), or S3 XML (<Error><Code>), where
throttling is 503 SlowDown.

With --clock-offset SECONDS it plays a server whose clock is that far ahead: requests
signed more than 5 minutes off its time are refused as AWS does ("Signature expired"),
and its Date header tells the client the right time.

Pre-signed requests (X-Amz-Signature in the query) are passed through: the server behind
(s3rver) checks those signatures and their expiry itself.

GET /__proxy/stats returns the counters as JSON; GET /__proxy/last the headers and (the
first 64 KiB of) the body of the last signed request; GET /__proxy/outage?seconds=S starts an outage: for S seconds every request
has its connection closed unanswered (counted as outage_drops); GET /__proxy/lose-next?count=N
forwards the next N signed requests and closes their connections without the reply;
GET /__proxy/conflict-next?count=N answers the next N PUTs 409 ConditionalRequestConflict;
GET /__proxy/precondition-next?count=N the next N PUTs 412 PreconditionFailed.
Listens on 127.0.0.1 only.

As S3 does, for PutObject: an x-amz-checksum-crc32 or -crc64nvme header is checked against
the body (400 BadDigest when it differs; counted as checksums_verified / checksum_failures),
and If-None-Match: * is answered 412 PreconditionFailed when the key exists upstream (s3rver
ignores the header). --refuse-checksums and --refuse-conditional-writes play S3-compatible
stores that reject those headers.

Usage: sigv4_proxy.py --upstream HOST:PORT [--port N] [--service sqs] [--access-key K
       --secret-key S] [--faults 500=0.05,lost=0.05,...] [--seed N] [--clock-offset S]
"""
import argparse
import base64
import datetime
import email.utils
import http.client
import http.server
import json
import random
import re
import socket
import sys
import threading
import time
import zlib
from unittest import mock

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

def _crc64nvme_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x9A6C9329AC4BC9B5 if c & 1 else c >> 1
        table.append(c)
    return table


CRC64NVME_TABLE = _crc64nvme_table()


def crc64nvme(data):
    """CRC-64/NVME, byte at a time (an implementation independent of outbox's)."""
    crc = 0xFFFFFFFFFFFFFFFF
    table = CRC64NVME_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFFFFFFFFFF


def checksum_value(algorithm, body):
    """The base64 of the big-endian checksum, as S3 writes x-amz-checksum-* values."""
    if algorithm == "crc32":
        return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    return base64.b64encode(crc64nvme(body).to_bytes(8, "big")).decode()


AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;\-]+), Signature=([0-9a-f]{64})$")
SIGNING_LOCK = threading.Lock()
FAULT_KINDS = ("500", "503", "throttle", "reset", "lost", "slow", "partial", "md5", "refuse_batch")


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.rng = random.Random(args.seed)
        self.faults = {}
        for item in filter(None, args.faults.split(",")):
            kind, _, p = item.partition("=")
            if kind not in FAULT_KINDS:
                sys.exit(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")
            self.faults[kind] = float(p)
        self.stats = {"requests": 0, "signatures_checked": 0, "signature_failures": 0,
                      "skew_refusals": 0, "forwarded": 0, "presigned_forwarded": 0,
                      "outage_drops": 0, "checksums_verified": 0, "checksum_failures": 0,
                      "conditional_refusals": 0, "lost_replies": 0, "conflicts": 0,
                      "faults": {k: 0 for k in FAULT_KINDS}}
        self.last = {}
        self.outage_until = 0.0
        self.lose_next = 0
        self.conflict_next = 0
        self.precondition_next = 0

    def pick_fault(self, target):
        is_batch = target.endswith("SendMessageBatch")
        with self.lock:
            r = self.rng.random()
            for kind, p in self.faults.items():
                if r < p:
                    if kind in ("partial", "refuse_batch") and not is_batch:
                        return None
                    if kind == "md5" and "SendMessage" not in target:
                        return None
                    self.stats["faults"][kind] += 1
                    return kind
                r -= p
            return None

    def count(self, key):
        with self.lock:
            self.stats[key] += 1


class FixedClock(datetime.datetime):
    moment = None

    @classmethod
    def utcnow(cls):
        return cls.moment


def expected_signature(method, host, path, headers, body, auth, args):
    """The signature botocore computes for this request, or an error text."""
    m = AUTH_RE.match(auth)
    if not m:
        return None, "malformed Authorization header"
    key, _date, region, service, signed, signature = m.groups()
    keys = {args.access_key: args.secret_key}
    keys.update(k.split(":", 1) for k in args.also_key)
    if key not in keys:
        return None, f"unknown access key {key}"
    if service != args.service:
        return None, f"signed for service {service}, expected {args.service}"
    lower = {k.lower(): v for k, v in headers.items()}
    amz_date = lower.get("x-amz-date", "")
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=body)
    for name in signed.split(";"):
        if name == "host":
            continue
        if name not in lower:
            return None, f"signed header {name} missing"
        request.headers[name] = lower[name]
    creds = Credentials(key, keys[key], lower.get("x-amz-security-token"))
    auth_class = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = auth_class(creds, service, region)
    moment = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    with SIGNING_LOCK, mock.patch("datetime.datetime", FixedClock):  # the patch is global
        FixedClock.moment = moment
        signer.add_auth(request)  # signs every header it is given: just the signed ones
    got = re.search(r"Signature=([0-9a-f]{64})", request.headers["Authorization"]).group(1)
    botocore_signed = re.search(r"SignedHeaders=([^,]+)", request.headers["Authorization"]).group(1)
    if botocore_signed != signed:
        return None, f"signed headers {signed} differ from botocore's {botocore_signed}"
    return (got, signature), None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sigv4-proxy"

    def log_message(self, fmt, *a):
        pass

    def server_time(self):
        return time.time() + self.server.state.args.clock_offset

    def reply(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response_only(status)
        self.send_header("Date", email.utils.formatdate(self.server_time(), usegmt=True))
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def aws_error(self, status, code, message, query_error=None):
        if self.server.state.args.service == "s3":
            body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>"
                    f"<Message>{message}</Message><RequestId>proxy</RequestId></Error>")
            return self.reply(status, body, [("Content-Type", "application/xml")])
        headers = [("Content-Type", "application/x-amz-json-1.0"),
                   ("x-amzn-RequestId", "proxy-" + str(random.getrandbits(32)))]
        if query_error:
            headers.append(("x-amzn-query-error", query_error))
        body = json.dumps({"__type": "com.amazonaws.sqs#" + code, "message": message})
        self.reply(status, body, headers)

    def abort_connection(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        if self.path.startswith("/__proxy/outage?seconds="):
            seconds = float(self.path.split("=", 1)[1])
            with self.server.state.lock:
                self.server.state.outage_until = time.monotonic() + seconds
            return self.reply(200, "{}", [("Content-Type", "application/json")])
        for control, attribute in (("/__proxy/lose-next?count=", "lose_next"),
                                   ("/__proxy/conflict-next?count=", "conflict_next"),
                                   ("/__proxy/precondition-next?count=", "precondition_next")):
            if self.path.startswith(control):
                with self.server.state.lock:
                    setattr(self.server.state, attribute, int(self.path.split("=", 1)[1]))
                return self.reply(200, "{}", [("Content-Type", "application/json")])
        if self.path in ("/__proxy/stats", "/__proxy/last"):
            with self.server.state.lock:
                data = self.server.state.stats if self.path.endswith("stats") else self.server.state.last
                self.reply(200, json.dumps(data), [("Content-Type", "application/json")])
            return
        self.handle_request()

    def do_POST(self):
        self.handle_request()

    def do_PUT(self):
        self.handle_request()

    def do_HEAD(self):
        self.handle_request()

    def do_DELETE(self):
        self.handle_request()

    def handle_request(self):
        state = self.server.state
        args = state.args
        if time.monotonic() < state.outage_until:
            state.count("outage_drops")
            return self.abort_connection()
        state.count("requests")
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""

        if "X-Amz-Signature=" in self.path and "Authorization" not in self.headers:
            state.count("presigned_forwarded")
            status, headers, data = self.forward(body)
            return self.reply(status, data, headers)
        with state.lock:
            state.last = {"method": self.command, "path": self.path,
                          "headers": {k.lower(): v for k, v in self.headers.items()},
                          "body": body[:65536].decode("utf-8", "replace")}

        result, error = expected_signature(self.command, self.headers.get("Host", ""), self.path,
                                           dict(self.headers.items()), body,
                                           self.headers.get("Authorization", ""), args)
        state.count("signatures_checked")
        if error is None and result[0] != result[1]:
            error = f"signature mismatch: botocore computes {result[0]}, the request has {result[1]}"
        if error is not None:
            state.count("signature_failures")
            print(f"sigv4_proxy: {self.command} {self.path}: {error}", file=sys.stderr, flush=True)
            return self.aws_error(403, "InvalidSignatureException", error)

        amz_date = self.headers.get("X-Amz-Date", "")
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        if abs(signed_at - self.server_time()) > 300:
            state.count("skew_refusals")
            now = datetime.datetime.fromtimestamp(self.server_time(), datetime.timezone.utc)
            if args.service == "s3":
                return self.aws_error(403, "RequestTimeTooSkewed",
                                      "The difference between the request time and the current time is too large.")
            return self.aws_error(400, "InvalidSignatureException",
                                  f"Signature expired: {amz_date} is now earlier than "
                                  f"{(now - datetime.timedelta(minutes=5)).strftime('%Y%m%dT%H%M%SZ')}")

        if args.service == "s3" and self.command == "PUT":
            refusal = self.check_put(body)
            if refusal:
                return self.aws_error(*refusal)

        target = self.headers.get("X-Amz-Target", "")
        fault = state.pick_fault(target)
        with state.lock:
            if state.lose_next > 0:
                state.lose_next -= 1
                state.stats["lost_replies"] += 1
                fault = "lost"
        if fault == "500":
            return self.aws_error(500, "InternalError", "injected internal error")
        if fault == "503":
            return self.aws_error(503, "ServiceUnavailable", "injected service unavailable")
        if fault == "throttle":
            if args.service == "s3":
                return self.aws_error(503, "SlowDown", "injected: please reduce your request rate")
            return self.aws_error(400, "ThrottlingException", "injected throttling",
                                  "AWS.SimpleQueueService.RequestThrottled;Sender")
        if fault == "refuse_batch":
            return self.aws_error(400, "InvalidParameterValue", "injected: the batch is refused as a whole",
                                  "AWS.SimpleQueueService.InvalidParameterValue;Sender")
        if fault == "reset":
            return self.abort_connection()

        withheld = []
        if fault == "partial":
            request = json.loads(body)
            entries = request["Entries"]
            k = state.rng.randint(1, len(entries))
            withheld = [e["Id"] for e in entries[:k]]
            request["Entries"] = entries[k:]
            body = json.dumps(request).encode()
            if not request["Entries"]:
                return self.reply(200, json.dumps({"Successful": [], "Failed": [
                    {"Id": i, "SenderFault": False, "Code": "ServiceUnavailable",
                     "Message": "injected entry failure"} for i in withheld]}),
                    [("Content-Type", "application/x-amz-json-1.0")])

        status, headers, data = self.forward(body)
        state.count("forwarded")
        if fault == "lost":
            return self.abort_connection()
        if fault == "slow":
            time.sleep(args.slow_ms / 1000)
        if fault == "md5" and status == 200:
            reply = json.loads(data)
            for entry in reply.get("Successful", [reply]):
                if "MD5OfMessageBody" in entry:
                    entry["MD5OfMessageBody"] = "0" * 32
            data = json.dumps(reply).encode()
        if withheld and status == 200:
            reply = json.loads(data)
            reply.setdefault("Failed", []).extend(
                {"Id": i, "SenderFault": False, "Code": "ServiceUnavailable",
                 "Message": "injected entry failure"} for i in withheld)
            data = json.dumps(reply).encode()
        self.reply(status, data, headers)

    def check_put(self, body):
        """S3's checks of a PutObject that s3rver lacks: (status, code, message) to refuse."""
        state = self.server.state
        args = state.args
        lower = {k.lower(): v for k, v in self.headers.items()}
        for name, value in lower.items():
            if not name.startswith("x-amz-checksum-"):
                continue
            algorithm = name[len("x-amz-checksum-"):]
            if args.refuse_checksums:
                return 400, "InvalidArgument", f"x-amz-checksum-{algorithm} is not supported"
            if algorithm not in ("crc32", "crc64nvme"):
                return 400, "InvalidRequest", f"checksum algorithm {algorithm} is not checked here"
            if checksum_value(algorithm, body) != value:
                state.count("checksum_failures")
                return (400, "BadDigest",
                        f"The {algorithm.upper()} you specified did not match the calculated checksum.")
            state.count("checksums_verified")
        with state.lock:
            if state.conflict_next > 0:
                state.conflict_next -= 1
                state.stats["conflicts"] += 1
                return (409, "ConditionalRequestConflict",
                        "A conflicting conditional operation is currently in progress against this "
                        "resource. Please try again.")
            if state.precondition_next > 0:  # as if another writer had the key
                state.precondition_next -= 1
                return (412, "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold")
        if "if-none-match" in lower:
            if args.refuse_conditional_writes:
                return (501, "NotImplemented",
                        "A header you provided implies functionality that is not implemented")
            if lower["if-none-match"] != "*":
                return 400, "InvalidArgument", "If-None-Match takes only *"
            status, _, _ = self.forward(b"", method="HEAD")
            if status == 200:
                state.count("conditional_refusals")
                return (412, "PreconditionFailed",
                        "At least one of the pre-conditions you specified did not hold")
        return None

    def forward(self, body, method=None):
        upstream = getattr(self, "_upstream", None)
        for attempt in range(2):
            if upstream is None:
                host, port = self.server.state.args.upstream.rsplit(":", 1)
                upstream = http.client.HTTPConnection(host, int(port), timeout=30)
                self._upstream = upstream
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
                if method == "HEAD":  # anonymous: the PUT's signature does not fit a HEAD
                    headers = {k: v for k, v in headers.items() if k.lower() == "host"}
                upstream.request(method or self.command, self.path, body=body, headers=headers)
                res = upstream.getresponse()
                data = res.read()
                keep = [(k, v) for k, v in res.getheaders()
                        if k.lower() not in ("content-length", "transfer-encoding", "connection", "date",
                                             "keep-alive")]
                return res.status, keep, data
            except (ConnectionError, http.client.HTTPException):
                upstream.close()
                upstream = None
                self._upstream = None
                if attempt == 1:
                    raise


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--service", default="sqs")
    p.add_argument("--access-key", default="AKIDOUTBOXTEST")
    p.add_argument("--secret-key", default="outbox-test-secret")
    p.add_argument("--also-key", action="append", default=[], metavar="KEY:SECRET",
                   help="another key pair accepted (rotation tests)")
    p.add_argument("--faults", default="")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--slow-ms", type=int, default=300)
    p.add_argument("--clock-offset", type=float, default=0)
    p.add_argument("--refuse-checksums", action="store_true",
                   help="refuse PUTs with x-amz-checksum-* headers, as some S3-compatible stores do")
    p.add_argument("--refuse-conditional-writes", action="store_true",
                   help="refuse If-None-Match on PUT (501), as some S3-compatible stores do")
    args = p.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.state = State(args)
    print(json.dumps({"port": server.server_address[1]}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
