#!/usr/bin/env python3
"""What each login mode costs per request: Berth with HTTP Basic (htpasswd,
bcrypt checked once, then cached) against Berth with Bearer tokens (RS256,
signature checked once, then remembered), side by side in one regbench run
(../shared/bench/regbench.py, imported, not changed: each target's
Authorization header is set here).

    python3 benches/auth-cost.py [--rounds 2] [regbench arguments...]

Two release servers on fresh data dirs, the same config (htpasswd + token
signing key); the `bearer` target sends a token from GET /token granting
pull,push on the repositories regbench uses. Needs openssl, wrk and hey.
Prints regbench's table; the small-request rows are the ones that differ.
"""
import base64
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGBENCH = os.environ.get("REGBENCH", os.path.join(ROOT, "..", "shared", "bench", "regbench.py"))
PREFIX = "authbench"
KINDS = ["up", "down", "small", "probe"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="berth-auth-bench-")
    key, cert = os.path.join(work, "token.key"), os.path.join(work, "token.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=bench", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    htpasswd = os.path.join(work, "htpasswd")
    subprocess.run(["htpasswd", "-Bbc", htpasswd, "bench", "bench-pw"], check=True, capture_output=True)
    servers = {}
    for label in ["basic", "bearer"]:
        port = free_port()
        data = os.path.join(work, label)
        cfg = os.path.join(work, f"{label}.toml")
        with open(cfg, "w") as f:
            f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{data}"\n[auth]\nhtpasswd = "{htpasswd}"\n'
                    f'[auth.token]\nkey = "{key}"\ncert = "{cert}"\nexpiry_secs = 86400\n')
        p = subprocess.Popen([os.path.join(ROOT, "target", "release", "berth"), "serve", "--config", cfg],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers[label] = (port, p, data)
    for port, _, _ in servers.values():
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
    port = servers["bearer"][0]
    scopes = "&".join(f"scope=repository:{PREFIX}/{k}:pull,push" for k in KINDS)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/token?service=berth&{scopes}")
    req.add_header("Authorization", "Basic " + base64.b64encode(b"bench:bench-pw").decode())
    token = json.load(urllib.request.urlopen(req))["token"]
    headers = {"basic": "Basic " + base64.b64encode(b"bench:bench-pw").decode(), "bearer": "Bearer " + token}

    spec = importlib.util.spec_from_file_location("regbench", REGBENCH)
    rb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rb)
    init = rb.Target.__init__

    def with_auth(self, label, *a, **kw):
        init(self, label, *a, **kw)
        self.auth = headers.get(label)

    rb.Target.__init__ = with_auth
    argv = ["--repo-prefix", PREFIX, "--skip", "dataset", "--out", os.path.join(ROOT, "benches", "auth-cost.json")]
    for label, (port, p, data) in servers.items():
        argv += ["--target", f"{label}=http://127.0.0.1:{port},pid={p.pid},storage={data}"]
    try:
        rb.main(argv + sys.argv[1:])
    finally:
        for _, p, _ in servers.values():
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
