//! RSASSA-PKCS1-v1_5 signature checks (RS256, RS384, RS512), and the RSA step of RSASSA-PSS's
//! (PS256, PS384, PS512: [`rsa_pss`](super::rsa_pss)), with each key's Montgomery constants
//! computed once, when the key is configured.
//!
//! ring recomputes them on every check (about a sixth of its time) and, compiled to wasm, its
//! generic multiplication is slow: in V8 this checks a 2048-bit RS256 signature in well under
//! half of ring's time (README, Performance). Only public values take part (the key, the token),
//! so nothing here has to run in constant time. The check is RFC 8017's (8.2.2): the signature,
//! exactly as long as the modulus and below it as an integer, raised to the public exponent,
//! must equal the one EMSA-PKCS1-v1_5 encoding of the message's digest (9.2), compared byte for
//! byte, so no padding is ever parsed. Keys ring would refuse are refused here too (moduli of
//! 2048 to 8192 bits, odd; odd exponents from 3 to 2^33 - 1).

use sha2::Digest;

/// The digest a key's signatures cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    /// The DER `DigestInfo` header before the digest (RFC 8017, 9.2, note 1).
    fn prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    pub(super) fn digest(self, message: &[u8]) -> Vec<u8> {
        self.digest_parts(&[message])
    }

    /// The digest of the parts one after another.
    pub(super) fn digest_parts(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for part in parts {
                d.update(part);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<sha2::Sha256>(parts),
            Hash::Sha384 => run::<sha2::Sha384>(parts),
            Hash::Sha512 => run::<sha2::Sha512>(parts),
        }
    }

    /// The digest's length in bytes.
    pub(super) fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

const MIN_BITS: usize = 2048;
const MAX_BITS: usize = 8192;
const MAX_LIMBS: usize = MAX_BITS / 32;

/// An RSA public key ready for repeated checks.
pub struct PublicKey {
    /// The modulus, least significant 32-bit limb first.
    n: Vec<u32>,
    /// The modulus' length in bytes: a signature has exactly this many.
    len: usize,
    /// The modulus' length in bits.
    bits: usize,
    /// -n^-1 mod 2^32, for Montgomery reduction.
    n0inv: u32,
    /// R^2 mod n, with R = 2^(32 * limbs): takes a number into Montgomery form.
    rr: Vec<u32>,
    e: u64,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rsa_pkcs1::PublicKey({} bits)", self.len * 8)
    }
}

pub(super) fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// Big-endian bytes as `limbs` little-endian 32-bit limbs (the bytes must fit).
fn to_limbs(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (i, byte) in bytes.iter().rev().enumerate() {
        if let Some(limb) = out.get_mut(i / 4) {
            *limb |= u32::from(*byte) << (8 * (i % 4));
        }
    }
    out
}

