"""An HTTP listener for the sites scenario that records every request it receives.

Each request is appended to LOG as one JSON line (client address, method, path, headers,
body) and answered with STATUS and the extra headers given. The client instance runs it as
the webhook receiver (200) and as the rogue token realm (401); the upstream instance as a
rogue upstream whose challenge names that realm.

    recorder.py PORT LOG STATUS [HEADER: VALUE ...]
"""
from __future__ import annotations

import http.server
import json
import sys


class Recorder(http.server.BaseHTTPRequestHandler):
    log_file = ""
    status = 200
    extra_headers: list[tuple[str, str]] = []

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        entry = {"client": self.client_address[0], "method": self.command, "path": self.path,
                 "headers": dict(self.headers.items()), "body": body}
        with open(self.log_file, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        self.send_response(self.status)
        for name, value in self.extra_headers:
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_HEAD = do_PUT = answer


def main() -> None:
    port, Recorder.log_file, status, *headers = sys.argv[1:]
    Recorder.status = int(status)
    Recorder.extra_headers = [tuple(part.strip() for part in header.split(":", 1)) for header in headers]
    http.server.ThreadingHTTPServer(("0.0.0.0", int(port)), Recorder).serve_forever()


if __name__ == "__main__":
    main()
