//! Helpers on the generated WIT types (`Hop`, `Allowed`): lookups for plugins, builders for
//! tests.

use crate::types::{Allowed, Hop, Region};

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
