//! A multi-GiB blob streams through the server both ways with bounded memory.

mod common;

use std::io::Read;

use berth::oci::Algorithm;
use berth::verify::Hasher;
use common::{Client, Server};

/// Yields `len` pseudo-random bytes (a 1 MiB block varied per block) while
/// hashing them.
struct Gen {
    left: u64,
    block: Vec<u8>,
    pos: usize,
    n: u64,
    hasher: Hasher,
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.pos == self.block.len() {
            self.n += 1;
            self.block[..8].copy_from_slice(&self.n.to_le_bytes());
            self.pos = 0;
        }
        let k = buf
            .len()
            .min(self.block.len() - self.pos)
            .min(self.left as usize);
        buf[..k].copy_from_slice(&self.block[self.pos..self.pos + k]);
        self.hasher.update(&buf[..k]);
        self.pos += k;
        self.left -= k as u64;
        Ok(k)
    }
}

const SIZE: u64 = 2 << 30; // 2 GiB
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn two_gib_blob_streams_with_bounded_memory() {
    let s = Server::start();
    let c = Client::new(&s);
    // the digest must be known before the closing PUT: hash once up front
    let mut pre = Gen {
        left: SIZE,
        block: common::bytes(21, 1 << 20),
        pos: 1 << 20,
        n: 0,
        hasher: Hasher::new(Algorithm::Sha256),
    };
    std::io::copy(&mut pre, &mut std::io::sink()).unwrap();
    let digest = pre.hasher.finish().to_string();

    let r = c.req("POST", "/v2/big/blobs/uploads/", &[], b"");
    let loc = r.header("location").unwrap().to_string();
    let gen = Gen {
        left: SIZE,
        block: common::bytes(21, 1 << 20),
        pos: 1 << 20,
        n: 0,
        hasher: Hasher::new(Algorithm::Sha256),
    };
    let r = c.req_stream("PUT", &format!("{loc}?digest={digest}"), SIZE, gen);
    assert_eq!(r.status, 201, "{}", r.text());

    // stream it back and hash it
    let resp = ureq::get(&s.url(&format!("/v2/big/blobs/{digest}")))
        .call()
        .unwrap();
    assert_eq!(
        resp.header("content-length"),
        Some(SIZE.to_string().as_str())
    );
    let mut reader = resp.into_reader();
    let mut h = Hasher::new(Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, SIZE);
    assert_eq!(h.finish().to_string(), digest);

    let hwm = s.vm_hwm_kib();
    eprintln!("server VmHWM after 2 GiB in and out: {} MiB", hwm / 1024);
    assert!(
        hwm < RSS_LIMIT_KIB,
        "server peak RSS {hwm} KiB exceeds {RSS_LIMIT_KIB} KiB"
    );
}
