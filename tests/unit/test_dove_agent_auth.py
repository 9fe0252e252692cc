"""The DOVE agent's etcd authentication, its plain parts (issue 22): the configuration
(etcd.user, etcd.password_file), the password file, the check of the authenticate answer's
token, and which kind of failure each of etcd's error answers is. The error answers are the
bodies etcd 3.4's JSON gateway sends (recorded from etcd 3.4.23). The behaviour against etcd
itself (log in, token on every request, log in again after the token was revoked, refusals) is
tested against a real etcd: tests/integration/test_dove_etcd.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles" / "dove_agent" / "files"))

from overlay_vxlan_agent import config as agent_config  # noqa: E402
from overlay_vxlan_agent import etcd_client, gateway  # noqa: E402

HTTPS = {"endpoints": ["https://192.168.1.10:2379"], "ca_cert": "/etc/overlay-vxlan/pki/ca.pem"}


def raw_config(**etcd):
    return {"host": "h1", "vtep": "192.168.1.2", "networks": [{"vni": 100, "vxlan_dev": "vxlan0"}],
            "inventory": {"vteps": {"h1": ["192.168.1.2"]}}, "etcd": dict(HTTPS, **etcd)}


# --- the authenticate answer's token


def test_a_token_is_taken_from_the_authenticate_answer():
    answer = json.loads('{"header":{"cluster_id":"14841639068965178418","revision":"1"},"token":"wIEYnCBnjavMLGCZ.17"}')
    assert gateway.parse_token(answer) == "wIEYnCBnjavMLGCZ.17"
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJ1c2VybmFtZSI6ImgxIn0.c2lnbmF0dXJl"
    assert gateway.parse_token({"token": jwt}) == jwt


@pytest.mark.parametrize("token", [
    None, "", 17, 1.5, True, ["a"], {"t": "a"},
    "abc\r\nX-Injected: 1",  # would be a second header
    "abc\n", "a b", "t\x00", "t\x7f", "t\u00e9", "t\u2028", "x" * 4097,
])
def test_a_hostile_token_is_a_gateway_error(token):
    answer = {"header": {}} if token is None else {"token": token}
    with pytest.raises(etcd_client.GatewayError, match="authenticate answer: token is"):
        gateway.parse_token(answer)


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'"token"', b"{", b"[" * 100000, b"\xff\xfe", b'{"token": "a"}x'])
def test_an_authenticate_answer_that_is_not_a_json_object_is_a_gateway_error(body):
    """The same door as every other gateway answer (etcd_client._post: a 200 answer goes through
    _parse_json; then parse_token)."""
    with pytest.raises(etcd_client.GatewayError):
        gateway.parse_token(gateway._parse_json(body or b"{}"))


# --- etcd's error answers


@pytest.mark.parametrize("status,body,kind", [
    (200, '{"header":{"revision":"2"}}', gateway.OK),
    (401, '{"error":"etcdserver: invalid auth token","message":"etcdserver: invalid auth token","code":16}', gateway.AUTH),
    (400, '{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}', gateway.AUTH),
    (400, '{"error":"etcdserver: revision of auth store is old","code":3}', gateway.AUTH),
    (403, '{"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7}', gateway.DENIED),
    (412, '{"error":"etcdserver: authentication is not enabled","message":"etcdserver: authentication is not enabled","code":9}',
     gateway.AUTH_OFF),
    (400, '{"error":"etcdserver: authentication failed, invalid user ID or password","code":3}', gateway.OTHER),
    (404, '{"error":"etcdserver: requested lease not found","code":5}', gateway.LEASE),
    (503, '{"error":"etcdserver: leader changed","code":14}', gateway.RETRY),
    (429, '{"error":"etcdserver: too many requests","code":8}', gateway.RETRY),
    # the streamed endpoints (lease keepalive) put a gRPC status object in "error"
    (200, '{"error":{"grpc_code":16,"http_code":401,"message":"etcdserver: invalid auth token","http_status":"Unauthorized"}}', gateway.AUTH),
    (200, '{"error":{"grpc_code":7,"http_code":403,"message":"etcdserver: permission denied"}}', gateway.DENIED),
])
def test_error_answers_are_told_apart(status, body, kind):
    found, message = gateway.answer_error(status, json.loads(body))
    assert found == kind
    assert (message == "") == (kind == gateway.OK)


@pytest.mark.parametrize("result", [
    {"error": 5}, {"error": None, "code": True}, {"error": {"grpc_code": "16", "message": ["x"]}}, {"error": {}},
    {"message": {"a": 1}}, {"error": "line\nbreak\x1b[31m"}, {"error": "x" * 100000}, {"code": 2 ** 80},
])
def test_malformed_error_answers_are_classified_by_their_status(result):
    kind, message = gateway.answer_error(500, result)
    assert kind == gateway.RETRY and message.isprintable() and len(message) <= 200
    assert gateway.answer_error(401, result)[0] == gateway.AUTH
    assert gateway.answer_error(403, result)[0] == gateway.DENIED


def test_a_watch_canceled_for_its_token_or_its_permissions_says_so():
    header = {"cluster_id": "1", "revision": "2"}
    expired = {"result": {"header": header, "watch_id": "-1", "created": True, "canceled": True,
                          "cancel_reason": "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"}}
    with pytest.raises(gateway.TokenRejected, match="invalid auth token"):
        gateway.watch_events(expired)
    denied = {"result": {"header": header, "canceled": True, "cancel_reason": "etcdserver: permission denied"}}
    with pytest.raises(etcd_client.PermissionDenied):
        gateway.watch_events(denied)
    with pytest.raises(etcd_client.WatchCanceled, match="compact_revision 5"):
        gateway.watch_events({"result": {"canceled": True, "compact_revision": "5"}})
    with pytest.raises(gateway.TokenRejected):
        gateway.watch_events({"error": {"grpc_code": 16, "message": "etcdserver: invalid auth token"}})


# --- the configuration


def test_user_and_password_file_go_together_and_only_over_https():
    config = agent_config.validate_config(raw_config())
    assert (config["etcd"]["user"], config["etcd"]["password_file"]) == (None, None)
    config = agent_config.validate_config(raw_config(user="h1", password_file="/etc/overlay-vxlan/pki/etcd-password"))
    assert config["etcd"]["user"] == "h1" and "password" not in config["etcd"]  # read by load_config only


@pytest.mark.parametrize("etcd,message", [
    ({"user": "h1"}, "etcd.user and etcd.password_file go together"),
    ({"password_file": "/p"}, "etcd.user and etcd.password_file go together"),
    ({"user": "h 1", "password_file": "/p"}, "etcd.user: 1 to 128 visible characters"),
    ({"user": ["h1"], "password_file": "/p"}, "etcd.user: 1 to 128 visible characters"),
    ({"user": "h1", "password_file": "etcd-password"}, "etcd.password_file: an absolute path"),
    ({"user": "h1", "password_file": 7}, "etcd.password_file: an absolute path"),
    ({"user": "h1", "password_file": "/p", "endpoints": ["http://192.168.1.10:2379"], "ca_cert": None},
     "the password would cross the network in clear over http"),
    ({"password": "inline"}, "unknown option"),  # never the password itself in the (0644) configuration
])
def test_bad_credentials_settings_are_named(etcd, message):
    with pytest.raises(agent_config.ConfigError, match=message):
        agent_config.validate_config(raw_config(**etcd))


def write(path: Path, data: bytes, mode=0o600) -> str:
    path.write_bytes(data)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("data,password", [(b"s3cret", "s3cret"), (b"s3cret\n", "s3cret"), (b"s3cret\r\n", "s3cret"),
                                           (b"  spaced pass  \n", "  spaced pass  "), ("p\u00e4ss\n".encode(), "p\u00e4ss")])
def test_the_password_file_is_read_with_its_line_end_stripped(tmp_path, data, password):
    assert agent_config.read_password(write(tmp_path / "pw", data)) == password


@pytest.mark.parametrize("data,mode,message", [
    (b"s3cret", 0o644, r"open to every user \(mode 0644\)"),
    (b"s3cret", 0o602, r"open to every user \(mode 0602\)"),
    (b"", 0o600, "is empty"),
    (b"\n", 0o600, "is empty"),
    (b"one\ntwo\n", 0o600, "more than one line"),
    (b"\xff\xfe", 0o600, "not UTF-8"),
    (b"x" * 5000, 0o600, "over 4096 bytes"),
])
def test_a_bad_password_file_is_refused(tmp_path, data, mode, message):
    with pytest.raises(agent_config.ConfigError, match="etcd.password_file: .*" + message):
        agent_config.read_password(write(tmp_path / "pw", data, mode))


def test_a_missing_password_file_or_a_directory_is_refused(tmp_path):
    with pytest.raises(agent_config.ConfigError, match="cannot read .*No such file"):
        agent_config.read_password(str(tmp_path / "absent"))
    os.chmod(tmp_path, 0o700)
    with pytest.raises(agent_config.ConfigError, match="not a regular file|cannot read"):
        agent_config.read_password(str(tmp_path))


def test_load_config_reads_the_password_and_never_shows_it(tmp_path):
    password_file = write(tmp_path / "etcd-password", b"Sup3rS3cretPassw0rd\n")
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(raw_config(user="h1", password_file=password_file)))
    config = agent_config.load_config(str(path))
    secret = config["etcd"]["password"]
    assert secret.reveal() == "Sup3rS3cretPassw0rd"
    assert "Sup3rS3cret" not in repr(config) + str(config) + "%s %r" % (secret, secret)
    assert secret == agent_config.Secret("Sup3rS3cretPassw0rd") and secret != agent_config.Secret("other")
    client = etcd_client.make_etcd_client(dict(config, etcd=dict(config["etcd"], ca_cert=None)))
    assert client._credentials == ("h1", "Sup3rS3cretPassw0rd")
    # the file backend needs no password (and reads no file)
    path.write_text(json.dumps(dict(raw_config(user="h1", password_file=str(tmp_path / "absent")), backend="file")))
    assert "password" not in agent_config.load_config(str(path))["etcd"]


def test_a_password_file_every_user_may_read_stops_the_agent_at_load(tmp_path):
    password_file = write(tmp_path / "etcd-password", b"pw", 0o644)
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(raw_config(user="h1", password_file=password_file)))
    with pytest.raises(agent_config.ConfigError, match="open to every user"):
        agent_config.load_config(str(path))
