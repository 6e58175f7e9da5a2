#!/usr/bin/env python3
"""What one push costs the services of a cluster: object-store requests (by
operation, from Berth's /metrics) and PostgreSQL transactions (commits and
rollbacks of the database, from pg_stat_database), per image pushed.

    python3 benches/push-cost.py --url http://127.0.0.1:5000 \
        --psql 'psql -h 127.0.0.1 -p 5432 -U berth -d berth' [--images 20]

Each image: a config blob and one layer (1 MiB, monolithic POST + PUT),
then its manifest under a new tag. With --chunked, the layer goes up in 4
PATCHes of 256 KiB. Prints one table; the last line is `push-cost: done`.
"""
import argparse
import hashlib
import http.client
import json
import os
import re
import subprocess
import urllib.parse


def req(base, method, path, body=b"", headers=None):
    u = urllib.parse.urlparse(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def push_blob(base, repo, data, chunked):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    st, h, _ = req(base, "POST", f"/v2/{repo}/blobs/uploads/")
    assert st == 202, st
    loc = h["location"]
    if chunked:
        step = len(data) // 4
        for i in range(0, len(data), step):
            part = data[i:i + step]
            st, h, _ = req(base, "PATCH", loc, part, {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{i}-{i + len(part) - 1}"})
            assert st == 202, st
            loc = h["location"]
        body = b""
    else:
        body = data
    sep = "&" if "?" in loc else "?"
    st, _, text = req(base, "PUT", f"{loc}{sep}digest={d}", body,
                      {"Content-Type": "application/octet-stream"})
    assert st == 201, (st, text)
    return d


def push_image(base, repo, tag, seed, chunked):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed,
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1 << 20)
    cd = push_blob(base, repo, cfg, False)
    ld = push_blob(base, repo, layer, chunked)
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": len(cfg)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": len(layer)}]}).encode()
    st, _, text = req(base, "PUT", f"/v2/{repo}/manifests/{tag}", m,
                      {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert st == 201, (st, text)


def s3_requests(base):
    _, _, text = req(base, "GET", "/metrics")
    out = {}
    for m in re.finditer(r'^berth_object_store_requests_total\{op="(\w+)"\} (\d+)', text.decode(), re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def pg_transactions(psql):
    q = "select xact_commit + xact_rollback from pg_stat_database where datname = current_database()"
    out = subprocess.run(psql.split() + ["-Atc", q], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--psql", required=True, help="psql command line for the metadata database")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--chunked", action="store_true")
    a = ap.parse_args()
    push_image(a.url, "cost/warm", "w", -1, a.chunked)  # connections, first records
    s0, p0 = s3_requests(a.url), pg_transactions(a.psql)
    for i in range(a.images):
        push_image(a.url, "cost/app", f"t{i}", i, a.chunked)
    s1, p1 = s3_requests(a.url), pg_transactions(a.psql)
    n = a.images
    kind = "chunked layer (4 PATCHes)" if a.chunked else "monolithic layer"
    print(f"per image pushed ({n} images: config + 1 MiB {kind} + manifest):")
    total = 0
    for op in sorted(set(s0) | set(s1)):
        d = s1.get(op, 0) - s0.get(op, 0)
        total += d
        if d:
            print(f"  object store {op:10s} {d / n:6.1f}")
    print(f"  object store total      {total / n:6.1f}")
    # pg_stat_database lags by up to 500 ms; the psql queries count too
    print(f"  PostgreSQL transactions {(p1 - p0) / n:6.1f}  (all of the database's, psql's own included)")
    print("push-cost: done")


if __name__ == "__main__":
    main()
