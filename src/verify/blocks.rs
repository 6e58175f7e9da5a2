//! Per-block blake3 hashes, computed as a blob streams in and checked as it
//! streams out, so a corrupt byte on disk is caught before it reaches a
//! client (a full sha256 of a multi-GiB blob per read would cost far more).

/// Bytes per verified block.
pub const BLOCK: u64 = 1 << 20;
/// Bytes of one block hash.
pub const HASH_LEN: usize = 32;

/// Hashes blocks of a stream of bytes.
#[derive(Clone, Default)]
pub struct BlockHasher {
    current: blake3::Hasher,
    filled: u64,
    done: Vec<u8>,
}

impl BlockHasher {
    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = ((BLOCK - self.filled) as usize).min(data.len());
            self.current.update(&data[..take]);
            self.filled += take as u64;
            data = &data[take..];
            if self.filled == BLOCK {
                self.done
                    .extend_from_slice(self.current.finalize().as_bytes());
                self.current.reset();
                self.filled = 0;
            }
        }
    }

    /// The hashes of all blocks, the last (partial) one included.
    pub fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.done
                .extend_from_slice(self.current.finalize().as_bytes());
        }
        self.done
    }
}

/// Does `data` (block `index` of a blob) match its recorded hash?
pub fn block_ok(hashes: &[u8], index: u64, data: &[u8]) -> bool {
    hash_ok(hashes, index, &blake3::hash(data))
}

/// Whether block `index` hashed to `hash` is right by `hashes`.
pub fn hash_ok(hashes: &[u8], index: u64, hash: &blake3::Hash) -> bool {
    let at = index as usize * HASH_LEN;
    hashes
        .get(at..at + HASH_LEN)
        .is_some_and(|want| hash.as_bytes() == want)
}

/// How many block hashes a blob of `size` bytes has.
pub fn block_count(size: u64) -> u64 {
    size.div_ceil(BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_at_boundaries_whatever_the_pieces() {
        let data: Vec<u8> = (0..(2 * BLOCK + 5)).map(|i| (i % 251) as u8).collect();
        let mut a = BlockHasher::default();
        a.update(&data);
        let mut b = BlockHasher::default();
        for piece in data.chunks(7777) {
            b.update(piece);
        }
        let (a, b) = (a.finish(), b.finish());
        assert_eq!(a, b);
        assert_eq!(
            a.len() as u64,
            block_count(data.len() as u64) * HASH_LEN as u64
        );
        assert!(block_ok(&a, 2, &data[2 * BLOCK as usize..]));
        let mut bad = data[..BLOCK as usize].to_vec();
        bad[9] ^= 1;
        assert!(!block_ok(&a, 0, &bad));
        assert!(!block_ok(&a, 3, b"x"));
        assert!(BlockHasher::default().finish().is_empty());
    }
}
