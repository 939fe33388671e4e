//! Payloads passed beside a batch.

use std::borrow::Cow;

/// The payloads of a batch, by position: `get(i)` is the payload of `batch[i]`.
///
/// Only plugins whose hook function takes `&Payloads` receive them; for the others (or when
/// a `reads_payload = ..` function said no) every payload reads as empty.
/// For `resolve`, entries come in pairs: see [`Payloads::pair`].
/// In a call they borrow the bytes the node passed; tests build owned ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Payloads<'a> {
    items: Vec<Cow<'a, [u8]>>,
}

impl Payloads<'static> {
    /// Payloads by batch position.
    pub fn new(items: Vec<Vec<u8>>) -> Self {
        Self {
            items: items.into_iter().map(Cow::Owned).collect(),
        }
    }

    /// Payload pairs of a `resolve` batch: `(a, b)` of each conflict.
    pub fn from_pairs(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let mut items = Vec::with_capacity(pairs.len() * 2);
        for (a, b) in pairs {
            items.push(Cow::Owned(a));
            items.push(Cow::Owned(b));
        }
        Self { items }
    }
}

impl<'a> Payloads<'a> {
    /// Payloads borrowed from a call's bytes.
    pub(crate) fn borrowed(items: Vec<&'a [u8]>) -> Self {
        Self {
            items: items.into_iter().map(Cow::Borrowed).collect(),
        }
    }

    /// The payload of batch entry `i`, empty if the node passed none.
    pub fn get(&self, i: usize) -> &[u8] {
        self.items.get(i).map(|p| &p[..]).unwrap_or(&[])
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

impl<T: Into<Vec<u8>>> FromIterator<T> for Payloads<'static> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Self::new(iter.into_iter().map(Into::into).collect())
    }
}
