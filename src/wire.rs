//! The proxy-wasm ABI's encoding of header maps: a count, then (name length, value length)
//! pairs, then each name and value followed by a NUL byte; lengths are little-endian u32.
//! Decoding checks every bound, so a malformed map is `None`, never a panic.

pub fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Vec<u8> {
    let (count, bytes) = pairs
        .clone()
        .fold((0, 0), |(n, b), (k, v)| (n + 1, b + k.len() + v.len() + 2));
    // Sized up front: one allocation.
    let mut out = Vec::with_capacity(4 + 8 * count + bytes);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (k, v) in pairs.clone() {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// Names as text (lossy: proxies validate header names), values as bytes.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    Some(
        pairs(bytes)?
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.to_vec()))
            .collect(),
    )
}

/// The pairs as slices of `bytes`: no copy of any name or value.
pub fn pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(b) as usize)
    };
    let count = u32_at(0)?;
    let mut pos = count.checked_mul(8)?.checked_add(4)?;
    let mut out = Vec::with_capacity(count.min(1024));
    for n in 0..count {
        let key_len = u32_at(4 + n * 8)?;
        let value_len = u32_at(8 + n * 8)?;
        let key = bytes.get(pos..pos.checked_add(key_len)?)?;
        pos = pos.checked_add(key_len)?.checked_add(1)?;
        let value = bytes.get(pos..pos.checked_add(value_len)?)?;
        pos = pos.checked_add(value_len)?.checked_add(1)?;
        out.push((key, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip_with_binary_values() {
        let pairs: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/a"),
            (b"x-note", b"\xff\x00\xfe"),
            (b"empty", b""),
        ];
        let encoded = encode_pairs(pairs.iter().copied());
        let decoded = decode_pairs(&encoded).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[1], ("x-note".to_string(), b"\xff\x00\xfe".to_vec()));
        assert_eq!(decoded[2].1, b"");
        assert_eq!(
            decode_pairs(&encode_pairs(std::iter::empty())),
            Some(vec![])
        );
    }

    #[test]
    fn malformed_maps_are_none_not_a_panic() {
        let good = encode_pairs([(&b"a"[..], &b"b"[..])].into_iter());
        // (Only the final NUL may be missing: the value is complete without it.)
        for cut in 1..good.len() - 1 {
            assert_eq!(decode_pairs(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_pairs(&[0xff, 0xff, 0xff, 0xff]), None);
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_pairs(&huge), None);
        assert_eq!(decode_pairs(&[]), Some(vec![]));
    }
}
