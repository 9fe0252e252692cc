# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client of etcd's v3 JSON gateway (standard library only): range, put, delete,
leases and watch, with failover across the members of a cluster and TLS.

Public interface (used by backends.py and cli.py): EtcdClient, make_etcd_client, StoreError,
LeaseLost, WatchCanceled, watch_events, iter_json_stream, prefix_range_end.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
import threading
import urllib.parse


class StoreError(Exception):
    """The store could not be reached or refused a request."""


class LeaseLost(StoreError):
    pass


class WatchCanceled(StoreError):
    pass


def _b64(text) -> str:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return base64.b64encode(text).decode("ascii")


def _unb64(text) -> bytes:
    return base64.b64decode(text or "")


def prefix_range_end(prefix: str) -> bytes:
    """etcd's range_end for "every key starting with prefix"."""
    raw = bytearray(prefix.encode("utf-8"))
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


def iter_json_stream(buffer: str):
    """Split a buffer of concatenated JSON documents -> (documents, remainder)."""
    decoder = json.JSONDecoder()
    docs = []
    index = 0
    length = len(buffer)
    while True:
        while index < length and buffer[index] in " \r\n\t":
            index += 1
        if index >= length:
            return docs, ""
        try:
            doc, end = decoder.raw_decode(buffer, index)
        except ValueError:
            return docs, buffer[index:]
        docs.append(doc)
        index = end


