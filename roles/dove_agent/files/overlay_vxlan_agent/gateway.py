# -*- coding: utf-8 -*-
# Copyright: overlay.vxlan contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What etcd's v3 JSON gateway answers, checked: the store's errors, JSON bodies, key/values,
watch messages, the token of /v3/auth/authenticate, and which kind of failure an error answer is.

Every function here takes what came over the wire and either returns well-typed values or
raises a GatewayError (a StoreError): a hostile or broken gateway never makes the agent crash.
etcd_client.py does the talking and re-exports these names.
"""

from __future__ import annotations

import base64
import json
import re


class StoreError(Exception):
    """The store could not be reached or refused a request."""


class LeaseLost(StoreError):
    pass


class WatchCanceled(StoreError):
    pass


class GatewayError(StoreError):
    """The gateway answered something that is not what etcd's JSON gateway sends."""


class PermissionDenied(StoreError):
    """etcd refused this request to this user (HTTP 403, gRPC PermissionDenied): asking again
    changes nothing until the controller role grants it, so callers do not retry at once."""


class AuthFailed(StoreError):
    """etcd refused this host's user and password, or the token it had just issued."""


class TokenRejected(StoreError):
    """A watch was refused for its token (expired, revoked, or issued by another member)."""


# What a gateway answer is (answer_kind).
OK, LEASE, AUTH, AUTH_OFF, DENIED, RETRY, OTHER = "ok", "lease", "auth", "auth-off", "denied", "retry", "other"
# gRPC codes the gateway puts in its error answers ("code", or "grpc_code" on streams).
_UNAUTHENTICATED, _PERMISSION_DENIED, _FAILED_PRECONDITION = 16, 7, 9
# Errors after which etcd's own client (clientv3 shouldRefreshToken) authenticates again: the
# token expired or was revoked, was issued by another member (simple tokens are per member), was
# never sent, or predates a change of users/roles.
_TOKEN_ERRORS = ("invalid auth token", "user name is empty", "revision of auth store is old")
# A token is sent back as an HTTP header: visible ASCII only (no CR/LF to inject a header),
# and bounded (etcd's simple tokens are ~20 characters, JWTs a few hundred).
_TOKEN_RE = re.compile(r"[!-~]{1,4096}")


# What json and base64 raise on hostile input besides ValueError (binascii.Error is one).
_PARSE_ERRORS = (ValueError, RecursionError, TypeError, AttributeError, KeyError, IndexError, UnicodeError, OverflowError)


def _b64(text) -> str:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return base64.b64encode(text).decode("ascii")


def _unb64(text) -> bytes:
    """Strict base64 (etcd's gateway encodes bytes fields so); binascii.Error (a ValueError) else."""
    if text is None:
        return b""
    if not isinstance(text, str):
        raise TypeError("base64 field is %s, not text" % type(text).__name__)
    return base64.b64decode(text, validate=True)


def _parse_json(data):
    """A gateway body -> a JSON object, or GatewayError (never ValueError/RecursionError)."""
    try:
        doc = json.loads(data)
    except _PARSE_ERRORS as exc:
        raise GatewayError("gateway answer is not JSON (%s)" % type(exc).__name__) from None
    if not isinstance(doc, dict):
        raise GatewayError("gateway answer is not a JSON object")
    return doc


def _object(doc: dict, name: str) -> dict:
    value = doc.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GatewayError("gateway answer: %s is not an object" % name)
    return value


