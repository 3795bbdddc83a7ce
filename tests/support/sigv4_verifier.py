"""An AWS OTLP intake that checks SigV4 signatures with botocore, an implementation independent
of the crate's (aws-sigv4), for tests/aws_sigv4.rs.

It serves, on 127.0.0.1:
- POST /v1/traces, /v1/metrics, /v1/logs: recomputes each request's signature with
  botocore.auth.SigV4Auth from the request as received (its body, its signed headers, its
  X-Amz-Date) and the secret of the access key it names, and answers 200 (an empty OTLP response)
  or 403 with the reason. The signing name must be the signal's: xray, monitoring, logs.
- GET /credentials: an ECS container credentials endpoint
  (AWS_CONTAINER_CREDENTIALS_FULL_URI) that hands out a new key on each call, expiring
  --lifetime seconds later.
- GET /seen: everything it saw, as JSON.
A second port forwards every request to the first with one byte of its body flipped: a body
changed in transit.

It prints `ports VERIFIER PROXY` once both listen. Usage:
  sigv4_verifier.py --region REGION --key ACCESS_KEY:SECRET[:TOKEN] [--lifetime SECONDS]
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import re
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SERVICES = {"/v1/traces": "xray", "/v1/metrics": "monitoring", "/v1/logs": "logs"}
AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$"
)
# How far X-Amz-Date may be from now, as AWS allows.
SKEW = datetime.timedelta(minutes=5)

lock = threading.Lock()
keys = {}  # access key id -> (secret, session token or None)
seen = {"requests": [], "issued": []}
args = None


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def verify(path, headers, body):
    """Why the request is refused, or None when its signature is good."""
    service = SERVICES.get(path)
    if service is None:
        return None, f"no OTLP path {path}"
    match = AUTHORIZATION.match(headers.get("authorization", ""))
    if not match:
        return None, "no SigV4 Authorization header"
    access_key, day, region, signing_name, signed_headers, signature = match.groups()
    record = {"access_key": access_key, "region": region, "service": signing_name,
              "signed_headers": signed_headers.split(";")}
    with lock:
        known = keys.get(access_key)
    if known is None:
        return record, "unknown access key"
    secret, token = known
    if region != args.region:
        return record, f"signed for region {region}, not {args.region}"
    if signing_name != service:
        return record, f"signed for {signing_name}, not {service}"
    signed = signed_headers.split(";")
    for required in ["host", "x-amz-date"] + (["x-amz-security-token"] if token else []):
        if required not in signed:
            return record, f"{required} is not signed"
    if token and headers.get("x-amz-security-token") != token:
        return record, "wrong session token"
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return record, "bad X-Amz-Date"
    if abs(utcnow() - when) > SKEW or amz_date[:8] != day:
        return record, "X-Amz-Date out of range"
    declared = headers.get("x-amz-content-sha256")
    if declared is not None and declared != hashlib.sha256(body).hexdigest():
        return record, "x-amz-content-sha256 is not the body's"
    # The request as botocore would have signed it: the signed headers only, this body, this time.
    request = AWSRequest(method="POST", url=f"http://{headers['host']}{path}",
                         headers={name: headers[name] for name in signed if name in headers},
                         data=body)
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(access_key, secret, token), signing_name, region)
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                              request)
    if not hmac.compare_digest(expected, signature):
        return record, "signature does not match"
    return record, None


class Verifier(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def lower_headers(self):
        return {name.lower(): value for name, value in self.headers.items()}

    def answer(self, status, body, content_type):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = self.lower_headers()
        record, refusal = verify(self.path, headers, body)
        entry = dict(record or {})
        entry.update({
            "path": self.path,
            "status": 403 if refusal else 200,
            "refusal": refusal,
            "headers": {name: headers.get(name) for name in
                        ["x-aws-log-group", "x-aws-log-stream", "content-type",
                         "content-encoding"]},
            "body_len": len(body),
        })
        with lock:
            seen["requests"].append(entry)
        if refusal:
            self.answer(403, json.dumps({"message": refusal}).encode(), "application/json")
        else:
            # An empty message is a full success in every OTLP response.
            self.answer(200, b"", "application/x-protobuf")

    def do_GET(self):
        if self.path == "/seen":
            with lock:
                body = json.dumps(seen).encode()
            self.answer(200, body, "application/json")
        elif self.path == "/credentials":
            now = utcnow()
            expires = now + datetime.timedelta(seconds=args.lifetime)
            access_key = "ASIA" + secrets.token_hex(8).upper()
            secret, token = secrets.token_urlsafe(30), secrets.token_urlsafe(60)
            with lock:
                keys[access_key] = (secret, token)
                seen["issued"].append({"access_key": access_key,
                                       "issued_at": now.timestamp(),
                                       "expires_at": expires.timestamp()})
            body = json.dumps({
                "AccessKeyId": access_key, "SecretAccessKey": secret, "Token": token,
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }).encode()
            self.answer(200, body, "application/json")
        else:
            self.answer(404, b"", "text/plain")


class Tamperer(BaseHTTPRequestHandler):
    """Forwards a POST to the verifier with the last byte of its body flipped."""
    protocol_version = "HTTP/1.1"
    upstream_port = None

    def log_message(self, *_):
        pass

    def do_POST(self):
        body = bytearray(self.rfile.read(int(self.headers.get("content-length", 0))))
        if body:
            body[-1] ^= 0x01
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=10)
        headers = {name: value for name, value in self.headers.items()}
        connection.request("POST", self.path, body=bytes(body), headers=headers)
        response = connection.getresponse()
        answer = response.read()
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def main():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--region", required=True)
    parser.add_argument("--key", action="append", default=[])
    parser.add_argument("--lifetime", type=float, default=3600)
    args = parser.parse_args()
    for key in args.key:
        access_key, secret, *token = key.split(":", 2)
        keys[access_key] = (secret, token[0] if token else None)
    verifier = ThreadingHTTPServer(("127.0.0.1", 0), Verifier)
    Tamperer.upstream_port = verifier.server_address[1]
    tamperer = ThreadingHTTPServer(("127.0.0.1", 0), Tamperer)
    threading.Thread(target=tamperer.serve_forever, daemon=True).start()
    print(f"ports {verifier.server_address[1]} {tamperer.server_address[1]}", flush=True)
    verifier.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
