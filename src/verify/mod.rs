//! Digest computation, one interface for every algorithm Berth verifies.
//! Every place that hashes content (uploads, manifests, scrub) goes through here,
//! so the choice of implementation lives in one place: `sha2` for SHA-2
//! (measured within 3% of ring/aws-lc-rs/openssl on SHA-NI hardware) and the
//! `blake3` crate.

pub mod blocks;

use std::io::Read;

use sha2::Digest as _;

use crate::oci::{Algorithm, Digest};

/// An incremental hasher for one algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub fn new(alg: Algorithm) -> Hasher {
        match alg {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algorithm::Blake3 => Hasher::Blake3(Box::default()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
            Hasher::Blake3(_) => Algorithm::Blake3,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Blake3(h) => {
                h.update(data);
            }
        }
    }

    pub fn finish(self) -> Digest {
        let alg = self.algorithm();
        let hex = match self {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
            Hasher::Blake3(h) => hex(h.finalize().as_bytes()),
        };
        Digest::new(alg, hex).expect("a hasher yields a well-formed digest")
    }
}

/// Digest of an in-memory buffer.
pub fn digest_bytes(alg: Algorithm, data: &[u8]) -> Digest {
    let mut h = Hasher::new(alg);
    h.update(data);
    h.finish()
}

/// Digest of everything `reader` yields, read in 1 MiB pieces.
pub fn digest_reader(alg: Algorithm, reader: impl Read) -> std::io::Result<(Digest, u64)> {
    let mut h = Hasher::new(alg);
    let total = read_pieces(reader, &mut |piece| h.update(piece))?;
    Ok((h.finish(), total))
}

/// Feed everything `reader` yields to `each` in pieces of up to 1 MiB;
/// returns the bytes read.
pub fn read_pieces(mut reader: impl Read, each: &mut dyn FnMut(&[u8])) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        each(&buf[..n]);
        total += n as u64;
    }
}

/// Read until `buf` is full or the input ends; how much was read.
pub fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Threads for parallel work: `n`, or one per core for 0 (the meaning of 0
/// in every `threads`/`workers` setting).
///
/// ```
/// assert_eq!(berth::verify::parallelism(3), 3);
/// assert!(berth::verify::parallelism(0) >= 1);
/// ```
pub fn parallelism(n: usize) -> usize {
    match n {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            digest_bytes(Algorithm::Sha256, b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(digest_bytes(Algorithm::Sha512, b"abc")
            .hex()
            .starts_with("ddaf35a193617aba"));
        assert_eq!(
            digest_bytes(Algorithm::Blake3, b"").hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let (d, n) = digest_reader(Algorithm::Sha256, &b"abc"[..]).unwrap();
        assert_eq!((d, n), (digest_bytes(Algorithm::Sha256, b"abc"), 3));
    }
}
