"""static_root: the node serves a directory's files over plain HTTP (the demo page and the client
bundle), loaded at start: only loaded names are served (no path outside the root, no dotfile,
no symbolic link), the rest of HTTP is unchanged, and a root over the limits stops the start with
a reason. Real nodes."""
import os
import shutil
import subprocess
import urllib.request

from conftest import NODE_BIN, Node


def get(node, path):
    """(status, content type, body); status None when the node closed without an answer."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (node.port, path), timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()
    except ConnectionError:
        return None, None, b""


def test_static_files_are_served_from_memory_and_nothing_else(make_node, redis_server, tmp_path):
    root = str(tmp_path / "static")  # pytest's tmp_path: removed with old runs, not left in /tmp
    os.makedirs(root)
    os.makedirs(os.path.join(root, "js", "deep"))
    files = {"index.html": b"<!doctype html><p>hi</p>", "js/app.js": b"export const x = 1;\n",
             "js/deep/index.html": b"<p>deep</p>", ".secret": b"no", "js/.env": b"no",
             "big.bin": os.urandom(300000)}
    for name, body in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(body)
    os.symlink("/etc/passwd", os.path.join(root, "passwd"))
    node = make_node({"static_root": root})
    assert "serving 4 static files" in node.read_log()
    assert get(node, "/") == (200, "text/html; charset=utf-8", files["index.html"])
    assert get(node, "/index.html")[2] == files["index.html"]
    assert get(node, "/js/app.js") == (200, "text/javascript; charset=utf-8", files["js/app.js"])
    assert get(node, "/js/deep/")[2] == files["js/deep/index.html"]
    assert get(node, "/js/deep")[2] == files["js/deep/index.html"]
    assert get(node, "/big.bin") == (200, "application/octet-stream", files["big.bin"])
    for path in ("/.secret", "/js/.env", "/passwd", "/js", "/nope.html",
                 "/js/app.js/"):
        assert get(node, path)[0] == 404, path
    # paths lws itself refuses (closed without an answer) or normalises: never a file outside
    for path in ("/../etc/passwd", "/js/../../etc/passwd", "/%2e%2e/etc/passwd", "//index.html",
                 "/js/../index.html%00"):
        st, _, body = get(node, path)
        print(path, st)
        assert st in (None, 400, 403, 404) or body == files["index.html"], (path, st, body[:40])
    # files changed on disk are not seen until a restart: nothing is read per request
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(b"changed")
    assert get(node, "/")[2] == files["index.html"]
    # the rest of HTTP is unchanged
    assert get(node, "/healthz")[0] == 200 and get(node, "/readyz")[0] == 200
    assert node.http("GET", "/api/v1/info")[0] == 200


def test_static_off_by_default_and_bad_roots_stop_the_start(make_node, redis_server, tmp_path):
    node = make_node()
    assert get(node, "/")[0] == 404 and get(node, "/index.html")[0] == 404
    many = str(tmp_path / "many")
    os.makedirs(many)
    for k in range(257):
        open(os.path.join(many, "f%d.txt" % k), "w").close()
    for root, why in (("/nonexistent/dir", "cannot read"), (many, "more than 256 files")):
        n = Node(redis_server.url, {"static_root": root})
        p = subprocess.run([NODE_BIN, "--config", n.config], capture_output=True, text=True,
                           timeout=20)
        assert p.returncode == 1 and why in p.stdout + p.stderr, (p.returncode, p.stdout, p.stderr)
        shutil.rmtree(n.dir, ignore_errors=True)
