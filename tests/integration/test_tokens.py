"""Tokens and secrets against a real node: JWT time claims (nbf with leeway, absurd exp),
audience and issuer, canonical base64url (no padding, no second spelling of a signature), the
JWT secret from a file, secrets never echoed, namespaces that must say who may subscribe, and a
Redis ACL user (redis://user:pass@) against a real redis-server with requirepass."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time

import pytest
import websockets

from conftest import (JWT_SECRET, NODE_BIN, Client, RedisServer, connected_client, jwt, run)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def signed(head_b64, claims_b64, secret=JWT_SECRET):
    si = "%s.%s" % (head_b64, claims_b64)
    return si + "." + b64(hmac.new(secret.encode(), si.encode(), hashlib.sha256).digest())


def token(claims_text, header='{"alg":"HS256","typ":"JWT"}'):
    """A correctly signed JWT whose claims are the given JSON text (so 1e300 stays 1e300)."""
    return signed(b64(header.encode()), b64(claims_text.encode()))


async def refused(node, tok, code=101, close=4501):
    """connect with tok: error `code`, then the connection closes with `close`."""
    c = await Client.open(node.ws_url)
    r = await c.call("connect", token=tok)
    assert "error" in r and r["error"]["code"] == code, (tok, r)
    assert r["error"]["message"] in ("invalid token", "token expired"), r  # generic to the client
    with pytest.raises(websockets.ConnectionClosed) as e:
        await c.recv(5)
    assert e.value.rcvd.code == close, tok


async def accepted(node, tok):
    c = await Client.open(node.ws_url)
    res = await c.connect(tok)
    await c.close()
    return res


def test_absurd_times_and_noncanonical_encodings_refused(node):
    """Before: exp 1e300 connected (a double-to-uint64 conversion out of range: no expiry), a
    padded or re-spelt signature and a padded claims part were decoded leniently and accepted."""
    now = int(time.time())

    async def go():
        good = jwt("t1", exp=now + 3600)
        assert (await accepted(node, good))["uid"] == "t1"
        for claims in ('{"sub":"t1","exp":1e300}', '{"sub":"t1","exp":1e19}',
                       '{"sub":"t1","exp":%d.5}' % (now + 3600), '{"sub":"t1","exp":"%d"}' % now,
                       '{"sub":"t1","iat":-1}', '{"sub":"t1","nbf":1e300}',
                       '{"sub":"t1","exp":253402300800}'):
            await refused(node, token(claims))
        # the same signature bytes spelt with a set unused bit: 43 characters carry 258 bits
        sig = good.rsplit(".", 1)[1]
        twin = good[:-1] + ALPHABET[ALPHABET.index(sig[-1]) | 1]
        assert twin != good
        await refused(node, twin)
        await refused(node, good + "=")  # padded signature
        # a padded claims part, correctly signed over the padded text
        claims = base64.urlsafe_b64encode(json.dumps({"sub": "t1"}).encode()).decode()
        assert claims.endswith("=")
        await refused(node, signed(b64(b'{"alg":"HS256","typ":"JWT"}'), claims))
        # the standard base64 alphabet ('+', '/') instead of the URL-safe one
        odd = b64(json.dumps({"sub": "t1", "x": "~~~???>>>"}).encode())
        assert "-" in odd or "_" in odd
        await refused(node, signed(b64(b'{"alg":"HS256","typ":"JWT"}'),
                                   odd.replace("-", "+").replace("_", "/")))
        await accepted(node, signed(b64(b'{"alg":"HS256","typ":"JWT"}'), odd))
        # the node still serves: a good token connects, a client subscribes
        c = await connected_client(node, "t2")
        assert "result" in await c.call("subscribe", channel="public:tok")
    run(go())
    log = node.read_log()
    assert "token refused" in log and "exp not an integer NumericDate" in log, log[-3000:]
    assert good_parts_absent(log)


def good_parts_absent(log):
    return "eyJ" not in log  # no token (base64 of '{"') is ever written to the log


def test_nbf_leeway_audience_issuer(make_node):
    node = make_node({"jwt_audience": "cardgw-test", "jwt_issuer": "https://issuer.test",
                      "jwt_leeway_s": 10})
    now = int(time.time())
    iss = "https://issuer.test"

    async def go():
        ok = await accepted(node, jwt("a1", exp=now + 3600, aud="cardgw-test", iss=iss))
        assert ok["uid"] == "a1" and 3500 < ok["expires_in"] <= 3610
        await accepted(node, jwt("a1", aud=["other", "cardgw-test"], iss=iss))
        # nbf: 5 s ahead is within the 10 s leeway, 60 s ahead is not yet valid
        await accepted(node, jwt("a1", nbf=now + 5, aud="cardgw-test", iss=iss))
        await refused(node, jwt("a1", nbf=now + 60, aud="cardgw-test", iss=iss))
        # exp: 5 s ago is within the leeway (and the connection lives until exp + leeway)
        r = await accepted(node, jwt("a1", exp=now - 5, aud="cardgw-test", iss=iss))
        assert r["expires_in"] <= 5
        await refused(node, jwt("a1", exp=now - 60, aud="cardgw-test", iss=iss), 110, 4005)
        # audience
        await refused(node, jwt("a1", iss=iss))
        await refused(node, jwt("a1", aud="other", iss=iss))
        await refused(node, jwt("a1", aud=["other"], iss=iss))
        await refused(node, jwt("a1", aud=[], iss=iss))
        await refused(node, jwt("a1", aud=["cardgw-test", 7], iss=iss))
        # issuer
        await refused(node, jwt("a1", aud="cardgw-test"))
        await refused(node, jwt("a1", aud="cardgw-test", iss="https://evil.test"))
        # a refresh is checked the same way
        c = await connected_client_claims(node, "a1", aud="cardgw-test", iss=iss)
        r = await c.call("refresh", token=jwt("a1", aud="elsewhere", iss=iss))
        assert r["error"]["code"] == 101
        with pytest.raises(websockets.ConnectionClosed) as e:
            await c.recv(5)
        assert e.value.rcvd.code == 4501
    run(go())


async def connected_client_claims(node, uid, **claims):
    c = await Client.open(node.ws_url)
    await c.connect(jwt(uid, **claims))
    return c


def test_aud_refused_when_no_audience_configured(node):
    async def go():
        await refused(node, jwt("b1", aud="some-other-service"))
        await accepted(node, jwt("b1", iss="anyone"))  # iss is not checked when not configured
    run(go())


def test_session_expires_at_must_be_unix_seconds(node, redis_server):
    """Before: strtod read "1e300" (never expires, through the same out-of-range conversion)."""
    r = redis_server.client()
    now = int(time.time())
    r.hset("cardgw:session:s-huge", mapping={"uid": "s1", "expires_at": "1e300"})
    r.hset("cardgw:session:s-frac", mapping={"uid": "s1", "expires_at": "%d.5" % (now + 60)})
    r.hset("cardgw:session:s-neg", mapping={"uid": "s1", "expires_at": "-5"})
    r.hset("cardgw:session:s-ok", mapping={"uid": "s1", "expires_at": str(now + 600)})

    async def go():
        for t in ("s-huge", "s-frac", "s-neg"):
            await refused(node, t)
        res = await accepted(node, "s-ok")
        assert 590 <= res["expires_in"] <= 600
    run(go())


def test_jwt_secret_from_a_file(make_node, tmp_path):
    secret = "file-secret-" + "x" * 40
    path = tmp_path / "jwt.secret"
    path.write_text(secret + "\n")  # the trailing newline is dropped
    node = make_node({"jwt_secret": "", "jwt_secret_file": str(path)})

    async def go():
        assert (await accepted(node, jwt("f1", secret=secret)))["uid"] == "f1"
        await refused(node, jwt("f1"))  # signed with the config's usual secret: not this one
    run(go())
    out = subprocess.run([NODE_BIN, "--config", node.config, "--check-config"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and secret not in out.stdout and "jwt_secret = (set)" in out.stdout


def _start(tmp_path, text, env=None):
    conf = tmp_path / "node.conf"
    conf.write_text(text)
    return subprocess.run([NODE_BIN, "--config", str(conf)], capture_output=True, text=True,
                          timeout=30, env=dict(os.environ, **(env or {})))


def test_bad_secrets_and_rules_stop_the_node(tmp_path):
    base = "listen_address = 127.0.0.1\nport = 1\n"
    r = _start(tmp_path, base + "jwt_secret_file = %s/missing\n" % tmp_path)
    assert r.returncode == 2 and "jwt_secret_file" in r.stderr and "missing" in r.stderr
    r = _start(tmp_path, base + "redis_password_file = %s/missing\n" % tmp_path)
    assert r.returncode == 2 and "redis_password_file" in r.stderr
    r = _start(tmp_path, base + "jwt_secret = ShortSecret99\n")
    assert r.returncode == 2 and "'jwt_secret'" in r.stderr and "32" in r.stderr
    assert "ShortSecret99" not in r.stderr
    r = _start(tmp_path, base, {"CARDGW_JWT_SECRET": "ShortSecret99"})
    assert r.returncode == 2 and "ShortSecret99" not in r.stderr
    # a malformed line is named by file:line, its content never echoed
    r = _start(tmp_path, base + "TopSecretPasted12345678901234567890\n")
    assert r.returncode == 2 and "node.conf:3" in r.stderr
    assert "TopSecretPasted" not in r.stderr
    r = _start(tmp_path, base + "max_frame_bytes = TopSecretPasted\n")
    assert r.returncode == 2 and "max_frame_bytes" in r.stderr and "TopSecret" not in r.stderr
    r = _start(tmp_path, base + "redis_url = redis://u:TopSecretPw@h:0\n")
    assert r.returncode == 2 and "redis_url" in r.stderr and "TopSecretPw" not in r.stderr
    # a namespace that does not say who may subscribe: no silent "public"
    r = _start(tmp_path, base + "namespace.chat.publish = true\n")
    assert r.returncode == 2 and "namespace.chat.subscribe" in r.stderr
    for text in (r.stdout, r.stderr):
        assert "Sanitizer" not in text


def test_undescribed_namespace_is_refused(node):
    async def go():
        c = await connected_client(node, "n1")
        for cmd in ("subscribe", "presence", "history"):
            r = await c.call(cmd, channel="chat:1")
            assert r["error"]["code"] == 112, r
        assert "result" in await c.call("subscribe", channel="public:1")
    run(go())
    st, res = node.api("/api/v1/publish", {"channel": "chat:1", "data": {"x": 1}})
    assert st in (400, 404) and "unknown namespace" in json.dumps(res), (st, res)


@pytest.fixture
def acl_redis():
    """A redis-server whose default user needs a password and whose user `cardgw` has one of its
    own (Redis 6 ACL)."""
    r = RedisServer(extra=["--requirepass", "default-pass-1",
                           "--user", "cardgw", "on", ">acl-pass-1", "~*", "&*", "+@all"])
    r.client = lambda: __import__("redis").Redis(host="127.0.0.1", port=r.port,
                                                 username="cardgw", password="acl-pass-1",
                                                 socket_timeout=5)
    r.start()
    yield r
    r.cleanup()


def test_redis_acl_user(make_node, acl_redis, tmp_path):
    url = "redis://cardgw:acl-pass-1@127.0.0.1:%d/0" % acl_redis.port
    node = make_node(redis_url=url)

    async def go():
        c = await connected_client(node, "acl1")
        assert "result" in await c.call("subscribe", channel="public:acl")
        st, _ = node.api("/api/v1/publish", {"channel": "public:acl", "data": {"n": 1}})
        assert st == 200
        p = await c.next_event(5)
        assert p["push"] == "pub" and p["data"] == {"n": 1}, p
    run(go())
    # the password from a file, the user in the URL
    pw = tmp_path / "redis.pw"
    pw.write_text("acl-pass-1\n")
    make_node({"redis_password_file": str(pw)},
              redis_url="redis://cardgw:@127.0.0.1:%d/0" % acl_redis.port)
    # a wrong password: the node runs but is never ready, and says why (not the password)
    bad = make_node(redis_url="redis://cardgw:wrong-pass-9@127.0.0.1:%d/0" % acl_redis.port,
                    wait_ready=False)
    end = time.time() + 3
    while time.time() < end:
        assert bad.http("GET", "/readyz")[0] == 503
        time.sleep(0.2)
    log = bad.read_log()
    assert "AUTH" in log and "rejected" in log and "wrong-pass-9" not in log, log[-2000:]
    # the password of the default user alone (AUTH <password>) is not the ACL user's
    bad2 = make_node(redis_url="redis://:acl-pass-1@127.0.0.1:%d/0" % acl_redis.port,
                     wait_ready=False)
    time.sleep(1.5)
    assert bad2.http("GET", "/readyz")[0] == 503
