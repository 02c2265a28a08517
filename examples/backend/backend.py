#!/usr/bin/python3
"""cardgw reference backend — the REST side of a business-card mini-program beside cardgw.

It shows every piece a team writes around the gateway, with Debian's python3-redis and
python3-msgpack only (run it with /usr/bin/python3):

* login: writes a session hash (cardgw:session:<token>, with the user's card as `info`, so
  directories show names and avatars from presence) and also hands out an HS256 JWT;
* groups and membership: SQLite tables, mirrored into cardgw:group:<gid>:members (who may
  subscribe), with member_joined / member_left / card_updated published to group:<gid>;
* a directory snapshot: members, cards, online badges (GET /api/v1/online on the gateway) and the
  channel position to subscribe from — taken under the same lock as every change, so snapshot +
  subscribe-with-since is exactly the backend's state;
* the inbox worker: a consumer group on cardgw:inbox serving the rpc methods card.request and
  card.accept, answering on the reply channel the node put in the entry;
* the offline worker: a consumer group on cardgw:offline (on every Redis holding channels)
  recording the notification it would send (WeChat 订阅消息 / SMS) for users who were away.

Usage: backend.py --port 8000 --redis redis://127.0.0.1:6379/0 --gateway http://127.0.0.1:8080
       --api-key K --jwt-secret S [--shard redis://... ...] [--db FILE]
HTTP (JSON; `Authorization: Bearer <session token>` where marked *):
  POST /login {"uid", "card"}            -> {"uid", "token", "jwt"}
  PUT  /card {"card"} *                  -> {"ok": true}
  POST /groups/<gid>/join *              -> {"ok": true}
  POST /groups/<gid>/leave *             -> {"ok": true}
  GET  /groups/<gid>/directory *         -> {"group", "members": [{uid, card, online, last_seen}],
                                             "position": {"epoch", "offset"}}
  GET  /contacts *                       -> {"contacts": [{uid, card, exchange}],
                                             "exchanges": [{id, from, to, status}]}
  GET  /notifications?uid=U              -> {"notifications": [{uid, channel, offset, event, ...}]}
  GET  /config                           -> {"ws": [the gateway WebSocket URLs given by --ws]}
(The demo page, examples/demo, is served by the nodes: static_root; it calls this with CORS.)
  GET  /healthz                          -> ok
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import signal
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgpack
import redis

SESSION_TTL_S = 7 * 86400
INBOX, INBOX_GROUP = "cardgw:inbox", "card-backend"
OFFLINE, OFFLINE_GROUP = "cardgw:offline", "card-notify"
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (uid TEXT PRIMARY KEY, card TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (gid TEXT, uid TEXT, PRIMARY KEY (gid, uid));
CREATE TABLE IF NOT EXISTS exchanges (id INTEGER PRIMARY KEY AUTOINCREMENT, from_uid TEXT,
    to_uid TEXT, status TEXT, created REAL, accepted REAL);
CREATE TABLE IF NOT EXISTS contacts (owner TEXT, uid TEXT, card TEXT, exchange INTEGER,
    PRIMARY KEY (owner, uid));
CREATE TABLE IF NOT EXISTS notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT,
    channel TEXT, epoch TEXT, offset INTEGER, event TEXT, body TEXT, stream_id TEXT UNIQUE,
    created REAL);
"""