/// `a >= b`, both of the same length.
fn at_least(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b` modulo 2^(32 * len).
fn subtract(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(*y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
}

impl PublicKey {
    /// The key from its big-endian modulus and exponent; `None` for a key ring would refuse.
    pub fn new(modulus: &[u8], exponent: &[u8]) -> Option<PublicKey> {
        let modulus = without_leading_zeros(modulus);
        let bits = modulus.len() * 8 - modulus.first()?.leading_zeros() as usize;
        let odd = modulus.last().is_some_and(|b| b & 1 == 1);
        if !(MIN_BITS..=MAX_BITS).contains(&bits) || !odd {
            return None;
        }
        let exponent = without_leading_zeros(exponent);
        if exponent.len() > 5 {
            return None;
        }
        let e = exponent.iter().fold(0u64, |e, b| (e << 8) | u64::from(*b));
        if !(3..1 << 33).contains(&e) || e & 1 == 0 {
            return None;
        }
        let limbs = modulus.len().div_ceil(4);
        let n = to_limbs(modulus, limbs);
        // Newton's iteration: each step doubles the bits of n^-1 mod 2^32 that are right.
        let mut inverse: u32 = 1;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u32.wrapping_sub(n[0].wrapping_mul(inverse)));
        }
        // R^2 mod n by doubling 1 (64 * limbs times): slow, but once per key.
        let mut rr = vec![0u32; limbs];
        rr[0] = 1;
        for _ in 0..64 * limbs {
            let mut carry = 0;
            for limb in rr.iter_mut() {
                let v = *limb;
                *limb = (v << 1) | carry;
                carry = v >> 31;
            }
            if carry == 1 || at_least(&rr, &n) {
                subtract(&mut rr, &n);
            }
        }
        Some(PublicKey {
            n,
            len: modulus.len(),
            bits,
            n0inv: inverse.wrapping_neg(),
            rr,
            e,
        })
    }

    /// Whether `signature` is this key's RSASSA-PKCS1-v1_5 signature of `message`.
    pub fn verify(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.open(signature) else {
            return false;
        };
        encoded(hash, message, self.len).is_some_and(|expected| em == expected)
    }

    /// Whether `signature` is this key's RSASSA-PSS signature of `message` (RFC 8017, 8.1.2),
    /// with MGF1 and a salt as long as the digest (RFC 7518, 3.5).
    pub fn verify_pss(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Some(m) = self.open(signature) else {
            return false;
        };
        // emBits = modBits - 1; when that is a whole number of bytes, EM is one byte shorter
        // than the modulus and the byte above it must be zero.
        let em_bits = self.bits - 1;
        let em = if em_bits.is_multiple_of(8) {
            match m.split_first() {
                Some((0, rest)) => rest,
                _ => return false,
            }
        } else {
            &m[..]
        };
        super::rsa_pss::consistent(hash, message, em, em_bits)
    }

    /// RSAVP1: the signature, exactly as long as the modulus and below it, raised to the
    /// public exponent; `None` if it is not such a signature.
    fn open(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.len {
            return None;
        }
        let s = to_limbs(signature, self.n.len());
        if at_least(&s, &self.n) {
            return None;
        }
        Some(self.power(&s))
    }

    /// `s^e mod n` as big-endian bytes, as long as the modulus.
    fn power(&self, s: &[u32]) -> Vec<u8> {
        let limbs = self.n.len();
        let mut base = vec![0u32; limbs];
        self.multiply(s, &self.rr, &mut base);
        let mut acc = base.clone();
        let mut scratch = vec![0u32; limbs];
        let bits = 64 - self.e.leading_zeros();
        for bit in (0..bits.saturating_sub(1)).rev() {
            self.square(&acc, &mut scratch);
            std::mem::swap(&mut acc, &mut scratch);
            if (self.e >> bit) & 1 == 1 {
                self.multiply(&acc, &base, &mut scratch);
                std::mem::swap(&mut acc, &mut scratch);
            }
        }
        // Out of Montgomery form: times 1.
        let mut one = vec![0u32; limbs];
        one[0] = 1;
        self.multiply(&acc, &one, &mut scratch);
        let mut bytes = Vec::with_capacity(limbs * 4);
        for limb in scratch.iter().rev() {
            bytes.extend_from_slice(&limb.to_be_bytes());
        }
        bytes.split_off(limbs * 4 - self.len)
    }

    /// `out = a * b / R mod n` (Montgomery multiplication, CIOS), for `a` and `b` below `n`.
    fn multiply(&self, a: &[u32], b: &[u32], out: &mut [u32]) {
        let n = &self.n[..];
        let k = n.len();
        let mut buffer = [0u32; MAX_LIMBS + 1];
        let Some(t) = buffer.get_mut(..=k) else {
            return;
        };
        let n0 = u64::from(n[0]);
        for &bi in &b[..k] {
            let bi = u64::from(bi);
            // t += a * bi
            let mut carry = 0u64;
            for (tj, &aj) in t.iter_mut().zip(&a[..k]) {
                let s = u64::from(*tj) + u64::from(aj) * bi + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[k]) + carry;
            t[k] = s as u32;
            let top = s >> 32;
            // t = (t + m * n) / 2^32, with m chosen so the low limb vanishes.
            let m = u64::from(t[0].wrapping_mul(self.n0inv));
            let mut carry = (u64::from(t[0]) + m * n0) >> 32;
            for j in 1..k {
                let s = u64::from(t[j]) + m * u64::from(n[j]) + carry;
                t[j - 1] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[k]) + carry;
            t[k - 1] = s as u32;
            t[k] = (top + (s >> 32)) as u32;
        }
        out.copy_from_slice(&t[..k]);
        // t < 2n: one subtraction at most.
        if t[k] != 0 || at_least(out, n) {
            subtract(out, n);
        }
    }
}

impl PublicKey {
    /// `out = a * a / R mod n`, for `a` below `n`: the square's cross products are made once
    /// and doubled (a quarter fewer multiplications than [`Self::multiply`]; squarings are
    /// most of an exponentiation), then reduced.
    fn square(&self, a: &[u32], out: &mut [u32]) {
        let n = &self.n[..];
        let k = n.len();
        let mut buffer = [0u32; 2 * MAX_LIMBS];
        let (Some(t), Some(a)) = (buffer.get_mut(..2 * k), a.get(..k)) else {
            return;
        };
        // The cross products a[i] * a[j], i < j.
        for (i, &ai) in a.iter().enumerate() {
            let ai = u64::from(ai);
            let mut carry = 0u64;
            for (tij, &aj) in t[2 * i + 1..].iter_mut().zip(&a[i + 1..]) {
                let s = u64::from(*tij) + ai * u64::from(aj) + carry;
                *tij = s as u32;
                carry = s >> 32;
            }
            t[i + k] = carry as u32;
        }
        // Doubled (a^2 < 2^(64k), so nothing leaves the top), plus the squares a[i]^2.
        let mut shifted = 0;
        for limb in t.iter_mut() {
            let v = *limb;
            *limb = (v << 1) | shifted;
            shifted = v >> 31;
        }
        let mut carry = 0u64;
        for (pair, &ai) in t.chunks_exact_mut(2).zip(a) {
            let square = u64::from(ai) * u64::from(ai);
            let low = u64::from(pair[0]) + (square & 0xffff_ffff) + carry;
            pair[0] = low as u32;
            let high = u64::from(pair[1]) + (square >> 32) + (low >> 32);
            pair[1] = high as u32;
            carry = high >> 32;
        }
        // Montgomery reduction: k times, add the multiple of n that clears the lowest limb.
        let mut extra = 0u64;
        for i in 0..k {
            let m = u64::from(t[i].wrapping_mul(self.n0inv));
            let mut carry = 0u64;
            for (tij, &nj) in t[i..i + k].iter_mut().zip(n) {
                let s = u64::from(*tij) + m * u64::from(nj) + carry;
                *tij = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[i + k]) + carry + extra;
            t[i + k] = s as u32;
            extra = s >> 32;
        }
        out.copy_from_slice(&t[k..]);
        // Below 2n: one subtraction at most.
        if extra != 0 || at_least(out, n) {
            subtract(out, n);
        }
    }
}

/// EMSA-PKCS1-v1_5: `00 01 FF..FF 00 DigestInfo digest`, `len` bytes; `None` if too short.
fn encoded(hash: Hash, message: &[u8], len: usize) -> Option<Vec<u8>> {
    let prefix = hash.prefix();
    let digest = hash.digest(message);
    let padding = len.checked_sub(prefix.len() + digest.len() + 3)?;
    if padding < 8 {
        return None;
    }
    let mut em = Vec::with_capacity(len);
    em.extend_from_slice(&[0x00, 0x01]);
    em.resize(2 + padding, 0xff);
    em.push(0x00);
    em.extend_from_slice(prefix);
    em.extend_from_slice(&digest);
    Some(em)
}

#[cfg(test)]
#[path = "rsa_pkcs1_tests.rs"]
mod tests;
