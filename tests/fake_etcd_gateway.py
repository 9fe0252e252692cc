"""A stand-in for etcd's v3 JSON gateway that says what a test tells it to, garbage included,
and the DOVE agent run against it in one process.

    python3 fake_etcd_gateway.py SCRIPT AGENT_CONFIG

SCRIPT (JSON): {"port": 2379, "kvs": [[key, value, mod_revision], ...], "watch": [item, ...]}.
The range answers with `kvs` (values as text, or {"raw_b64": "..."} for a kv the gateway itself
garbles). The first watch stream sends each item in turn: {"put": [key, value, revision]} (a
well-formed event, also kept for later ranges) or {"raw": "..."} (the bytes of one message as
they are, however malformed), then holds the stream open; later watches only hold it open.
Lease and put requests succeed. It listens on 127.0.0.1 of the network namespace it runs in
(the tests run it under `ip netns exec` in a throwaway namespace, never the machine's own).

After starting the gateway in a thread, the process runs the agent's own command line
(`overlay_vxlan_agent run --config AGENT_CONFIG`) in its main thread: the agent's real watcher
thread reads the stream through EtcdClient.watch, exactly as against etcd.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def b64(data) -> str:
    return base64.b64encode(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data).decode("ascii")


class Gateway(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: dict = {}
    store: dict = {}  # key -> (value, revision)
    watched = threading.Event()
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _answer(self, doc):
        body = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer({"etcdserver": "3.5.0", "etcdcluster": "3.5.0"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/kv/range"):
            with self.lock:
                kvs = [{"key": b64(key), "value": value["raw_b64"] if isinstance(value, dict) else b64(value),
                        "mod_revision": str(revision)} for key, (value, revision) in sorted(self.store.items())]
                revision = max([rev for _value, rev in self.store.values()] + [10])
            self._answer({"header": {"revision": str(revision)}, "kvs": kvs, "count": str(len(kvs))})
        elif self.path.endswith("/lease/grant"):
            self._answer({"ID": "7", "TTL": "10"})
        elif self.path.endswith("/lease/keepalive"):
            self._answer({"result": {"ID": "7", "TTL": "10"}})
        elif self.path.endswith("/watch"):
            self._watch()
        else:  # kv/put, kv/deleterange, lease/revoke
            self._answer({"header": {"revision": "11"}})

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(json.dumps({"result": {"header": {}, "created": True}}).encode() + b"\n")
        first = not self.watched.is_set()
        self.watched.set()
        if first:
            for item in self.script.get("watch", []):
                if "put" in item:
                    key, value, revision = item["put"]
                    with self.lock:
                        self.store[key] = (value, revision)
                    message = json.dumps({"result": {"header": {"revision": str(revision)}, "events": [
                        {"type": "PUT", "kv": {"key": b64(key), "value": b64(value), "mod_revision": str(revision)}}]}})
                else:
                    message = item["raw"]
                self._chunk(message.encode("utf-8", "surrogatepass") + b"\n")
                time.sleep(0.02)
        try:
            while True:  # hold the stream open; the agent closes it when it stops or resyncs
                time.sleep(0.5)
                self._chunk(b"\n")
        except OSError:
            return


def main(script_path: str, config_path: str) -> int:
    with open(script_path, encoding="utf-8") as handle:
        script = json.load(handle)
    Gateway.script = script
    Gateway.store = {key: (value, revision) for key, value, revision in script.get("kvs", [])}
    server = ThreadingHTTPServer(("127.0.0.1", script.get("port", 2379)), Gateway)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from overlay_vxlan_agent.cli import main as agent_main

    return agent_main(["run", "--config", config_path])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
