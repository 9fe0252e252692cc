# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client of etcd's v3 JSON gateway (standard library only): range, put, delete,
leases and watch, with failover across the members of a cluster and TLS.

Public interface (used by backends.py and cli.py): EtcdClient, make_etcd_client, StoreError,
LeaseLost, WatchCanceled, GatewayError, PermissionDenied, AuthFailed, watch_events,
iter_json_stream, prefix_range_end (the answers' checks live in gateway.py).

The gateway's answers are checked like records are: a response that is not the JSON it should
be (not an object, a field missing or of the wrong type, base64 that does not decode, nesting
deep enough for a RecursionError, a message over MAX_MESSAGE_BYTES) is a GatewayError, a
StoreError: the watcher resynchronises, nothing crashes. Ranges are read in pages of
RANGE_PAGE keys at one revision, so no single answer has to hold the whole store.

Authentication (etcd.user / etcd.password_file): the client authenticates at
/v3/auth/authenticate and sends the token as the Authorization header of every request, the
watch and the lease calls included. An answer that the token is no good (expired, revoked by
`auth disable`/`enable` or a member restart, issued by another member: etcd's simple tokens
are per member) makes it authenticate again once and repeat the request; a refusal (403,
permission denied) is a PermissionDenied, never retried here.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse

from overlay_vxlan_agent import LOGGER_NAME
from overlay_vxlan_agent.gateway import (  # noqa: F401  (re-exported: the public interface)
    _PARSE_ERRORS,
    AUTH,
    AUTH_OFF,
    DENIED,
    LEASE,
    OK,
    RETRY,
    AuthFailed,
    GatewayError,
    LeaseLost,
    PermissionDenied,
    StoreError,
    TokenRejected,
    WatchCanceled,
    _b64,
    _int,
    _object,
    _parse_json,
    _unb64,
    answer_error,
    decode_kv,
    iter_json_stream,
    parse_token,
    prefix_range_end,
    watch_events,
)

__all__ = ["EtcdClient", "make_etcd_client", "StoreError", "LeaseLost", "WatchCanceled", "GatewayError", "PermissionDenied",
           "AuthFailed", "TokenRejected", "watch_events", "iter_json_stream", "prefix_range_end", "decode_kv", "answer_error",
           "parse_token", "MAX_MESSAGE_BYTES", "RANGE_PAGE"]

LOG = logging.getLogger(LOGGER_NAME)
# One unary answer or one watch message: a page of RANGE_PAGE records of at most a few KiB is
# far below; etcd itself refuses requests over 1.5 MiB, so a single value cannot pass it.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
RANGE_PAGE = 1000
# After etcd refused this host's user or password, no new attempt for this many seconds:
# etcd checks a password with bcrypt (tens of ms of a member's CPU), and the watcher and the
# registrar retry every second or two.
AUTH_RETRY_INTERVAL = 5.0


class _NextEndpoint(Exception):
    """This member did not answer (or is overloaded): try the next one (internal to call())."""


class EtcdClient:
    """A small client of etcd's v3 JSON gateway: range, put, delete, lease, watch.

    Several endpoints (the members of a cluster) are tried in turn; https endpoints use the CA
    and client certificate given. One instance per thread.
    """

    def __init__(self, endpoints, timeout=3.0, ca_cert=None, cert=None, key=None, api_path="auto", user=None, password=None):
        self.endpoints = [urllib.parse.urlsplit(url) for url in endpoints]
        self.timeout = float(timeout)
        self.current = 0
        self._credentials = None
        self._token = None
        self._token_at = None  # the endpoint whose member issued self._token (None: authenticate first)
        self._refused = None  # etcd's last refusal of the credentials, repeated until _refused_until
        self._refused_until = 0.0
        self.set_credentials(user, password)
        self._api_path = None if api_path in (None, "", "auto") else "/" + api_path.strip("/") + "/"
        self._conn = None
        self._watch_conn = None
        self._watch_sock = None
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
        sock = self._watch_sock or (conn.sock if conn is not None else None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _discover(self, conn):
        conn.request("GET", "/version")
        resp = conn.getresponse()
        body = resp.read(65536)
        try:
            version = json.loads(body)["etcdserver"]
            major_minor = tuple(int(part) for part in version.split(".")[:2])
        except _PARSE_ERRORS:
            major_minor = (3, 4)
        if major_minor >= (3, 4):
            return "/v3/"
        return "/v3beta/" if major_minor >= (3, 3) else "/v3alpha/"

    def set_credentials(self, user, password):
        """The etcd user and password (None: no authentication). Also from another thread (a
        reload): the next request authenticates again; one in flight may still use the old token."""
        self._credentials = (user, password) if user else None
        self._token_at = None
        self._refused = None

    def call(self, path: str, body: dict) -> dict:
        """POST one unary request; tries every endpoint once. StoreError when none answers."""
        payload = json.dumps(body)
        errors = []
        for attempt in range(len(self.endpoints)):
            index = (self.current + attempt) % len(self.endpoints)
            try:
                return self._call_at(index, path, payload)
            except _NextEndpoint as exc:
                errors.append(str(exc))
        raise StoreError("no etcd endpoint answered (%s)" % "; ".join(errors))

    def _call_at(self, index: int, path: str, payload: str) -> dict:
        """One request to one member, authenticated when a user is set; once more with a new
        token if etcd says the one sent is no good."""
        if self._credentials and self._token_at != index:
            self._authenticate(index)
        sent = self._token
        status, result = self._post(index, path, payload, sent)
        kind, message = answer_error(status, result)
        # Sent without a token (authentication was off when we asked), etcd refuses a client
        # certificate without a CN with "permission denied" once it is on again: log in then too.
        if self._credentials and (kind == AUTH or (kind == DENIED and not sent)):
            self._token_at = None
            self._authenticate(index, because=message)
            status, result = self._post(index, path, payload, self._token)
            kind, message = answer_error(status, result)
        netloc = self.endpoints[index].netloc
        if kind == OK:
            return result
        if kind == LEASE:
            raise LeaseLost(message)
        if kind == RETRY:
            self._drop_connection()
            raise _NextEndpoint("%s: %s" % (netloc, message))
        if kind == DENIED:
            raise PermissionDenied("%s: %s refused: %s" % (netloc, path, message))
        if kind == AUTH:
            self._token_at = None
            raise AuthFailed("%s: %s (%s)" % (netloc, message, "even with a new token" if self._credentials else "no etcd.user configured"))
        raise StoreError("%s: %s" % (netloc, message))

    def _authenticate(self, index: int, because: str = ""):
        """A token from member `index` for the configured user (AuthFailed if etcd refuses it).
        `because`: etcd's answer to the token sent before (logged)."""
        user, password = self._credentials
        netloc = self.endpoints[index].netloc
        if self._refused is not None and time.monotonic() < self._refused_until:
            raise AuthFailed(self._refused)
        if not password:
            raise AuthFailed("etcd user %s has no password (etcd.password_file)" % user)
        status, result = self._post(index, "auth/authenticate", json.dumps({"name": user, "password": password}), None)
        kind, message = answer_error(status, result)
        if kind == OK:
            self._token = parse_token(result)
            if because:
                LOG.info("etcd %s: authenticated again as %s (the token was refused: %s)", netloc, user, because)
            else:
                LOG.info("etcd %s: authenticated as %s", netloc, user)
        elif kind == AUTH_OFF:
            # authentication is not enabled (yet, or for a while): requests need no token, and
            # once it is enabled again etcd answers "user name is empty" and we come back here
            self._token = None
            LOG.info("etcd %s: authentication is not enabled; requests go without a token", netloc)
        elif kind == RETRY:
            self._drop_connection()
            raise _NextEndpoint("%s: authenticate: %s" % (netloc, message))
        else:
            self._token = self._token_at = None
            self._refused = "%s: etcd refused user %s: %s" % (netloc, user, message)
            self._refused_until = time.monotonic() + AUTH_RETRY_INTERVAL
            raise AuthFailed(self._refused)
        self._token_at = index
        self._refused = None

    def _drop_connection(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, index: int, path: str, payload: str, token) -> tuple:
        """(HTTP status, JSON object) of one POST to member `index`; _NextEndpoint if it does not
        answer, GatewayError if a 200 answer is not a JSON object or any answer is oversized."""
        parts = self.endpoints[index]
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = token
        try:
            if self._conn is None or index != self.current:
                self._drop_connection()
                self._conn = self._new_connection(parts, self.timeout)
                self.current = index
            if self._api_path is None:
                self._api_path = self._discover(self._conn)
            self._conn.request("POST", self._api_path + path, payload, headers)
            resp = self._conn.getresponse()
            data = resp.read(MAX_MESSAGE_BYTES + 1)
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise _NextEndpoint("%s: %s" % (parts.netloc, exc)) from None
        if len(data) > MAX_MESSAGE_BYTES:
            self._drop_connection()
            raise GatewayError("%s: answer to %s over %d bytes" % (parts.netloc, path, MAX_MESSAGE_BYTES))
        try:
            result = _parse_json(data or b"{}")
        except GatewayError:
            if resp.status == 200:
                raise
            result = {"error": data[:200].decode("utf-8", "replace")}
        return resp.status, result

    # --- KV
    def range_prefix(self, prefix: str, errors: list | None = None, page: int = RANGE_PAGE):
        """(revision, [(key, value bytes, mod_revision)]) of every key under prefix, read in
        pages of `page` keys at the revision of the first. A kv the gateway garbled is left
        out (and reported in `errors` as (where, reason) when a list is given)."""
        start = prefix.encode("utf-8")
        end = _b64(prefix_range_end(prefix))
        revision = 0
        kvs = []
        while True:
            body = {"key": _b64(start), "range_end": end, "limit": page}
            if revision:
                body["revision"] = str(revision)
            result = self.call("kv/range", body)
            if not revision:
                revision = _int(_object(result, "header").get("revision"), "header.revision")
                if revision <= 0:
                    raise GatewayError("range answer without a revision")
            items = result.get("kvs") or []
            if not isinstance(items, list):
                raise GatewayError("range answer: kvs is not a list")
            for position, kv in enumerate(items):
                try:
                    kvs.append(decode_kv(kv))
                except GatewayError as exc:
                    if errors is not None:
                        errors.append(("range kvs[%d]" % (len(kvs) + position), str(exc)))
            if not result.get("more") or not items:
                return revision, kvs
            last = items[-1].get("key") if isinstance(items[-1], dict) else None
            try:
                start = _unb64(last) + b"\0"
            except _PARSE_ERRORS:
                raise GatewayError("range answer: the last key of a page is not base64") from None

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
        lease = _int(result.get("ID"), "ID")
        if lease <= 0:
            raise GatewayError("lease grant answer without an ID")
        return lease

    def keepalive(self, lease: int) -> int:
        """Refresh a lease; its remaining TTL, or LeaseLost if it expired."""
        result = self.call("lease/keepalive", {"ID": str(lease)})
        ttl = _int(_object(result, "result").get("TTL"), "TTL")
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
        A watch refused for its token (TokenRejected) makes the next request authenticate again.
        """
        parts = self.endpoints[self.current]
        headers = {"Content-Type": "application/json"}
        if self._credentials:
            if self._token_at != self.current:
                try:
                    self._authenticate(self.current)
                except _NextEndpoint as exc:
                    raise StoreError("watch: %s" % exc) from None
            if self._token:
                headers["Authorization"] = self._token
        conn = self._new_connection(parts, self.timeout)
        self._watch_conn = conn
        resp = None
        try:
            if self._api_path is None:
                self._api_path = self._discover(conn)
            body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_range_end(prefix)),
                                       "start_revision": str(start_revision), "progress_notify": True}}
            conn.request("POST", self._api_path + "watch", json.dumps(body), headers)
            # The stream's socket, taken now: an answer with "Connection: close" makes
            # getresponse() drop conn.sock (the response reads on through its own file).
            sock = self._watch_sock = conn.sock
            resp = conn.getresponse()
            if resp.status != 200:
                try:
                    result = _parse_json(resp.read(65536) or b"{}")
                except GatewayError:
                    result = {}
                kind, message = answer_error(resp.status, result)
                if kind == AUTH:
                    raise TokenRejected("watch refused: %s" % message)
                if kind == DENIED:
                    raise PermissionDenied("watch refused: %s" % message)
                raise StoreError("watch refused: HTTP %d %s" % (resp.status, message))
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
                if len(buffer) > MAX_MESSAGE_BYTES:
                    raise GatewayError("watch message over %d bytes" % MAX_MESSAGE_BYTES)
                for doc in docs:
                    batch = watch_events(doc)
                    if batch:
                        yield batch
        except TokenRejected:
            self._token_at = None
            raise
        except (OSError, http.client.HTTPException) as exc:
            if stop.is_set():
                return
            raise StoreError("watch failed on %s: %s" % (parts.netloc, exc)) from None
        finally:
            self._watch_conn = self._watch_sock = None
            if resp is not None:
                resp.close()
            conn.close()


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
    password = etcd.get("password")  # config.load_config read it from etcd.password_file
    return EtcdClient(etcd["endpoints"], etcd["timeout"], etcd["ca_cert"], etcd["cert"], etcd["key"], etcd["api_path"],
                      user=etcd.get("user"), password=password.reveal() if password is not None else None)
