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
    """Every `file::name` and every bare `name` after it in the same cell names a test that
    exists: a Python test function, or a C unit test (TEST(name))."""
    files = {}
    for d in ("tests/integration", "tests/unit"):
        for f in os.listdir(os.path.join(ROOT, d)):
            if f.endswith((".py", ".c")):
                files[f] = open(os.path.join(ROOT, d, f)).read()

    def defined(f, name):
        text = files[f]
        return ("def %s(" % name in text) if f.endswith(".py") else ("TEST(%s)" % name in text)

    missing, checked = [], 0
    for line in SECURITY.splitlines():
        if not line.startswith("|"):
            continue
        for cell in line.split("|"):
            current = None
            for tok in re.findall(r"`([^`]+)`", cell):
                m = re.fullmatch(r"(?:tests/(?:unit|integration)/)?(test_[a-z_0-9]+\.(?:py|c))"
                                 r"(?:::([a-z_0-9]+))?", tok)
                if m:
                    current = m.group(1)
                    if current not in files:
                        missing.append(current)
                        current = None
                    elif m.group(2):
                        checked += 1
                        if not defined(current, m.group(2)):
                            missing.append(tok)
                elif current and re.fullmatch(r"[a-z_0-9]+", tok) and "_" in tok:
                    checked += 1
                    if not defined(current, tok):
                        missing.append("%s::%s" % (current, tok))
    assert checked >= 30, checked
    assert not missing, missing