class EtcdClient:
    """A small client of etcd's v3 JSON gateway: range, put, delete, lease, watch.

    Several endpoints (the members of a cluster) are tried in turn; https endpoints use the CA
    and client certificate given. One instance per thread.
    """

    def __init__(self, endpoints, timeout=3.0, ca_cert=None, cert=None, key=None, api_path="auto"):
        self.endpoints = [urllib.parse.urlsplit(url) for url in endpoints]
        self.timeout = float(timeout)
        self.current = 0
        self._api_path = None if api_path in (None, "", "auto") else "/" + api_path.strip("/") + "/"
        self._conn = None
        self._watch_conn = None
        self._ssl = None
        if any(parts.scheme == "https" for parts in self.endpoints):
            self._ssl = ssl.create_default_context(cafile=ca_cert) if ca_cert else ssl.create_default_context()
            if cert:
                self._ssl.load_cert_chain(cert, key)

    def _new_connection(self, parts, timeout):
        port = parts.port or 2379
        if parts.scheme == "https":
            return http.client.HTTPSConnection(parts.hostname, port, timeout=timeout, context=self._ssl)
        return http.client.HTTPConnection(parts.hostname, port, timeout=timeout)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.close_watch()

    def close_watch(self):
        """Break the watch stream from another thread: shut the socket down only. The watching
        thread then reads EOF (or an error) and closes the connection itself; closing it here
        would pull the response's file from under its read (http.client is not thread-safe)."""
        conn = self._watch_conn
        if conn is not None:
            try:
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _discover(self, conn):
        conn.request("GET", "/version")
        resp = conn.getresponse()
        body = resp.read()
        try:
            version = json.loads(body)["etcdserver"]
            major_minor = tuple(int(part) for part in version.split(".")[:2])
        except (ValueError, KeyError, TypeError):
            major_minor = (3, 4)
        if major_minor >= (3, 4):
            return "/v3/"
        return "/v3beta/" if major_minor >= (3, 3) else "/v3alpha/"

    def call(self, path: str, body: dict) -> dict:
        """POST one unary request; tries every endpoint once. StoreError when none answers."""
        payload = json.dumps(body)
        errors = []
        for attempt in range(len(self.endpoints)):
            index = (self.current + attempt) % len(self.endpoints)
            parts = self.endpoints[index]
            try:
                if self._conn is None or index != self.current:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = self._new_connection(parts, self.timeout)
                    self.current = index
                if self._api_path is None:
                    self._api_path = self._discover(self._conn)
                self._conn.request("POST", self._api_path + path, payload, {"Content-Type": "application/json"})
                resp = self._conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                errors.append("%s: %s" % (parts.netloc, exc))
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                continue
            try:
                result = json.loads(data or b"{}")
            except ValueError:
                result = {"error": data[:200].decode("utf-8", "replace")}
            if resp.status == 200 and "error" not in result:
                return result
            message = result.get("error") or result.get("message") or "HTTP %d" % resp.status
            if "lease not found" in message:
                raise LeaseLost(message)
            if resp.status >= 500 or resp.status == 429:
                errors.append("%s: %s" % (parts.netloc, message))
                self._conn.close()
                self._conn = None
                continue
            raise StoreError("%s: %s" % (parts.netloc, message))
        raise StoreError("no etcd endpoint answered (%s)" % "; ".join(errors))

    # --- KV
    def range_prefix(self, prefix: str):
        """(revision, [(key, value bytes, mod_revision)]) of every key under prefix."""
        result = self.call("kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_range_end(prefix))})
        revision = int(result.get("header", {}).get("revision", 0))
        kvs = [(_unb64(kv["key"]).decode("utf-8", "replace"), _unb64(kv.get("value")), int(kv.get("mod_revision", 0)))
               for kv in result.get("kvs", [])]
        return revision, kvs

    def put(self, key: str, value: str, lease: int = 0):
        body = {"key": _b64(key), "value": _b64(value)}
        if lease:
            body["lease"] = str(lease)
        return self.call("kv/put", body)

    def delete(self, key: str):
        return self.call("kv/deleterange", {"key": _b64(key)})

    # --- leases
    def grant(self, ttl: int) -> int:
        result = self.call("lease/grant", {"TTL": int(ttl), "ID": 0})
        if result.get("error"):
            raise StoreError(result["error"])
        return int(result["ID"])

    def keepalive(self, lease: int) -> int:
        """Refresh a lease; its remaining TTL, or LeaseLost if it expired."""
        result = self.call("lease/keepalive", {"ID": str(lease)})
        ttl = int(result.get("result", {}).get("TTL", 0) or 0)
        if ttl <= 0:
            raise LeaseLost("lease %x expired" % lease)
        return ttl

    def revoke(self, lease: int):
        return self.call("lease/revoke", {"ID": str(lease)})

    # --- watch
    def watch(self, prefix: str, start_revision: int, stop: threading.Event):
        """Yield lists of (type, key, value bytes, mod_revision) until the stream ends.

        type is "PUT" or "DELETE". Returns when the server closes the stream or `stop` is set;
        raises StoreError / WatchCanceled (compaction) on failures. The caller resynchronises.
        """
        parts = self.endpoints[self.current]
        conn = self._new_connection(parts, self.timeout)
        self._watch_conn = conn
        try:
            if self._api_path is None:
                self._api_path = self._discover(conn)
            body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_range_end(prefix)),
                                       "start_revision": str(start_revision), "progress_notify": True}}
            conn.request("POST", self._api_path + "watch", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            if resp.status != 200:
                raise StoreError("watch refused: HTTP %d" % resp.status)
            sock = conn.sock
            sock.settimeout(None)
            _tcp_keepalive(sock)
            buffer = ""
            while not stop.is_set():
                try:
                    chunk = resp.read1(65536)
                except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
                    # AttributeError: http.client's response lost its file mid-read (a connection
                    # closed under it); the stream is gone all the same
                    if stop.is_set():
                        return
                    raise StoreError("watch stream broke: %s" % exc) from None
                if not chunk:
                    return
                buffer += chunk.decode("utf-8", "replace")
                docs, buffer = iter_json_stream(buffer)
                for doc in docs:
                    batch = watch_events(doc)
                    if batch:
                        yield batch
        except (OSError, http.client.HTTPException) as exc:
            if stop.is_set():
                return
            raise StoreError("watch failed on %s: %s" % (parts.netloc, exc)) from None
        finally:
            self._watch_conn = None
            conn.close()


def watch_events(doc: dict) -> list:
    """One message of the watch stream -> [(type, key, value, mod_revision)] (may be empty)."""
    if "error" in doc:
        error = doc["error"]
        raise StoreError("watch error: %s" % (error.get("message") if isinstance(error, dict) else error))
    result = doc.get("result", {})
    if result.get("canceled"):
        raise WatchCanceled("watch canceled (compact_revision %s)" % result.get("compact_revision"))
    events = []
    for event in result.get("events", []) or []:
        kv = event.get("kv", {})
        kind = event.get("type", "PUT") or "PUT"
        events.append((kind, _unb64(kv.get("key")).decode("utf-8", "replace"), _unb64(kv.get("value")),
                       int(kv.get("mod_revision", 0))))
    return events


def _tcp_keepalive(sock):
    """Notice a silently dead etcd member within ~10 s."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 4)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    except (OSError, AttributeError):
        pass


def make_etcd_client(config: dict) -> EtcdClient:
    etcd = config["etcd"]
    return EtcdClient(etcd["endpoints"], etcd["timeout"], etcd["ca_cert"], etcd["cert"], etcd["key"], etcd["api_path"])
