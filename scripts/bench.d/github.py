"""The GitHub REST calls rollout's GitHub Actions adapter makes (src/ci/github.rs), emulated for
scripts/bench, and the report of what was asked.

  github.py serve PORT_FILE LOG SECONDS   serve on 127.0.0.1 (a free port, written to PORT_FILE);
                                          a dispatched run completes SECONDS after its dispatch
  github.py report LOG SECONDS            one line: run-status polls, 304 answers among them,
                                          largest interval between polls (s), requests in all,
                                          seconds from the run's completion to the poll that saw it

Every request is logged as `<unix time> <method> <path> <status>`. Run-status answers carry an
ETag (a matching If-None-Match gets 304 while nothing changed) and rate-limit headers with a
generous budget (304s are free, as on GitHub).
"""

import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUN_ID = 42
SHA = "3f2a9c1e5b7d4a6f8e0c2b4d6f8a0c2e4b6d8f0a"
LIMIT = 5000
RUN_PATH = f"/actions/runs/{RUN_ID}"


def serve(port_file, log_path, seconds):
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1)
    state = {"dispatched": None, "used": 0}

    class GitHub(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like api.github.com
        disable_nagle_algorithm = True  # headers and body go out in two writes

        def log_message(self, *args):
            pass

        def answer(self, now, status, body=None, headers=()):
            raw = b"" if body is None else json.dumps(body).encode()
            with lock:
                if status != 304:
                    state["used"] += 1
                remaining = LIMIT - state["used"]
                log.write(f"{now:.6f} {self.command} {self.path} {status}\n")
            self.send_response(status)
            self.send_header("x-ratelimit-limit", str(LIMIT))
            self.send_header("x-ratelimit-remaining", str(remaining))
            self.send_header("x-ratelimit-reset", str(int(now) + 3600))
            self.send_header("x-ratelimit-used", str(LIMIT - remaining))
            self.send_header("x-ratelimit-resource", "core")
            for name, value in headers:
                self.send_header(name, value)
            if status != 304:
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            if status != 304:
                self.wfile.write(raw)

        def handle_any(self):
            now = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if not (self.headers.get("Authorization") or "").startswith("Bearer "):
                return self.answer(now, 401, {"message": "Requires authentication"})
            match = re.fullmatch(r"/repos/([^/]+)/([^/?]+)(/[^?]*)?", self.path)
            if not match:
                return self.answer(now, 404, {"message": "Not Found"})
            owner, repo, rest = match.group(1), match.group(2), match.group(3) or ""
            html = f"https://github.com/{owner}/{repo}/actions/runs/{RUN_ID}"
            get = self.command == "GET"
            if get and rest == "":
                return self.answer(now, 200, {"default_branch": "main", "permissions": {"push": True}})
            if get and re.fullmatch(r"/commits/[^/]+", rest):
                return self.answer(now, 200, {"sha": SHA})
            if get and re.fullmatch(r"/actions/workflows/[^/]+", rest):
                return self.answer(now, 200, {"id": 1, "name": "Deploy",
                                              "path": ".github/workflows/deploy.yml", "state": "active"})
            if self.command == "POST" and re.fullmatch(r"/actions/workflows/[^/]+/dispatches", rest):
                request = json.loads(body or b"{}")
                if "ref" not in request:
                    return self.answer(now, 422, {"message": "Invalid request: ref is required"})
                with lock:
                    state["dispatched"] = now
                if not request.get("return_run_details"):
                    return self.answer(now, 204)
                return self.answer(now, 200, {
                    "workflow_run_id": RUN_ID,
                    "run_url": f"http://{self.headers.get('Host')}/repos/{owner}/{repo}{RUN_PATH}",
                    "html_url": html})
            if get and rest == RUN_PATH and state["dispatched"] is not None:
                done = now >= state["dispatched"] + seconds
                etag = f'W/"run-{RUN_ID}-{"completed" if done else "in_progress"}"'
                if self.headers.get("If-None-Match") == etag:
                    return self.answer(now, 304, headers=[("ETag", etag)])
                return self.answer(now, 200, {
                    "id": RUN_ID, "status": "completed" if done else "in_progress",
                    "conclusion": "success" if done else None, "html_url": html, "head_sha": SHA,
                    "head_branch": "main"}, headers=[("ETag", etag)])
            return self.answer(now, 404, {"message": "Not Found"})

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHub)
    server.daemon_threads = True
    with open(port_file + ".tmp", "w") as f:
        f.write(f"{server.server_address[1]}\n")
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


def report(log_path, seconds):
    requests = [line.split() for line in open(log_path)]
    dispatched = next(float(t) for t, method, path, _ in requests if path.endswith("/dispatches"))
    polls = [(float(t), status) for t, method, path, status in requests
             if method == "GET" and path.endswith(RUN_PATH)]
    times = [t for t, _ in polls]
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    seen = next((t for t in times if t >= dispatched + seconds), None)
    lag = "-" if seen is None else f"{seen - dispatched - seconds:.1f}"
    not_modified = sum(1 for _, status in polls if status == "304")
    print(len(polls), not_modified, f"{gap:.1f}", len(requests), lag)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif sys.argv[1:2] == ["report"]:
        report(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(__doc__)
