//! Helpers on the generated WIT types: lookups for plugins, builders for tests.

use crate::types::{Allowed, Conflict, Hop, Message, Region, Stamp, Version};

impl Message {
    /// A message on `subject` with no id, key, headers or payload: a start for tests.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            id: String::new(),
            key: None,
            headers: crate::headers::EMPTY.to_vec(),
            payload_len: 0,
        }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the business key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        crate::headers::push(&mut self.headers, name, value);
        self
    }

    /// Sets the payload length (the node fills it in; tests may too).
    pub fn with_payload_len(mut self, len: u32) -> Self {
        self.payload_len = len;
        self
    }

    /// The value of the first header named `name` (names compare exactly).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The headers, in order (names may repeat). Stops at the first malformed entry.
    pub fn headers(&self) -> crate::headers::Iter<'_> {
        crate::headers::iter(&self.headers)
    }

    /// The subject's dot-separated tokens.
    pub fn subject_tokens(&self) -> std::str::Split<'_, char> {
        self.subject.split('.')
    }
}

impl Hop {
    /// A hop from `source` to `destination` with no known regions: a start for tests.
    pub fn new(source: impl Into<String>, destination: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            destination: destination.into(),
            regions: Vec::new(),
        }
    }

    /// The local store at publish: source and destination are the same region.
    pub fn local(region: impl Into<String>) -> Self {
        let region = region.into();
        Self::new(region.clone(), region)
    }

    /// Adds a region with its tags.
    pub fn with_region(mut self, name: impl Into<String>, tags: &[&str]) -> Self {
        self.regions.push(Region {
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        });
        self
    }

    /// Names of the regions tagged `tag`, in the order the node listed them.
    pub fn regions_tagged(&self, tag: &str) -> Vec<String> {
        self.regions
            .iter()
            .filter(|r| r.tags.iter().any(|t| t == tag))
            .map(|r| r.name.clone())
            .collect()
    }
}

impl Allowed {
    /// Whether `region` may hold the message.
    pub fn permits(&self, region: &str) -> bool {
        match self {
            Allowed::Anywhere => true,
            Allowed::Only(regions) => regions.iter().any(|r| r == region),
        }
    }
}

impl Stamp {
    /// A stamp: origin region, its sequence, the key's version and the HLC.
    pub fn new(origin: impl Into<String>, origin_seq: u64, key_seq: u64, hlc: u64) -> Self {
        Self {
            origin: origin.into(),
            origin_seq,
            key_seq,
            hlc,
        }
    }
}

impl Version {
    /// A stored version: the message and its stamp.
    pub fn new(message: Message, stamp: Stamp) -> Self {
        Self { message, stamp }
    }
}

impl Conflict {
    /// Two versions of the same key.
    pub fn new(a: Version, b: Version) -> Self {
        Self { a, b }
    }
}