def _int(value, name: str) -> int:
    """An int64 field (the gateway writes them as strings)."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise GatewayError("gateway answer: %s is not an integer" % name)
    try:
        return int(value)
    except ValueError:
        raise GatewayError("gateway answer: %s is not an integer" % name) from None


def decode_kv(kv) -> tuple:
    """A gateway mvccpb.KeyValue -> (key text, value bytes, mod_revision), or GatewayError."""
    if not isinstance(kv, dict):
        raise GatewayError("gateway answer: a kv is not an object")
    try:
        key = _unb64(kv.get("key")).decode("utf-8", "replace")
        value = _unb64(kv.get("value"))
    except _PARSE_ERRORS as exc:
        raise GatewayError("gateway answer: kv key or value is not base64 (%s)" % type(exc).__name__) from None
    if not key:
        raise GatewayError("gateway answer: a kv without a key")
    return key, value, _int(kv.get("mod_revision"), "mod_revision")


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
        except RecursionError:
            raise GatewayError("watch message nested too deeply") from None
        docs.append(doc)
        index = end


def _printable(text: str) -> str:
    """An error text from the gateway, safe for one log line."""
    return "".join(char if char.isprintable() else "?" for char in text[:200])


def answer_error(status: int, result: dict) -> tuple:
    """(kind, message) of a gateway answer: OK, or which failure it is.

    Unary answers carry {"error", "message", "code"}; streamed ones (lease keepalive, watch)
    {"error": {"grpc_code", "http_code", "message"}}. Anything else in those fields is tolerated
    (it only makes the message less precise): the kind then follows the HTTP status."""
    if status == 200 and "error" not in result:
        return OK, ""
    error = result.get("error")
    code = result.get("code")
    if isinstance(error, dict):
        code = error.get("grpc_code", code)
        error = error.get("message")
    message = error if isinstance(error, str) and error else result.get("message")
    if not isinstance(message, str) or not message:
        message = "HTTP %d" % status
    message = _printable(message)
    if isinstance(code, bool) or not isinstance(code, int):
        code = None
    if "lease not found" in message:
        return LEASE, message
    if status == 401 or code == _UNAUTHENTICATED or any(text in message for text in _TOKEN_ERRORS):
        return AUTH, message
    if code == _FAILED_PRECONDITION and "authentication is not enabled" in message:
        return AUTH_OFF, message
    if status == 403 or code == _PERMISSION_DENIED or "permission denied" in message:
        return DENIED, message
    if status >= 500 or status == 429:
        return RETRY, message
    return OTHER, message


def parse_token(result: dict) -> str:
    """The token of a /v3/auth/authenticate answer, or GatewayError."""
    token = result.get("token")
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        raise GatewayError("authenticate answer: token is %s" % ("missing" if token is None else "malformed"))
    return token


def watch_events(doc) -> list:
    """One message of the watch stream -> [(type, key, value, mod_revision)] (may be empty).

    A message that is not what the gateway sends is a GatewayError: the watcher drops the
    stream and reads the whole prefix again (a range skips a garbled kv; a watch event cannot
    be skipped without losing track of its key)."""
    if not isinstance(doc, dict):
        raise GatewayError("watch message is not a JSON object")
    if "error" in doc:
        kind, message = answer_error(0, doc)
        raise _watch_refusal(kind, "watch error: %s" % message)
    result = _object(doc, "result")
    if result.get("canceled"):
        # etcd cancels a new watch whose token is invalid or whose user may not read the range
        # (cancel_reason), and an old one whose revision was compacted (compact_revision)
        reason = result.get("cancel_reason")
        if isinstance(reason, str) and reason:
            kind, message = answer_error(0, {"error": reason})
            raise _watch_refusal(kind, "watch canceled: %s" % message)
        raise WatchCanceled("watch canceled (compact_revision %s)" % _printable(str(result.get("compact_revision"))[:40]))
    items = result.get("events") or []
    if not isinstance(items, list):
        raise GatewayError("watch message: events is not a list")
    events = []
    for event in items:
        if not isinstance(event, dict):
            raise GatewayError("watch message: an event is not an object")
        kind = event.get("type") or "PUT"
        if kind not in ("PUT", "DELETE"):
            raise GatewayError("watch message: event type %r" % str(kind)[:20])
        events.append((kind,) + decode_kv(event.get("kv")))
    return events


def _watch_refusal(kind: str, message: str) -> StoreError:
    if kind == AUTH:
        return TokenRejected(message)
    if kind == DENIED:
        return PermissionDenied(message)
    return WatchCanceled(message) if "canceled" in message else StoreError(message)
