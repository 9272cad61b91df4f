//! Ed25519 signature checks (EdDSA JWTs) with each key's multiples precomputed once.
//!
//! RFC 8032 5.1.7's check, cofactorless as ring's and BoringSSL's: S must be below the group
//! order L, k = SHA-512(R || A || M) reduced mod L, and [S]B - [k]A must encode to exactly the
//! signature's R bytes. ring's C, compiled to wasm, takes about 85 us per check in V8; here
//! dalek's `curve25519-dalek` does the arithmetic, and both products come from radix-16 tables
//! of multiples (B's, built into the crate, and one per key of -A, 30 KiB, built on the key's
//! first check): 64 mixed additions and 4 doublings each, instead of the 253 doublings of a
//! double-scalar multiplication (about 52 us per check in V8; README, Performance). Only
//! public values take part, yet the crate's table lookups run in constant time anyway.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsBasepointTable};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable;
use sha2::{Digest, Sha512};
use std::cell::OnceCell;

/// Bytes of an encoded point, and of a scalar.
const LEN: usize = 32;

/// An Ed25519 public key A, and the table of -A's multiples once its first check has built it.
pub struct PublicKey {
    encoded: [u8; LEN],
    minus_a: curve25519_dalek::EdwardsPoint,
    table: OnceCell<Box<EdwardsBasepointTable>>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.table.get().is_some();
        write!(f, "ed25519::PublicKey(table built: {built})")
    }
}

impl PublicKey {
    /// A key from its 32-byte encoding; `None` unless it decodes to a point on the curve
    /// (as ring decodes it: the y coordinate is not required to be below p).
    pub fn new(encoded: &[u8]) -> Option<PublicKey> {
        let encoded: [u8; LEN] = encoded.try_into().ok()?;
        let a = CompressedEdwardsY(encoded).decompress()?;
        Some(PublicKey {
            encoded,
            minus_a: -a,
            table: OnceCell::new(),
        })
    }

    /// Whether `signature` (R || S, 64 bytes) is this key's Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.check(message, signature).unwrap_or(false)
    }

    fn check(&self, message: &[u8], signature: &[u8]) -> Option<bool> {
        if signature.len() != 2 * LEN {
            return None;
        }
        let (r, s) = signature.split_at_checked(LEN)?;
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s.try_into().ok()?))?;
        let digest = Sha512::new()
            .chain_update(r)
            .chain_update(self.encoded)
            .chain_update(message)
            .finalize();
        let k = Scalar::from_bytes_mod_order_wide(&digest.into());
        let table = self
            .table
            .get_or_init(|| Box::new(EdwardsBasepointTable::create(&self.minus_a)));
        let sum = ED25519_BASEPOINT_TABLE.mul_base(&s) + table.mul_base(&k);
        Some(sum.compress().as_bytes()[..] == *r)
    }
}

#[cfg(test)]
#[path = "ed25519_tests.rs"]
mod tests;
