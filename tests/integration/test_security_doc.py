"""SECURITY.md against config.example: every row of its Limits table names a key config.example
has, with the same default; every key it mentions anywhere exists; every test it cites as
evidence exists. No server: the documents are the product here (a stale default in the threat
model is a security bug of its own)."""
import os
import re

from conftest import ROOT

SECURITY = open(os.path.join(ROOT, "SECURITY.md")).read()
EXAMPLE = open(os.path.join(ROOT, "config.example")).read()


def example_defaults():
    out = {}
    for line in EXAMPLE.splitlines():
        m = re.match(r"^([a-z_][a-z0-9_.]*) =(?: (.*))?$", line)
        if m:
            out[m.group(1)] = (m.group(2) or "").strip()
    return out


def limits_rows():
    sec = SECURITY.split("## Limits", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in sec.splitlines():
        m = re.match(r"^\| `([a-z_0-9.]+)` \| ([^|]*) \|", line)
        if m:
            rows.append((m.group(1), m.group(2).strip()))
    return rows


def test_every_limit_default_matches_config_example():
    defaults = example_defaults()
    rows = limits_rows()
    assert len(rows) >= 30, rows
    wrong = []
    for key, doc in rows:
        assert key in defaults, "SECURITY.md lists %s, config.example has no such key" % key
        want = defaults[key]
        got = "" if doc == "(empty)" else doc
        if got != want:
            wrong.append("%s: SECURITY.md %r, config.example %r" % (key, doc, want))
    assert not wrong, "\n".join(wrong)


def test_every_limit_key_with_a_number_in_config_example_is_in_the_table():
    # the keys that bound what a client, user or key holder can make the node do
    must = ["max_frame_bytes", "max_send_queue_bytes", "max_subscriptions", "commands_per_second",
            "max_connections_per_user", "max_pending_rpcs_per_connection",
            "max_rpcs_per_user_per_s", "inbox_max_bytes", "recovery_max_bytes",
            "presence_max_members", "join_leave_max_members", "meta_read_ttl_s",
            "api_max_body_bytes", "rpc_max_answer_bytes", "http_timeout_ms",
            "max_new_connections_per_ip_per_s", "auth_timeout_ms", "jwt_leeway_s"]
    listed = {k for k, _ in limits_rows()}
    assert not [k for k in must if k not in listed]


def test_keys_named_in_security_md_exist():
    defaults = example_defaults()
    named = set(re.findall(r"`([a-z]+(?:_[a-z0-9]+)+)(?: = [^`]*)?`", SECURITY))
    # words in backticks that are not configuration keys
    other = {"expires_at",        # the session hash's field (docs/redis-schema.md)
             "join_leave",        # namespace.<ns>.join_leave
             "limit_conn",        # nginx
             "protocol_version",  # the TLS alert
             "secret_files_and_minimum_length"}  # a unit test (test_config.c)
    unknown = sorted(k for k in named - other if k not in defaults
                     and not k.startswith(("cardgw_", "test_", "gw_", "process_"))
                     and not k.endswith((".py", ".c")))
    assert not unknown, "SECURITY.md names keys config.example does not have: %s" % unknown


def test_cited_tests_exist():
    files = {}
    for d in ("tests/integration", "tests/unit"):
        for f in os.listdir(os.path.join(ROOT, d)):
            if not f.endswith((".py", ".c")):
                continue
            files[f] = open(os.path.join(ROOT, d, f)).read()
    missing = []
    for f, name in re.findall(r"`?(test_[a-z_0-9]+\.(?:py|c))`?(?:::|`, `|`::)?`?([a-z_0-9]*)",
                              SECURITY):
        if f not in files:
            missing.append(f)
        elif name and name.startswith("test_") and "def %s(" % name not in files[f]:
            missing.append("%s::%s" % (f, name))
    assert not missing, missing
