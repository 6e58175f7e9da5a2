#!/usr/bin/env python3
"""How fast the web pages answer with 10,000 repositories and 100,000 tags.

    python3 benches/ui-pages.py [--repos 10000] [--tags 10] [--runs 20] [--bin PATH]

Builds the release binary, starts it on a fresh data directory, pushes
REPOS repositories of TAGS tags each (one shared config and layer, mounted
into each repository; every tag a distinct manifest), then times each page
RUNS times from loopback (time to the last byte, which on loopback is the
server's time plus well under a millisecond) and prints the medians and the
worst. Anonymous, auth off: the access check per repository is a glob
match, measured separately by the auth tests.
"""
import argparse
import concurrent.futures as cf
import hashlib
import http.client
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OCI = "application/vnd.oci.image.manifest.v1+json"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Conn:
    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def req(self, method, path, body=None, headers=None):
        try:
            self.c.request(method, path, body=body, headers=headers or {})
            r = self.c.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # an idle keep-alive connection the server closed: once more on a new one
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.c.request(method, path, body=body, headers=headers or {})
            r = self.c.getresponse()
        data = r.read()
        return r.status, r, data


def push_repo(port, i, tags, config, layer, cd, ld):
    c = Conn(port)
    repo = f"fleet/app-{i:05d}"
    for d, data in ((cd, config), (ld, layer)):
        st, r, _ = c.req("POST", f"/v2/{repo}/blobs/uploads/?mount={d}&from=fleet/seed")
        if st != 201:
            raise SystemExit(f"mount into {repo}: {st}")
    for t in range(tags):
        arch = ["amd64", "arm64", "ppc64le", "s390x"][t % 4]
        m = json.dumps({"schemaVersion": 2, "mediaType": OCI,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(config)},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": len(layer)}],
                        "annotations": {"n": f"{i}-{t}-{arch}"}}).encode()
        st, _, body = c.req("PUT", f"/v2/{repo}/manifests/v{t}", m, {"Content-Type": OCI})
        if st != 201:
            raise SystemExit(f"push {repo}:v{t}: {st} {body[:200]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repos", type=int, default=10000)
    ap.add_argument("--tags", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--bin", help="this berth binary instead of a fresh release build")
    a = ap.parse_args()
    binary = a.bin or os.path.join(ROOT, "target", "release", "berth")
    if not a.bin:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    work = tempfile.mkdtemp(prefix="berth-ui-bench-")
    port = free_port()
    srv = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}",
                            "--data-dir", os.path.join(work, "data")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        layer = os.urandom(4096)
        cd = "sha256:" + hashlib.sha256(config).hexdigest()
        ld = "sha256:" + hashlib.sha256(layer).hexdigest()
        c = Conn(port)
        for d, data in ((cd, config), (ld, layer)):
            st, r, _ = c.req("POST", "/v2/fleet/seed/blobs/uploads/")
            loc = r.getheader("Location")
            st, _, _ = c.req("PUT", f"{loc}{'&' if '?' in loc else '?'}digest={d}", data, {"Content-Type": "application/octet-stream"})
            assert st == 201, st
        t0 = time.time()
        with cf.ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda i: push_repo(port, i, a.tags, config, layer, cd, ld), range(a.repos)))
        print(f"# pushed {a.repos} repositories x {a.tags} tags in {time.time() - t0:.0f} s")
        mid = f"fleet/app-{a.repos // 2:05d}"
        st, r, _ = c.req("HEAD", f"/v2/{mid}/manifests/v0", headers={"Accept": OCI})
        digest = r.getheader("Docker-Content-Digest")
        pages = [
            ("repositories, first page", "/ui/"),
            ("repositories, a page deep in", f"/ui/?after=fleet/app-{a.repos - 150:05d}"),
            ("search (matches 1 in 10)", "/ui/?q=app-0001"),
            ("search (matches nothing)", "/ui/?q=nothing-like-this"),
            ("a repository (its tags, matrix)", f"/ui/repo/{mid}"),
            ("an image", f"/ui/image/{mid}@{digest}"),
            ("platforms across repositories", "/ui/platforms"),
            ("storage and health", "/ui/admin"),
        ]
        print(f"{'page':40} {'median ms':>10} {'worst ms':>10} {'bytes':>8}")
        for name, path in pages:
            times = []
            size = 0
            for _ in range(a.runs):
                t = time.perf_counter()
                st, _, body = c.req("GET", path)
                times.append((time.perf_counter() - t) * 1000)
                assert st == 200, (path, st)
                size = len(body)
            print(f"{name:40} {statistics.median(times):10.2f} {max(times):10.2f} {size:8}")
    finally:
        srv.terminate()
        srv.wait()


if __name__ == "__main__":
    main()
