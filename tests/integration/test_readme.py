"""README "Try it" runs as written from the repository: `make run` (a local Redis and a node,
.run/env), a session and a group in Redis, cardgw-cli subscribed, a publish through the server
API that the CLI prints, and everything stopped by the block's own `kill %1`. The node's port
is moved off 8080 with CARDGW_PORT (the block reads every address from .run/env)."""
import os
import re
import signal
import subprocess

from conftest import ROOT, free_port, wait_port_closed


def try_it_block():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("## Try it"):]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def test_readme_try_it_runs_as_written():
    block = try_it_block()
    assert "make run &" in block and "cardgw-cli" in block
    port = free_port()
    env = dict(os.environ, CARDGW_PORT=str(port))
    env.pop("CARDGW_REDIS_URL", None)
    env.pop("CARDGW_API_KEY", None)
    if os.path.exists(os.path.join(ROOT, ".run", "env")):
        os.remove(os.path.join(ROOT, ".run", "env"))
    p = subprocess.Popen(["bash", "-e", "-c", block], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == 0, out
    # the API's answer, then the CLI's line with the publication
    assert re.search(r'\{"offset":1,"epoch":"[0-9a-f]+"\}', out), out
    pubs = [line for line in out.splitlines() if '"card":"updated"' in line and '"offset":1' in line]
    assert pubs and '"channel":"group:g1"' in pubs[0], out
    # make run's node and Redis are gone, and so is .run/env
    assert wait_port_closed(port)
    m = re.search(r"started redis-server on 127\.0\.0\.1:(\d+)", out)
    assert m, out
    assert wait_port_closed(int(m.group(1)))
    assert not os.path.exists(os.path.join(ROOT, ".run", "env"))
