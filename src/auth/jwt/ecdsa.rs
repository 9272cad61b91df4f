//! ECDSA signature checks for ES256 (P-256) and ES384 (P-384) with each key's multiples
//! precomputed once, so a check is point additions only, no doublings.
//!
//! ring has no wasm assembly for either curve, and its generic C is slow once compiled to wasm
//! (in V8: about 650 us per ES256 check, 5 ms per ES384 check). A check here is u1·G + u2·Q
//! computed from two tables of multiples, one for the generator G and one per key Q, with
//! RustCrypto's `p256` and `p384` doing the field and point arithmetic (their complete addition
//! formulas, so no input has an exceptional case): about 160 us per ES256 check in V8 (README,
//! Performance). Each scalar is split into signed 6-bit digits (-32..=32), and each digit adds
//! one table entry (its negation for a negative digit) to the sum. A table holds 32 affine
//! points per digit: 43 x 32 points of 72 bytes (97 KiB) for P-256, 65 x 32 of 104 bytes
//! (211 KiB) for P-384. A key's table is built on its first check, so a remote set of many keys
//! costs only for the keys in use; the generator's, which every key shares, when the worker
//! reads its first key of that curve. Only public values take part (the key, the token), so
//! nothing here has to run in constant time.
//!
//! The check is SEC 1's (4.1.4) with a digest as long as the order (SHA-256 for P-256,
//! SHA-384 for P-384): r and s in [1, n - 1], e the digest reduced mod n, w = s^-1,
//! R = (e·w)·G + (r·w)·Q not the point at infinity, and R's x coordinate reduced mod n equal
//! to r.

use p256::elliptic_curve::group::ff::PrimeField;
use p256::elliptic_curve::group::Group;
use p256::elliptic_curve::ops::{Invert, Reduce};
use p256::elliptic_curve::point::AffineCoordinates;
use p256::elliptic_curve::{BatchNormalize, Field, FieldBytes, Scalar};
use primeorder::{AffinePoint, PrimeCurveParams, ProjectivePoint};
use sha2::Digest;
use std::cell::OnceCell;
use std::sync::OnceLock;

pub use p256::NistP256;
pub use p384::NistP384;

/// Bits per signed digit.
const WINDOW: usize = 6;
/// Multiples per digit position: 1..=32 (a negative digit uses an entry's negation).
const MULTIPLES: usize = 1 << (WINDOW - 1);
/// Digits of the largest scalar (P-384's): 390 bits hold a 384-bit scalar's signed digits
/// and their last carry.
const MAX_DIGITS: usize = 65;

/// A curve this module checks signatures on: its digest, and its generator's table.
pub trait EcdsaCurve: PrimeCurveParams {
    /// The digest of a message, as long as the curve's order.
    fn digest(message: &[u8]) -> Vec<u8>;
    /// The generator's table, built once per worker.
    fn generator() -> &'static Table<Self>;
}

impl EcdsaCurve for NistP256 {
    fn digest(message: &[u8]) -> Vec<u8> {
        sha2::Sha256::digest(message).to_vec()
    }

    fn generator() -> &'static Table<Self> {
        static TABLE: OnceLock<Table<NistP256>> = OnceLock::new();
        TABLE.get_or_init(|| Table::new(ProjectivePoint::GENERATOR))
    }
}

impl EcdsaCurve for NistP384 {
    fn digest(message: &[u8]) -> Vec<u8> {
        sha2::Sha384::digest(message).to_vec()
    }

    fn generator() -> &'static Table<Self> {
        static TABLE: OnceLock<Table<NistP384>> = OnceLock::new();
        TABLE.get_or_init(|| Table::new(ProjectivePoint::GENERATOR))
    }
}

/// For each digit position i, the points m·2^(6i)·P for m in 1..=32, affine so each addition
/// is the cheaper mixed one.
pub struct Table<C: PrimeCurveParams>(Vec<AffinePoint<C>>);

/// How many signed digits a scalar of this curve has.
fn digits_of<C: PrimeCurveParams>() -> usize {
    let bits = 8 * FieldBytes::<C>::default().len();
    bits / WINDOW + 1
}

impl<C: PrimeCurveParams> Table<C> {
    fn new(point: ProjectivePoint<C>) -> Table<C> {
        let digits = digits_of::<C>();
        let mut multiples = Vec::with_capacity(digits * MULTIPLES);
        let mut base = point;
        for _ in 0..digits {
            let mut multiple = base;
            for _ in 0..MULTIPLES {
                multiples.push(multiple);
                multiple += base;
            }
            for _ in 0..WINDOW {
                base = base.double();
            }
        }
        Table(<ProjectivePoint<C> as BatchNormalize<
            [ProjectivePoint<C>],
        >>::batch_normalize(&multiples))
    }

