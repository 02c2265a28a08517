"""Quotas where one user could cost the whole system (issue 16): the rpc rate per user (shared by
all of the user's connections on a node), the inbox stream's byte bound, history and recovery
bounded in bytes inside the Lua script, the short life of a meta hash a read created, and the
presence caps. Real redis-server, real nodes (ASan build), real clients."""
import asyncio
import json
import time

import msgpack
import pytest

from conftest import connected_client, metric, run


def refused(node, reason):
    st, text = node.http("GET", "/metrics")
    assert st == 200
    key = 'cardgw_rpc_refused_total{reason="%s"} ' % reason
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return None


async def burst(c, cmd, n, **fields):
    """Sends n commands at once on c, then waits for their n replies (in id order)."""
    ids = []
    for _ in range(n):
        ids.append(c.next_id)
        msg = {"id": c.next_id, "cmd": cmd}
        msg.update(fields)
        c.next_id += 1
        await c.ws.send(c.encode(msg))
    while not all(i in c.replies for i in ids):
        m = await c.recv(10)
        if "id" in m:
            c.replies[m["id"]] = m
        else:
            c.pushes.append(m)
    return [c.replies.pop(i) for i in ids]


# ---- 1. rpc rate per user ---------------------------------------------------------------------


def test_rpc_rate_is_per_user_across_connections(make_node, redis_server):
    """One user on four connections shares one bucket of max_rpcs_per_user_per_s (burst twice
    that): past it the rpc gets 115 and is not written to the inbox; another user still passes."""
    node = make_node({"max_rpcs_per_user_per_s": 5, "commands_per_second": 1000,
                      "command_burst": 1000})
    r = redis_server.client()

    async def go():
        hog = [await connected_client(node, "hog") for _ in range(4)]
        other = await connected_client(node, "other")
        t0 = time.monotonic()
        replies = sum(await asyncio.gather(*(burst(c, "rpc", 10, method="m", data={"i": 1})
                                             for c in hog)), [])
        elapsed = time.monotonic() - t0
        ok = [x for x in replies if "result" in x]
        limited = [x for x in replies if x.get("error", {}).get("code") == 115]
        assert len(ok) + len(limited) == 40, replies
        # burst 10, plus at most 5/s refilled while the 40 calls ran
        assert 10 <= len(ok) <= 10 + int(5 * elapsed) + 1, (len(ok), elapsed)
        assert r.xlen("cardgw:inbox") == len(ok)
        # the other user has a bucket of its own
        for i in range(5):
            x = await other.call("rpc", method="m", data=i)
            assert "result" in x, x
        assert r.xlen("cardgw:inbox") == len(ok) + 5
        # the hog's connections are still usable: the bucket refills
        await asyncio.sleep(0.5)
        x = await hog[0].call("rpc", method="m", data="again")
        assert "result" in x, x
        return len(limited)

    nlimited = run(go())
    assert refused(node, "user_rate") == nlimited
    uids = {e[1][b"uid"] for e in r.xrange("cardgw:inbox")}
    assert uids == {b"hog", b"other"}


# ---- 2. inbox bytes ---------------------------------------------------------------------------


def test_inbox_stays_under_inbox_max_bytes(make_node, redis_server):
    """A flood of rpcs as large as a frame allows (from many users, the per-user rate off) keeps
    cardgw:inbox under inbox_max_bytes as Redis measures it; JSON data that grows past
    max_frame_bytes as msgpack (floats) is refused with 104."""
    cap = 4 * 1024 * 1024
    node = make_node({"inbox_max_bytes": cap, "max_frame_bytes": 65536,
                      "max_rpcs_per_user_per_s": 0, "commands_per_second": 1000,
                      "command_burst": 1000})
    r = redis_server.client()
    blob = b"x" * 65000  # a msgpack frame of 65,0xx bytes with the envelope

    async def go():
        clients = [await connected_client(node, "u%d" % i, enc="msgpack") for i in range(8)]
        for _ in range(25):
            replies = sum(await asyncio.gather(*(burst(c, "rpc", 1, method="m", data=blob)
                                                 for c in clients)), [])
            assert all("result" in x for x in replies), replies[0]
        # 16,000 floats are 64,000 bytes of JSON and 144,000 as msgpack
        j = await connected_client(node, "floats")
        x = await j.call("rpc", method="m", data=[1.5] * 16000)
        assert x["error"]["code"] == 104, x

    run(go())
    used = r.memory_usage("cardgw:inbox", samples=0)
    assert used <= cap, (used, r.xlen("cardgw:inbox"))
    assert r.xlen("cardgw:inbox") >= 40  # still a useful backlog of the largest calls
    assert refused(node, "too_big") == 1
