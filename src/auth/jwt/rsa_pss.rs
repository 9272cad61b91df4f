//! EMSA-PSS decoding (RFC 8017, 9.1.2) for PS256/384/512: the salt as long as the digest, as
//! RFC 7518 (3.5) requires of JWS, and MGF1 with the same digest. The RSA step before it
//! (the signature raised to the public exponent) is [`rsa_pkcs1`](super::rsa_pkcs1)'s, with
//! the key's constants computed once; ring, which checked PS* before, recomputes them each
//! time and is slow in wasm (README, Performance).

use super::rsa_pkcs1::Hash;

/// MGF1 (RFC 8017, B.2.1): `len` bytes of Hash(seed || counter) for counters 0, 1, ...
fn mgf1(hash: Hash, seed: &[u8], len: usize) -> Vec<u8> {
    let mut mask = Vec::with_capacity(len + hash.len());
    let mut counter: u32 = 0;
    while mask.len() < len {
        mask.extend_from_slice(&hash.digest_parts(&[seed, &counter.to_be_bytes()]));
        counter = counter.wrapping_add(1);
    }
    mask.truncate(len);
    mask
}

/// Whether `em` (emLen = ceil(em_bits / 8) bytes) is a consistent EMSA-PSS encoding of
/// `message`, with a salt as long as the digest.
pub(super) fn consistent(hash: Hash, message: &[u8], em: &[u8], em_bits: usize) -> bool {
    let h_len = hash.len();
    let s_len = h_len;
    let em_len = em.len();
    // Step 3, and emLen must be exactly what em_bits asks for.
    if em_len != em_bits.div_ceil(8) || em_len < h_len + s_len + 2 {
        return false;
    }
    // Step 4: the trailer.
    let Some((&0xbc, rest)) = em.split_last() else {
        return false;
    };
    // Step 5: maskedDB, then H.
    let Some((masked_db, h)) = rest.split_at_checked(em_len - h_len - 1) else {
        return false;
    };
    // Step 6: the bits above em_bits must be zero.
    let unused = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(unused as u32).unwrap_or(0);
    let Some(&first) = masked_db.first() else {
        return false;
    };
    if first & !top_mask != 0 {
        return false;
    }
    // Steps 7 to 9: DB = maskedDB xor MGF1(H), the unused bits cleared.
    let mut db = mgf1(hash, h, masked_db.len());
    for (d, m) in db.iter_mut().zip(masked_db) {
        *d ^= m;
    }
    if let Some(d) = db.first_mut() {
        *d &= top_mask;
    }
    // Step 10: zeros, then 0x01, then the salt.
    let zeros = em_len - h_len - s_len - 2;
    let Some((padding, salt_and_one)) = db.split_at_checked(zeros) else {
        return false;
    };
    if padding.iter().any(|b| *b != 0) {
        return false;
    }
    let Some((&0x01, salt)) = salt_and_one.split_first() else {
        return false;
    };
    // Steps 11 to 14: H = Hash(00 x 8 || Hash(M) || salt).
    let m_hash = hash.digest(message);
    hash.digest_parts(&[&[0u8; 8], &m_hash, salt]) == h
}

#[cfg(test)]
#[path = "rsa_pss_tests.rs"]
mod tests;
