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

/// A header map read from the host, kept in the host's buffer: each value is a slice of it and
/// each name a slice of one string of all the names, so reading the request's headers makes
/// three allocations (the buffer, the names, the index), not two per header. Names are
/// lowercase ASCII: the decoding lowercases them (nginx keeps the client's spelling; Envoy's
/// are lowercase already) and writes `?` for any byte that no HTTP field name may hold (RFC 9110
/// names are ASCII tokens), so such a name matches nothing, as its lossy text did before. The
/// names are text once, at decoding, not again at each lookup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    raw: Vec<u8>,
    names: String,
    /// Each pair's name (in `names`) and value (in `raw`) as (start, end) offsets.
    spans: Vec<[(usize, usize); 2]>,
}

impl HeaderMap {
    /// `None` for a map the host should never send (a bound out of range), never a panic.
    pub fn decode(raw: Vec<u8>) -> Option<Self> {
        let mut spans = spans(&raw)?;
        let length = spans.iter().map(|[(start, end), _]| end - start).sum();
        let mut names = String::with_capacity(length);
        for [name, _] in &mut spans {
            let bytes = raw.get(name.0..name.1)?;
            let start = names.len();
            names.extend(bytes.iter().map(|&b| lowercase_name_byte(b)));
            *name = (start, names.len());
        }
        Some(Self { raw, names, spans })
    }

    /// A map of these pairs, as the host would encode it (tests and the test double).
    pub fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Self {
        Self::decode(encode_pairs(pairs)).unwrap_or_default()
    }

    /// A map of these (name, value) pairs, whatever holds them.
    pub fn of<N: AsRef<str>, V: AsRef<[u8]>>(pairs: &[(N, V)]) -> Self {
        Self::from_pairs(
            pairs
                .iter()
                .map(|(n, v)| (n.as_ref().as_bytes(), v.as_ref())),
        )
    }

    /// Appends a pair, its name lowercased as decoding does.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        let start = self.names.len();
        self.names.extend(name.bytes().map(lowercase_name_byte));
        let value_start = self.raw.len();
        self.raw.extend_from_slice(value);
        self.spans
            .push([(start, self.names.len()), (value_start, self.raw.len())]);
    }

    /// Each (name, value), in the host's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        self.spans.iter().map(|[(ns, ne), (vs, ve)]| {
            (
                self.names.get(*ns..*ne).unwrap_or_default(),
                self.raw.get(*vs..*ve).unwrap_or_default(),
            )
        })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// A name's byte as the map keeps it: ASCII lowercased, anything else `?`.
fn lowercase_name_byte(b: u8) -> char {
    if b.is_ascii() {
        char::from(b.to_ascii_lowercase())
    } else {
        '?'
    }
}

/// The pairs as slices of `bytes`: no copy of any name or value.
pub fn pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    decode_with(bytes, |[(ns, ne), (vs, ve)]| {
        Some((bytes.get(ns..ne)?, bytes.get(vs..ve)?))
    })
}

/// Where each name and value lies in `bytes`.
fn spans(bytes: &[u8]) -> Option<Vec<[(usize, usize); 2]>> {
    decode_with(bytes, Some)
}

/// Walks the encoding, checking every bound, and keeps what `each` makes of each pair's
/// (start, end) offsets: one allocation, sized from the count.
fn decode_with<T>(bytes: &[u8], each: impl Fn([(usize, usize); 2]) -> Option<T>) -> Option<Vec<T>> {
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
        let key = (pos, pos.checked_add(key_len)?);
        bytes.get(key.0..key.1)?;
        pos = key.1.checked_add(1)?;
        let value = (pos, pos.checked_add(value_len)?);
        bytes.get(value.0..value.1)?;
        pos = value.1.checked_add(1)?;
        out.push(each([key, value])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
        let map = HeaderMap::decode(bytes.to_vec())?;
        Some(
            map.iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
        )
    }

    #[test]
    fn maps_round_trip_with_binary_values() {
        let sent: Vec<(&[u8], &[u8])> = vec![
            (b":path", b"/a"),
            (b"x-note", b"\xff\x00\xfe"),
            (b"empty", b""),
        ];
        let encoded = encode_pairs(sent.iter().copied());
        let got = decoded(&encoded).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], ("x-note".to_string(), b"\xff\x00\xfe".to_vec()));
        assert_eq!(got[2].1, b"");
        assert_eq!(decoded(&encode_pairs(std::iter::empty())), Some(vec![]));
        assert_eq!(pairs(&encoded), Some(sent.clone()));
    }

    #[test]
    fn names_are_lowercase_ascii_and_values_untouched() {
        let map = HeaderMap::from_pairs(
            [
                (&b"X-API-Key"[..], &b"AbC"[..]),
                (&b"x-caf\xc3\xa9"[..], &b"\xc3\xa9"[..]),
                (&b"bad\xff"[..], &b"v"[..]),
            ]
            .into_iter(),
        );
        let got: Vec<(&str, &[u8])> = map.iter().collect();
        assert_eq!(
            got,
            vec![
                ("x-api-key", &b"AbC"[..]),
                ("x-caf??", &b"\xc3\xa9"[..]),
                ("bad?", &b"v"[..]),
            ]
        );
        assert_eq!(map.len(), 3);
        assert!(HeaderMap::default().is_empty());
    }

    #[test]
    fn malformed_maps_are_none_not_a_panic() {
        let good = encode_pairs([(&b"a"[..], &b"b"[..])].into_iter());
        // (Only the final NUL may be missing: the value is complete without it.)
        for cut in 1..good.len() - 1 {
            assert_eq!(decoded(&good[..cut]), None, "cut at {cut}");
            assert_eq!(pairs(&good[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), None);
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decoded(&huge), None);
        assert_eq!(decoded(&[]), Some(vec![]));
    }
}
