//! Message headers as the node passes them to plugins (a message's `headers` in a batch,
//! see `batch.rs`): the protocol's `headers` encoding (docs/protocol.md: u16 count, then per
//! header a u16 name length, the name, a u16 value length, the value; big-endian lengths,
//! UTF-8 text), so the broker can hand over the bytes it already has. One source for both
//! sides: the guest SDK compiles this file as `tern_sdk::headers`, so node and plugins cannot
//! disagree on the bytes.

/// The encoding of no headers.
pub const EMPTY: [u8; 2] = [0, 0];

/// Appends a header to `encoded` (an empty vector counts as no headers).
///
/// # Panics
/// If the name or value is longer than 65535 bytes or there are 65535 headers already
/// (the protocol's limits are 1024 bytes and 256 headers).
pub fn push(encoded: &mut Vec<u8>, name: &str, value: &str) {
    if encoded.len() < 2 {
        encoded.clear();
        encoded.extend_from_slice(&EMPTY);
    }
    let count = u16::from_be_bytes([encoded[0], encoded[1]]);
    let count = count.checked_add(1).expect("at most 65535 headers");
    encoded[..2].copy_from_slice(&count.to_be_bytes());
    for part in [name, value] {
        let len = u16::try_from(part.len()).expect("header text of at most 65535 bytes");
        encoded.extend_from_slice(&len.to_be_bytes());
        encoded.extend_from_slice(part.as_bytes());
    }
}

/// Encodes `headers`.
pub fn encode<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = EMPTY.to_vec();
    for (name, value) in headers {
        push(&mut out, name, value);
    }
    out
}

/// Iterates over encoded headers.
pub fn iter(encoded: &[u8]) -> Iter<'_> {
    Iter { raw: raw(encoded) }
}

/// The value of the first header named `name`. Compares bytes, and checks only the value
/// found is UTF-8: a lookup costs no validation of the headers it passes over.
pub fn get<'a>(encoded: &'a [u8], name: &str) -> Option<&'a str> {
    raw(encoded)
        .find(|(n, _)| eq_bytes(n, name.as_bytes()))
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
}

/// Whether the first header named `name` has the value `value`. Checks no UTF-8: a value
/// equal to `value` is UTF-8 since `value` is.
pub fn has(encoded: &[u8], name: &str, value: &str) -> bool {
    raw(encoded)
        .find(|(n, _)| eq_bytes(n, name.as_bytes()))
        .is_some_and(|(_, v)| eq_bytes(v, value.as_bytes()))
}

/// Whether `a` and `b` hold the same bytes, compared eight at a time. In a WebAssembly
/// guest `==` on byte slices calls `memcmp`, which compares one byte per loop turn behind a
/// call: most of the cost of matching a short name such as a header's or a JSON key's.
#[inline]
pub fn eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a, mut b) = (a, b);
    while let (Some((x, ra)), Some((y, rb))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*x) != u64::from_ne_bytes(*y) {
            return false;
        }
        (a, b) = (ra, rb);
    }
    if let (Some((x, ra)), Some((y, rb))) = (a.split_first_chunk::<4>(), b.split_first_chunk::<4>())
    {
        if u32::from_ne_bytes(*x) != u32::from_ne_bytes(*y) {
            return false;
        }
        (a, b) = (ra, rb);
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

fn raw(encoded: &[u8]) -> Raw<'_> {
    let (count, rest) = match encoded {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (0, &[][..]),
    };
    Raw {
        remaining: count,
        rest,
    }
}

/// Iterator over `(name, value)` of encoded headers, as bytes; stops at the first entry
/// that does not fit.
#[derive(Clone, Debug)]
struct Raw<'a> {
    remaining: u16,
    rest: &'a [u8],
}

impl<'a> Raw<'a> {
    fn part(&mut self) -> Option<&'a [u8]> {
        let [a, b, rest @ ..] = self.rest else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if rest.len() < len {
            return None;
        }
        let (part, rest) = rest.split_at(len);
        self.rest = rest;
        Some(part)
    }
}

impl<'a> Iterator for Raw<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let pair = self.part().zip(self.part());
        self.remaining = if pair.is_some() {
            self.remaining - 1
        } else {
            0
        };
        pair
    }
}

/// Iterator over `(name, value)` of encoded headers. Stops at the first malformed entry
/// (truncated, or text that is not UTF-8).
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    raw: Raw<'a>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (n, v) = self.raw.next()?;
        match (std::str::from_utf8(n), std::str::from_utf8(v)) {
            (Ok(n), Ok(v)) => Some((n, v)),
            _ => {
                self.raw.remaining = 0;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_the_protocol_encoding() {
        let encoded = encode([("content-type", "json"), ("k", ""), ("k", "é")]);
        // The example of docs/protocol.md's layout: count, then str16 pairs.
        assert_eq!(&encoded[..6], &[0, 3, 0, 12, b'c', b'o']);
        let all: Vec<_> = iter(&encoded).collect();
        assert_eq!(all, vec![("content-type", "json"), ("k", ""), ("k", "é")]);
        assert_eq!(iter(&[]).count(), 0);
        assert_eq!(iter(&EMPTY).count(), 0);
        let mut grown = Vec::new();
        push(&mut grown, "a", "b");
        assert_eq!(grown, encode([("a", "b")]));
    }

    #[test]
    fn malformed_input_ends_the_iteration() {
        let mut encoded = encode([("a", "b"), ("c", "d")]);
        encoded.truncate(encoded.len() - 1);
        assert_eq!(iter(&encoded).collect::<Vec<_>>(), vec![("a", "b")]);
        assert_eq!(iter(&[0, 5, 0, 1]).count(), 0);
        assert_eq!(iter(&[0, 1, 0, 1, 0xff, 0, 0]).count(), 0, "not UTF-8");
    }

    #[test]
    fn get_finds_the_first_value_by_name() {
        let encoded = encode([("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(get(&encoded, "a"), Some("1"));
        assert_eq!(get(&encoded, "b"), Some("2"));
        assert_eq!(get(&encoded, "c"), None);
        assert_eq!(get(&[], "a"), None);
        assert!(has(&encoded, "a", "1") && has(&encoded, "b", "2"));
        assert!(!has(&encoded, "a", "3"), "the first one counts");
        assert!(!has(&encoded, "c", "") && !has(&encoded, "b", "22"));
        assert_eq!(
            get(&[0, 1, 0, 1, b'a', 0, 1, 0xff], "a"),
            None,
            "value not UTF-8"
        );
    }

    #[test]
    fn eq_bytes_is_slice_equality() {
        let base: Vec<u8> = (0..40u8).collect();
        for len in 0..=base.len() {
            let a = &base[..len];
            assert!(eq_bytes(a, a), "len {len}");
            assert!(!eq_bytes(a, &base[..len.saturating_sub(1)]) || len == 0);
            for at in 0..len {
                let mut b = a.to_vec();
                b[at] ^= 0x80;
                assert!(!eq_bytes(a, &b), "len {len}, byte {at} differs");
            }
        }
    }
}
