#!/usr/bin/env python3
"""A loopback stand-in for the CloudWatch Logs and X-Ray APIs, for e2e.sh.

It answers every AWS JSON request with success and appends each request
(its X-Amz-Target or path, and body) as one JSON line to the file named by
the second argument, so the test can read what the collector's awsemf and
awsxray exporters sent. Usage: fake_aws.py PORT OUTFILE
"""
import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, out = int(sys.argv[1]), sys.argv[2]


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        target = self.headers.get("X-Amz-Target") or self.path
        with open(out, "a") as f:
            f.write(json.dumps({"target": target, "body": body.decode("utf-8", "replace")}) + "\n")
        reply = b"{}"
        if target.endswith("PutLogEvents"):
            reply = b'{"nextSequenceToken":"1"}'
        elif "TraceSegments" in target:
            reply = b'{"UnprocessedTraceSegments":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
