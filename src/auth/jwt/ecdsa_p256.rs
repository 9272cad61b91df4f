//! ECDSA P-256 signature checks (ES256) with each key's multiples precomputed once, so a check
//! is about 86 point additions and no doublings.
//!
//! ring has no wasm assembly for P-256 and its generic C is slow once compiled to wasm (about
//! 650 us per check in V8). A check here is u1·G + u2·Q computed from two tables of multiples,
//! one for the generator G and one per key Q, with RustCrypto's `p256` doing the field and
//! point arithmetic (its complete addition formulas, so no input has an exceptional case):
//! about 155 us in V8 (README, Performance). Each scalar is split into 43 signed 6-bit digits
//! (-32..=32), and each digit adds one table entry (its negation for a negative digit) to the
//! sum. A table holds 43 x 32 affine points of 72 bytes (97 KiB). A key's table is built on its
//! first check (about 4 ms in V8), so a remote set of many keys costs only for the keys in use;
//! the generator's, which every key shares, when the worker reads its first P-256 key. Only
//! public values take part (the key, the token), so nothing here has to run in constant time.
//!
//! The check is SEC 1's (4.1.4) for a 256-bit digest: r and s in [1, n - 1], e the SHA-256
//! digest reduced mod n, w = s^-1, R = (e·w)·G + (r·w)·Q not the point at infinity, and R's x
//! coordinate reduced mod n equal to r.

use p256::elliptic_curve::group::ff::PrimeField;
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::{BatchNormalize, Field};
use p256::{AffinePoint, FieldBytes, ProjectivePoint, Scalar};
use sha2::Digest;
use std::cell::OnceCell;
use std::sync::OnceLock;

/// Bits per signed digit.
const WINDOW: usize = 6;
/// Digits per scalar: 258 bits hold a 256-bit scalar's signed digits and their last carry.
const DIGITS: usize = 43;
/// Multiples per digit position: 1..=32 (a negative digit uses an entry's negation).
const MULTIPLES: usize = 1 << (WINDOW - 1);

/// For each digit position i, the points m·2^(6i)·P for m in 1..=32, affine so each addition
/// is the cheaper mixed one.
struct Table(Vec<AffinePoint>);

impl Table {
    fn new(point: ProjectivePoint) -> Table {
        let mut multiples = Vec::with_capacity(DIGITS * MULTIPLES);
        let mut base = point;
        for _ in 0..DIGITS {
            let mut multiple = base;
            for _ in 0..MULTIPLES {
                multiples.push(multiple);
                multiple += base;
            }
            for _ in 0..WINDOW {
                base = base.double();
            }
        }
        Table(<ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize(&multiples))
    }

    /// Adds k·P to `sum`; `None` only if a digit fell outside the table (it cannot).
    fn add_multiple(&self, sum: &mut ProjectivePoint, k: &Scalar) -> Option<()> {
        for (position, digit) in signed_digits(k).into_iter().enumerate() {
            if digit == 0 {
                continue;
            }
            let index = position * MULTIPLES + usize::from(digit.unsigned_abs()) - 1;
            let point = self.0.get(index)?;
            if digit < 0 {
                *sum += -*point;
            } else {
                *sum += point;
            }
        }
        Some(())
    }
}

/// k as 43 digits d_i in -32..=32 with k = sum of d_i·2^(6i), least significant first.
fn signed_digits(k: &Scalar) -> [i8; DIGITS] {
    let bytes = k.to_repr();
    let mut limbs = [0u64; 5];
    for (i, chunk) in bytes.rchunks(8).enumerate() {
        if let Some(limb) = limbs.get_mut(i) {
            *limb = chunk.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b));
        }
    }
    let mut digits = [0i8; DIGITS];
    let mut carry = 0u64;
    for (position, digit) in digits.iter_mut().enumerate() {
        let bit = position * WINDOW;
        let (limb, shift) = (bit / 64, bit % 64);
        let low = limbs.get(limb).map_or(0, |l| l >> shift);
        // A window that straddles two limbs takes its high bits from the next one.
        let high = match shift {
            0 => 0,
            s => limbs.get(limb + 1).map_or(0, |l| l << (64 - s)),
        };
        let value = ((low | high) & ((1 << WINDOW) - 1)) + carry;
        // value is at most 64; above 32 it becomes value - 64 and carries one.
        carry = u64::from(value > MULTIPLES as u64);
        *digit = (value as i8) - ((carry as i8) << WINDOW);
    }
    digits
}

/// The generator's table, built once per worker.
fn generator() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::new(ProjectivePoint::GENERATOR))
}

/// A P-256 public key ready for repeated ES256 checks.
pub struct PublicKey {
    point: ProjectivePoint,
    table: OnceCell<Table>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.table.get().is_some();
        write!(f, "ecdsa_p256::PublicKey(table built: {built})")
    }
}

impl PublicKey {
    /// A key from its SEC 1 encoding; `None` unless it is a point on the curve other than the
    /// point at infinity. The worker's first key also builds the generator's table, so that
    /// cost falls on configuration or a key set's refresh rather than on a request.
    pub fn new(sec1: &[u8]) -> Option<PublicKey> {
        let key = p256::PublicKey::from_sec1_bytes(sec1).ok()?;
        generator();
        Some(PublicKey {
            point: key.to_projective(),
            table: OnceCell::new(),
        })
    }

    /// Whether `signature` (r and s, 32 bytes each, as JWS writes them) is this key's ECDSA
    /// signature of SHA-256(`message`).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.check(message, signature).unwrap_or(false)
    }

    fn check(&self, message: &[u8], signature: &[u8]) -> Option<bool> {
        if signature.len() != 64 {
            return None;
        }
        let (r, s) = signature.split_at(32);
        let r = scalar(r)?;
        let s = scalar(s)?;
        let w = Option::<Scalar>::from(s.invert_vartime())?;
        let digest = sha2::Sha256::digest(message);
        let e = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::try_from(&digest[..]).ok()?);
        let table = self.table.get_or_init(|| Table::new(self.point));
        let mut sum = ProjectivePoint::IDENTITY;
        generator().add_multiple(&mut sum, &(e * w))?;
        table.add_multiple(&mut sum, &(r * w))?;
        let sum = sum.to_affine();
        if bool::from(sum.is_identity()) {
            return None;
        }
        Some(<Scalar as Reduce<FieldBytes>>::reduce(&sum.x()) == r)
    }
}

/// A signature half as a scalar in [1, n - 1], else `None`.
fn scalar(bytes: &[u8]) -> Option<Scalar> {
    let k = Option::<Scalar>::from(Scalar::from_repr(FieldBytes::try_from(bytes).ok()?))?;
    (!bool::from(k.is_zero())).then_some(k)
}

#[cfg(test)]
#[path = "ecdsa_p256_tests.rs"]
mod tests;