    /// Adds k·P to `sum`; `None` only if a digit fell outside the table (it cannot).
    fn add_multiple(&self, sum: &mut ProjectivePoint<C>, k: &Scalar<C>) -> Option<()> {
        let (digits, count) = signed_digits::<C>(k);
        for (position, digit) in digits.iter().take(count).enumerate() {
            if *digit == 0 {
                continue;
            }
            let index = position * MULTIPLES + usize::from(digit.unsigned_abs()) - 1;
            let point = self.0.get(index)?;
            if *digit < 0 {
                *sum += -*point;
            } else {
                *sum += point;
            }
        }
        Some(())
    }
}

/// k as signed digits d_i in -32..=32 with k = sum of d_i·2^(6i), least significant first, and
/// how many there are.
fn signed_digits<C: PrimeCurveParams>(k: &Scalar<C>) -> ([i8; MAX_DIGITS], usize) {
    let bytes = k.to_repr();
    let mut limbs = [0u64; MAX_DIGITS * WINDOW / 64 + 1];
    for (i, chunk) in bytes.rchunks(8).enumerate() {
        if let Some(limb) = limbs.get_mut(i) {
            *limb = chunk.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b));
        }
    }
    let count = digits_of::<C>().min(MAX_DIGITS);
    let mut digits = [0i8; MAX_DIGITS];
    let mut carry = 0u64;
    for (position, digit) in digits.iter_mut().take(count).enumerate() {
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
    (digits, count)
}

/// A public key ready for repeated checks on curve `C`.
pub struct PublicKey<C: EcdsaCurve> {
    point: ProjectivePoint<C>,
    table: OnceCell<Table<C>>,
}

impl<C: EcdsaCurve> std::fmt::Debug for PublicKey<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.table.get().is_some();
        write!(f, "ecdsa::PublicKey(table built: {built})")
    }
}

impl<C: EcdsaCurve> PublicKey<C> {
    /// A key from its SEC 1 encoding; `None` unless it is a point on the curve other than the
    /// point at infinity. The worker's first key of a curve also builds the generator's table,
    /// so that cost falls on configuration or a key set's refresh rather than on a request.
    pub fn new(sec1: &[u8]) -> Option<PublicKey<C>> {
        let key = p256::elliptic_curve::PublicKey::<C>::from_sec1_bytes(sec1).ok()?;
        C::generator();
        Some(PublicKey {
            point: key.to_projective(),
            table: OnceCell::new(),
        })
    }

    /// Whether `signature` (r and s, each as long as the order, as JWS writes them) is this
    /// key's ECDSA signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.check(message, signature).unwrap_or(false)
    }

    fn check(&self, message: &[u8], signature: &[u8]) -> Option<bool> {
        let half = FieldBytes::<C>::default().len();
        if signature.len() != 2 * half {
            return None;
        }
        let (r, s) = signature.split_at_checked(half)?;
        let r = scalar::<C>(r)?;
        let s = scalar::<C>(s)?;
        let w = Option::<Scalar<C>>::from(s.invert_vartime())?;
        let digest = C::digest(message);
        let e = <Scalar<C> as Reduce<FieldBytes<C>>>::reduce(
            &FieldBytes::<C>::try_from(&digest[..]).ok()?,
        );
        let table = self.table.get_or_init(|| Table::new(self.point));
        let mut sum = ProjectivePoint::<C>::IDENTITY;
        C::generator().add_multiple(&mut sum, &(e * w))?;
        table.add_multiple(&mut sum, &(r * w))?;
        let sum = sum.to_affine();
        if bool::from(sum.is_identity()) {
            return None;
        }
        Some(<Scalar<C> as Reduce<FieldBytes<C>>>::reduce(&sum.x()) == r)
    }
}

/// A signature half as a scalar in [1, n - 1], else `None`.
fn scalar<C: PrimeCurveParams>(bytes: &[u8]) -> Option<Scalar<C>> {
    let repr = FieldBytes::<C>::try_from(bytes).ok()?;
    let k = Option::<Scalar<C>>::from(Scalar::<C>::from_repr(repr))?;
    (!bool::from(k.is_zero())).then_some(k)
}

#[cfg(test)]
#[path = "ecdsa_tests.rs"]
mod tests;
