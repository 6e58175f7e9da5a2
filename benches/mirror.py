#!/usr/bin/env python3
"""Berth as a pull-through mirror against CNCF Distribution 2.8.2 in proxy
mode (`proxy.remoteurl`), side by side in one run, on the same upstream (a
plain Distribution holding the blobs), all on loopback (issue #19).

    benches/mirror.py [--rounds 2] [--mib 256] [--berth target/release/berth]

Rows (medians over the rounds; a fresh blob for every cold row):
  direct        the blob straight from the upstream (the baseline)
  cold          one client, blob not cached (the mirror fetches it)
  warm          the same blob again (served from the mirror's store)
  8 cold        8 clients at once on one uncached blob: aggregate MB/s, and
                how many times the upstream served it (its access log)
  ttfb cold     time to the first byte of a cold blob

Transfers are curl's (`-o /dev/null`), so the client is not the limit.
Needs `docker-registry` and `curl` on PATH.
"""

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_up(url, proc, log):
    for _ in range(200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return
        except Exception:
            if proc.poll() is not None:
                sys.exit(f"server exited: {open(log).read()[-2000:]}")
            time.sleep(0.05)
    sys.exit(f"{url} did not come up")


def distribution(work, name, extra):
    port = free_port()
    cfg = os.path.join(work, f"{name}.yml")
    log = os.path.join(work, f"{name}.log")
    with open(cfg, "w") as f:
        f.write(
            f"version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {work}/{name}-data\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra}"
        )
    p = subprocess.Popen(["docker-registry", "serve", cfg], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait_up(f"http://127.0.0.1:{port}/v2/", p, log)
    return p, port, log


def berth(binary, work, upstream):
    port = free_port()
    cfg = os.path.join(work, "berth.toml")
    log = os.path.join(work, "berth.log")
    with open(cfg, "w") as f:
        f.write(f'[[upstreams]]\nname = "up"\nurl = "{upstream}"\n')
    p = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{work}/berth-data", "--config", cfg],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    wait_up(f"http://127.0.0.1:{port}/v2/", p, log)
    return p, port


def push_blob(port, path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    digest = "sha256:" + h.hexdigest()
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", "-X", "POST", f"http://127.0.0.1:{port}/v2/bench/app/blobs/uploads/"],
        capture_output=True, text=True, check=True,
    ).stdout
    loc = next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.lower().startswith("location:"))
    if loc.startswith("/"):
        loc = f"http://127.0.0.1:{port}{loc}"
    sep = "&" if "?" in loc else "?"
    code = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "-H", "Content-Type: application/octet-stream",
         "--data-binary", f"@{path}", f"{loc}{sep}digest={digest}"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert code == "201", code
    return digest


def get(url):
    """(MB/s, seconds to first byte) of one GET."""
    out = subprocess.run(
        ["curl", "-sS", "-f", "-L", "-o", "/dev/null", "-w", "%{time_starttransfer} %{time_total} %{size_download}", url],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    ttfb, total, size = float(out[0]), float(out[1]), int(out[2])
    return size / total / 1e6, ttfb, size


def get_many(url, n):
    start = time.monotonic()
    ps = [subprocess.Popen(["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{size_download}", url], stdout=subprocess.PIPE, text=True)
          for _ in range(n)]
    sizes = [int(p.communicate()[0]) for p in ps]
    assert all(p.returncode == 0 for p in ps)
    return sum(sizes) / (time.monotonic() - start) / 1e6


def upstream_serves(log, digest):
    return sum(1 for l in open(log) if f"blobs/{digest}" in l and '"GET ' in l and '" 200 ' in l)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--mib", type=int, default=256)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--berth", default=os.path.join(here, "..", "target", "release", "berth"))
    a = ap.parse_args()
    for tool in ["docker-registry", "curl"]:
        if not shutil.which(tool):
            sys.exit(f"mirror.py: {tool} not on PATH")
    work = tempfile.mkdtemp(prefix="berth-mirror-bench-")
    procs = []
    try:
        up, up_port, up_log = distribution(work, "upstream", "")
        procs.append(up)
        upstream = f"http://127.0.0.1:{up_port}"
        proxy, proxy_port, _ = distribution(work, "proxy", f"proxy:\n  remoteurl: {upstream}\n")
        procs.append(proxy)
        b, b_port = berth(a.berth, work, upstream)
        procs.append(b)
        targets = {
            "berth": f"http://127.0.0.1:{b_port}/v2/up/bench/app/blobs/",
            "distribution": f"http://127.0.0.1:{proxy_port}/v2/bench/app/blobs/",
        }
        rows = {}

        def add(row, who, v):
            rows.setdefault(row, {}).setdefault(who, []).append(v)

        blob = os.path.join(work, "blob")
        for r in range(a.rounds):
            for who, base in targets.items():
                digests = []
                for _ in range(2):
                    with open(blob, "wb") as f:
                        for _ in range(a.mib):
                            f.write(os.urandom(1 << 20))
                    digests.append(push_blob(up_port, blob))
                cold, many = digests
                rate, _, _ = get(f"{upstream}/v2/bench/app/blobs/{cold}")
                add("direct from upstream (MB/s)", who, rate)
                rate, ttfb, size = get(base + cold)
                assert size == a.mib << 20
                add("cold (MB/s)", who, rate)
                add("ttfb cold (ms)", who, ttfb * 1000)
                rate, _, _ = get(base + cold)
                add("warm (MB/s)", who, rate)
                before = upstream_serves(up_log, many)
                add("8 cold at once (MB/s, sum)", who, get_many(base + many, 8))
                time.sleep(0.5)  # access log lines land
                add("8 cold: upstream GETs", who, upstream_serves(up_log, many) - before)
                print(f"round {r + 1} {who} done", file=sys.stderr)
        # Distribution's direct row is measured between its pulls, Berth's
        # between Berth's: one baseline per registry.
        print(f"\nmirror bench: {a.mib} MiB blobs, {a.rounds} rounds, medians, this machine")
        print(f"{'row':34} {'distribution':>14} {'berth':>10} {'ratio':>8}")
        for row, v in rows.items():
            d, bb = statistics.median(v["distribution"]), statistics.median(v["berth"])
            ratio = bb / d if d else float("inf")
            print(f"{row:34} {d:14.1f} {bb:10.1f} {ratio:8.2f}")
        direct = statistics.median(rows["direct from upstream (MB/s)"]["berth"])
        cold = statistics.median(rows["cold (MB/s)"]["berth"])
        print(f"berth cold / direct from upstream: {cold / direct:.2f}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