class AppError(Exception):
    """An error the client gets: HTTP status for REST, the rpc error code for rpc."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Backend:
    def __init__(self, a):
        self.a = a
        self.r = redis.Redis.from_url(a.redis)
        self.shards = [redis.Redis.from_url(u) for u in a.shard] or [self.r]
        self.db = sqlite3.connect(a.db, check_same_thread=False, isolation_level=None)
        self.db.executescript(SCHEMA)
        # One lock around every change and its publications, and around every snapshot: a
        # snapshot's position then separates exactly the changes it holds from those it does not.
        self.lock = threading.RLock()
        self.stopping = threading.Event()

    # ---- the gateway's server API -------------------------------------------------------------
    def gateway(self, method, path, body=None):
        req = urllib.request.Request(self.a.gateway + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": "apikey " + self.a.api_key,
                                              "Content-Type": "application/json"})
        for attempt in range(5):  # a node restarting or Redis failing over: 503, retry
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    return json.loads(resp.read() or b"null")
            except urllib.error.HTTPError as e:
                if e.code != 503 or attempt == 4:
                    raise AppError(502, "gateway %s %s: %d %s" % (method, path, e.code,
                                                                e.read()[:200]))
            except OSError as e:
                if attempt == 4:
                    raise AppError(502, "gateway %s %s: %s" % (method, path, e))
            time.sleep(0.2 * (attempt + 1))

    def publish(self, channel, data):
        return self.gateway("POST", "/api/v1/publish", {"channel": channel, "data": data})

    # ---- users and sessions --------------------------------------------------------------------
    def card_of(self, uid):
        row = self.db.execute("SELECT card FROM users WHERE uid = ?", (uid,)).fetchone()
        return json.loads(row[0]) if row else None

    def login(self, uid, card):
        if not uid or len(uid) > 64 or not all(c.isalnum() or c in "_.@=+,;-" for c in uid):
            raise AppError(400, "bad uid")
        if not isinstance(card, dict) or len(json.dumps(card)) > 800:
            raise AppError(400, "card must be an object of at most 800 bytes")
        with self.lock:
            self.db.execute("INSERT INTO users (uid, card) VALUES (?, ?) ON CONFLICT (uid) "
                            "DO UPDATE SET card = excluded.card", (uid, json.dumps(card)))
        token = secrets.token_urlsafe(24)
        exp = int(time.time()) + SESSION_TTL_S
        self.r.hset("cardgw:session:" + token,
                    mapping={"uid": uid, "expires_at": exp, "info": json.dumps(card)})
        self.r.expire("cardgw:session:" + token, SESSION_TTL_S)
        head = b64url(b'{"alg":"HS256","typ":"JWT"}')
        body = b64url(json.dumps({"sub": uid, "exp": exp, "info": card}).encode())
        sig = hmac.new(self.a.jwt_secret.encode(), ("%s.%s" % (head, body)).encode(),
                       hashlib.sha256).digest()
        return {"uid": uid, "token": token, "jwt": "%s.%s.%s" % (head, body, b64url(sig))}

    def session_uid(self, headers):
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise AppError(401, "Authorization: Bearer <token> required")
        uid = self.r.hget("cardgw:session:" + auth[7:], "uid")
        if not uid:
            raise AppError(401, "unknown session")
        return uid.decode()

    def groups_of(self, uid):
        return [g for (g,) in self.db.execute("SELECT gid FROM members WHERE uid = ?", (uid,))]

    def set_card(self, uid, card):
        with self.lock:
            if self.card_of(uid) is None:
                raise AppError(404, "no such user")
            self.db.execute("UPDATE users SET card = ? WHERE uid = ?", (json.dumps(card), uid))
            for gid in self.groups_of(uid):
                self.publish("group:" + gid, {"event": "card_updated", "uid": uid, "card": card})

    # ---- groups ---------------------------------------------------------------------------------
    def join(self, gid, uid):
        with self.lock:
            cur = self.db.execute("INSERT OR IGNORE INTO members (gid, uid) VALUES (?, ?)",
                                  (gid, uid))
            self.r.sadd("cardgw:group:%s:members" % gid, uid)
            if cur.rowcount:
                self.publish("group:" + gid, {"event": "member_joined", "uid": uid,
                                              "card": self.card_of(uid)})

    def leave(self, gid, uid):
        with self.lock:
            cur = self.db.execute("DELETE FROM members WHERE gid = ? AND uid = ?", (gid, uid))
            self.r.srem("cardgw:group:%s:members" % gid, uid)
            if cur.rowcount:
                self.publish("group:" + gid, {"event": "member_left", "uid": uid})
        # their connections stop receiving the group at once
        self.gateway("POST", "/api/v1/unsubscribe", {"uid": uid, "channel": "group:" + gid})

    def directory(self, gid, uid):
        with self.lock:
            if not self.db.execute("SELECT 1 FROM members WHERE gid = ? AND uid = ?",
                                   (gid, uid)).fetchone():
                raise AppError(403, "not a member")
            pos = self.gateway("GET", "/api/v1/position?channel=" +
                               urllib.parse.quote("group:" + gid))
            rows = self.db.execute("SELECT m.uid, u.card FROM members m JOIN users u "
                                   "ON u.uid = m.uid WHERE m.gid = ? ORDER BY m.uid",
                                   (gid,)).fetchall()
        online = {}
        uids = [u for u, _ in rows]
        for i in range(0, len(uids), 1000):  # badges: not part of the consistent cut
            for st in self.gateway("POST", "/api/v1/online", {"uids": uids[i:i + 1000]})["users"]:
                online[st["uid"]] = st
        return {"group": gid, "position": pos,
                "members": [{"uid": u, "card": json.loads(c),
                             "online": online.get(u, {}).get("online", False),
                             "last_seen": online.get(u, {}).get("last_seen")} for u, c in rows]}

    def contacts(self, uid):
        with self.lock:
            cs = self.db.execute("SELECT uid, card, exchange FROM contacts WHERE owner = ? "
                                 "ORDER BY uid", (uid,)).fetchall()
            xs = self.db.execute("SELECT id, from_uid, to_uid, status FROM exchanges WHERE "
                                 "from_uid = ? OR to_uid = ? ORDER BY id", (uid, uid)).fetchall()
        return {"contacts": [{"uid": u, "card": json.loads(c), "exchange": x} for u, c, x in cs],
                "exchanges": [{"id": i, "from": f, "to": t, "status": s} for i, f, t, s in xs]}

    # ---- the card exchange (rpc methods) ----------------------------------------------------------
    def card_request(self, uid, data):
        to = data.get("to") if isinstance(data, dict) else None
        if not isinstance(to, str) or to == uid:
            raise AppError(400, "data must be {\"to\": <another uid>}")
        with self.lock:
            if self.card_of(to) is None:
                raise AppError(404, "no such user")
            if self.db.execute("SELECT 1 FROM contacts WHERE owner = ? AND uid = ?",
                               (uid, to)).fetchone():
                raise AppError(409, "already exchanged")
            row = self.db.execute("SELECT id FROM exchanges WHERE from_uid = ? AND to_uid = ? "
                                  "AND status = 'pending'", (uid, to)).fetchone()
            if row:  # asked again (a retried rpc): the same exchange, nothing sent twice
                return {"exchange": row[0], "status": "pending"}
            xid = self.db.execute("INSERT INTO exchanges (from_uid, to_uid, status, created) "
                                  "VALUES (?, ?, 'pending', ?)", (uid, to, time.time())).lastrowid
            self.publish("user:" + to, {"event": "card.received", "exchange": xid, "from": uid,
                                        "status": "pending", "card": self.card_of(uid)})
        return {"exchange": xid, "status": "pending"}

    def card_accept(self, uid, data):
        xid = data.get("exchange") if isinstance(data, dict) else None
        if not isinstance(xid, int):
            raise AppError(400, "data must be {\"exchange\": <id>}")
        with self.lock:
            row = self.db.execute("SELECT from_uid, to_uid, status FROM exchanges WHERE id = ?",
                                  (xid,)).fetchone()
            if not row or row[1] != uid:
                raise AppError(404, "no such exchange for you")
            frm = row[0]
            if row[2] == "accepted":
                return {"exchange": xid, "status": "accepted", "card": self.card_of(frm)}
            self.db.execute("UPDATE exchanges SET status = 'accepted', accepted = ? WHERE id = ?",
                            (time.time(), xid))
            for owner, other in ((uid, frm), (frm, uid)):
                self.db.execute("INSERT OR REPLACE INTO contacts (owner, uid, card, exchange) "
                                "VALUES (?, ?, ?, ?)", (owner, other,
                                                        json.dumps(self.card_of(other)), xid))
            self.publish("user:" + frm, {"event": "card.received", "exchange": xid, "from": uid,
                                         "status": "accepted", "card": self.card_of(uid)})
            self.publish("user:" + uid, {"event": "card.accepted", "exchange": xid, "with": frm})
        return {"exchange": xid, "status": "accepted", "card": self.card_of(frm)}

    METHODS = {"card.request": card_request, "card.accept": card_accept}

    # ---- workers ------------------------------------------------------------------------------
    @staticmethod
    def ensure_group(r, stream, group):
        try:
            r.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def inbox_worker(self):
        """Serves rpc calls: each entry is handled once (consumer group), answered on its reply
        channel when it has one, then acknowledged."""
        r = redis.Redis.from_url(self.a.redis)
        self.ensure_group(r, INBOX, INBOX_GROUP)
        while not self.stopping.is_set():
            try:
                got = r.xreadgroup(INBOX_GROUP, "worker-1", {INBOX: ">"}, count=50, block=500)
            except redis.exceptions.ConnectionError:
                time.sleep(0.5)
                continue
            for _, entries in got or []:
                for eid, f in entries:
                    self.serve_rpc(r, eid, {k.decode(): v for k, v in f.items()})

    def serve_rpc(self, r, eid, f):
        uid, method = f.get("uid", b"").decode(), f.get("method", b"").decode()
        try:
            fn = self.METHODS.get(method)
            if fn is None:
                raise AppError(404, "unknown method " + method)
            answer = {"result": fn(self, uid, msgpack.unpackb(f.get("data", b"\xc0"), raw=False))}
        except AppError as e:
            answer = {"error": {"code": e.status, "message": str(e)}}
        except Exception as e:  # a bug here must not stop the worker
            answer = {"error": {"code": 500, "message": "backend error: %s" % e}}
        if f.get("reply"):
            answer["req"] = f["req"].decode()
            r.publish(f["reply"], json.dumps(answer))
        r.xack(INBOX, INBOX_GROUP, eid)

    def offline_worker(self, r):
        """Records the notification it would send for each publication nobody was subscribed
        to (a user away): what a WeChat 订阅消息 or SMS sender does, minus the sending."""
        self.ensure_group(r, OFFLINE, OFFLINE_GROUP)
        while not self.stopping.is_set():
            try:
                got = r.xreadgroup(OFFLINE_GROUP, "notify-1", {OFFLINE: ">"}, count=100,
                                   block=500)
            except redis.exceptions.ConnectionError:
                time.sleep(0.5)
                continue
            for _, entries in got or []:
                for eid, f in entries:
                    ch = f[b"ch"].decode()
                    d = f[b"d"]
                    data = json.loads(d) if f[b"f"] == b"j" else msgpack.unpackb(d, raw=False)
                    event = data.get("event", "") if isinstance(data, dict) else ""
                    with self.lock:
                        self.db.execute(
                            "INSERT OR IGNORE INTO notifications (uid, channel, epoch, offset, "
                            "event, body, stream_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (ch.split(":", 1)[1], ch, f[b"e"].decode(), int(f[b"o"]), event,
                             json.dumps(data), "%s/%s" % (r.connection_pool.connection_kwargs
                                                          .get("port"), eid.decode()),
                             time.time()))
                    r.xack(OFFLINE, OFFLINE_GROUP, eid)

    def notifications(self, uid):
        with self.lock:
            rows = self.db.execute("SELECT uid, channel, epoch, offset, event, body FROM "
                                   "notifications WHERE uid = ? ORDER BY id", (uid,)).fetchall()
        return {"notifications": [{"uid": u, "channel": c, "epoch": e, "offset": o, "event": ev,
                                   "data": json.loads(b)} for u, c, e, o, ev, b in rows]}


def make_handler(app):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, fmt, *args):  # one line per request on stderr, as the default
            if app.a.verbose:
                super().log_message(fmt, *args)

        def reply(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(body)

        def body(self):
            n = int(self.headers.get("Content-Length") or 0)
            if n > 65536:
                raise AppError(413, "body too large")
            try:
                return json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                raise AppError(400, "body must be JSON")

        def route(self, method):
            url = urllib.parse.urlparse(self.path)
            parts = [p for p in url.path.split("/") if p]
            if method == "GET" and parts == ["healthz"]:
                return {"ok": True}
            if method == "GET" and parts == ["config"]:
                return {"ws": app.a.ws}
            if method == "POST" and parts == ["login"]:
                b = self.body()
                return app.login(b.get("uid"), b.get("card", {}))
            if method == "GET" and parts == ["notifications"]:
                uid = urllib.parse.parse_qs(url.query).get("uid", [""])[0]
                return app.notifications(uid)
            uid = app.session_uid(self.headers)
            if method == "PUT" and parts == ["card"]:
                app.set_card(uid, self.body().get("card"))
                return {"ok": True}
            if method == "GET" and parts == ["contacts"]:
                return app.contacts(uid)
            if len(parts) == 3 and parts[0] == "groups":
                gid, what = parts[1], parts[2]
                if method == "POST" and what == "join":
                    app.join(gid, uid)
                    return {"ok": True}
                if method == "POST" and what == "leave":
                    app.leave(gid, uid)
                    return {"ok": True}
                if method == "GET" and what == "directory":
                    return app.directory(gid, uid)
            raise AppError(404, "not found")

        def handle_any(self, method):
            try:
                self.reply(200, self.route(method))
            except AppError as e:
                self.reply(e.status, {"error": str(e)})
            except Exception as e:
                self.reply(500, {"error": "internal: %s" % e})

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_PUT(self):
            self.handle_any("PUT")

        def do_OPTIONS(self):  # CORS preflight: the demo page is served by the nodes
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, POST, PUT")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Content-Length", "0")
            self.end_headers()
    return Handler


def main():
    ap = argparse.ArgumentParser(description="cardgw reference backend")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="cardgw's redis_url")
    ap.add_argument("--shard", action="append", default=[],
                    help="each of cardgw's redis_shards (for the offline streams)")
    ap.add_argument("--gateway", default="http://127.0.0.1:8080", help="a node's (or the LB's) URL")
    ap.add_argument("--api-key", default=os.environ.get("CARDGW_API_KEY", ""))
    ap.add_argument("--jwt-secret", default=os.environ.get("CARDGW_JWT_SECRET", ""))
    ap.add_argument("--ws", action="append", default=[],
                    help="a gateway WebSocket URL for the demo page's failover (repeat for several)")
    ap.add_argument("--db", default=":memory:")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    app = Backend(a)
    threads = [threading.Thread(target=app.inbox_worker, daemon=True)]
    for r in app.shards:
        threads.append(threading.Thread(target=app.offline_worker, args=(r,), daemon=True))
    for t in threads:
        t.start()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(app))
    srv.daemon_threads = True

    def stop(*_):
        app.stopping.set()
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("card backend on http://127.0.0.1:%d (gateway %s)" % (a.port, a.gateway), flush=True)
    srv.serve_forever()
    for t in threads:
        t.join(2)
    srv.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
