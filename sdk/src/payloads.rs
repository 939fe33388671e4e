//! Payloads passed beside a batch.

/// The payloads of a batch, by position: `get(i)` is the payload of `batch[i]`.
///
/// Only plugins whose hook function takes `&Payloads` receive them; for the others (or when
/// a `reads_payload = ..` function said no) every payload reads as empty.
/// For `resolve`, entries come in pairs: see [`Payloads::pair`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Payloads {
    items: Vec<Vec<u8>>,
}

impl Payloads {
    /// Payloads by batch position.
    pub fn new(items: Vec<Vec<u8>>) -> Self {
        Self { items }
    }

    /// Payload pairs of a `resolve` batch: `(a, b)` of each conflict.
    pub fn from_pairs(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let mut items = Vec::with_capacity(pairs.len() * 2);
        for (a, b) in pairs {
            items.push(a);
            items.push(b);
        }
        Self { items }
    }

    /// The payload of batch entry `i`, empty if the node passed none.
    pub fn get(&self, i: usize) -> &[u8] {
        self.items.get(i).map(Vec::as_slice).unwrap_or(&[])
    }

    /// For `resolve`: the payloads of versions `a` and `b` of conflict `i`.
    pub fn pair(&self, i: usize) -> (&[u8], &[u8]) {
        (self.get(2 * i), self.get(2 * i + 1))
    }

    /// Number of payloads passed (0 when the node passed none).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the node passed no payloads.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<T: Into<Vec<u8>>> FromIterator<T> for Payloads {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self::new(iter.into_iter().map(Into::into).collect())
    }
}
