//! Message headers as the node passes them to plugins (`message.headers`): the protocol's
//! `headers` encoding (docs/protocol.md: u16 count, then per header a u16 name length, the
//! name, a u16 value length, the value; big-endian lengths, UTF-8 text), so the broker can
//! hand over the bytes it already has. One source for both sides: the guest SDK compiles
//! this file as `tern_sdk::headers`, so node and plugins cannot disagree on the bytes.

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
    let (count, rest) = match encoded {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (0, &[][..]),
    };
    Iter {
        remaining: count,
        rest,
    }
}

/// Iterator over `(name, value)` of encoded headers.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    remaining: u16,
    rest: &'a [u8],
}

impl<'a> Iter<'a> {
    fn text(&mut self) -> Option<&'a str> {
        let [a, b, rest @ ..] = self.rest else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        if rest.len() < len {
            return None;
        }
        let (text, rest) = rest.split_at(len);
        self.rest = rest;
        std::str::from_utf8(text).ok()
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let pair = self.text().zip(self.text());
        self.remaining = if pair.is_some() {
            self.remaining - 1
        } else {
            0
        };
        pair
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
}
