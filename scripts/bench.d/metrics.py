"""The metric sources a gate reads, for scripts/bench: a Prometheus metrics endpoint (scraped by
the real Prometheus of scripts/services), Datadog's v2 timeseries query with its rate limit, and
GA4's token endpoint and realtime report. Each serves two series: `steady` (always 1) and
`cross` (1 until set otherwise).

  metrics.py serve PORT_FILE LOG LIMIT   serve on 127.0.0.1 (a free port, written to PORT_FILE);
                                         Datadog allows LIMIT queries a minute (X-RateLimit-*)
  metrics.py set PORT VALUE              the `cross` series is VALUE from now on; prints the
                                         time it changed (Unix seconds)
  metrics.py report LOG PATH SECONDS     one line for the requests to PATH: how many, per minute,
                                         the most in any 60 s, and how many were answered 429

Every request is logged as `<unix time> <method> <path> <status>`.
"""

import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PERIOD = 60


def serve(port_file, log_path, limit):
    lock = threading.Lock()
    state = {"cross": 1.0, "window": None, "used": 0}
    log = open(log_path, "a", buffering=1)

    def value(query):
        return state["cross"] if "cross" in query else 1.0

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body, headers=()):
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            for name, text in headers:
                self.send_header(name, text)
            self.end_headers()
            self.wfile.write(data)
            with lock:
                log.write(f"{time.time():.3f} {self.command} {self.path} {status}\n")

        def body(self):
            return self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()

        def do_GET(self):
            if self.path == "/metrics":
                text = "".join(
                    f'bench_gate_value{{series="{name}"}} {v}\n' for name, v in (("steady", 1.0), ("cross", state["cross"]))
                )
                return self.answer(200, text, [("Content-Type", "text/plain; version=0.0.4")])
            self.answer(404, {"errors": ["Not found"]})

        def do_POST(self):
            body = self.body()
            if self.path == "/set":
                with lock:
                    state["cross"] = float(body)
                return self.answer(200, {"changed": time.time()})
            if self.path == "/api/v2/query/timeseries":
                query = json.loads(body)["data"]["attributes"]["queries"][0]["query"]
                with lock:
                    now = time.time()
                    if state["window"] is None or now >= state["window"] + PERIOD:
                        state["window"], state["used"] = now, 0
                    state["used"] += 1
                    remaining = max(limit - state["used"], 0)
                    reset = max(int(state["window"] + PERIOD - now), 1)
                    over = state["used"] > limit
                headers = [
                    ("X-RateLimit-Limit", str(limit)),
                    ("X-RateLimit-Period", str(PERIOD)),
                    ("X-RateLimit-Remaining", str(remaining)),
                    ("X-RateLimit-Reset", str(reset)),
                    ("X-RateLimit-Name", "query_timeseries"),
                ]
                if over:
                    return self.answer(429, {"errors": ["Too many requests"]}, headers)
                now_ms = int(time.time() * 1000)
                answer = {"data": {"type": "timeseries_response", "attributes": {
                    "times": [now_ms], "values": [[value(query)]], "series": [{"group_tags": []}]}}}
                return self.answer(200, answer, headers)
            if self.path == "/token":
                return self.answer(200, {"access_token": "ya29.bench", "expires_in": 3599, "token_type": "Bearer"})
            if self.path.endswith(":runRealtimeReport"):
                v = value(json.dumps(json.loads(body).get("dimensionFilter", {})))
                return self.answer(200, {"rows": [{"metricValues": [{"value": f"{v:g}"}]}], "rowCount": 1})
            self.answer(404, {"errors": ["Not found"]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(port_file + ".tmp", port_file)
    server.serve_forever()


def set_value(port, value):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/set", data=value.encode(), method="POST")
    with urllib.request.urlopen(request) as answer:
        print(f'{json.load(answer)["changed"]:.3f}')


def report(log_path, path, seconds):
    times, limited = [], 0
    for line in open(log_path):
        at, _method, asked, status = line.split()
        if asked.startswith(path):
            times.append(float(at))
            limited += status == "429"
    times.sort()
    most = max((sum(1 for u in times if t <= u < t + PERIOD) for t in times), default=0)
    print(len(times), f"{len(times) / (seconds / 60):.2f}", most, limited)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "serve":
        serve(args[0], args[1], int(args[2]))
    elif command == "set":
        set_value(args[0], args[1])
    elif command == "report":
        report(args[0], args[1], float(args[2]))
    else:
        sys.exit(__doc__)
