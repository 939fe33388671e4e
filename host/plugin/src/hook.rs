//! Hooks, fallback policies and how a chain of plugins combines answers.

use crate::bindings::tern::plugin::types::{Allowed, Routing, Winner};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The hook a plugin implements (one WIT world each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    DedupKey,
    Route,
    Residency,
    Resolve,
}

impl HookKind {
    pub const ALL: [HookKind; 4] = [
        HookKind::DedupKey,
        HookKind::Route,
        HookKind::Residency,
        HookKind::Resolve,
    ];

    /// The WIT world / CLI name: `dedup-key`, `route`, `residency`, `resolve`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::DedupKey => "dedup-key",
            HookKind::Route => "route",
            HookKind::Residency => "residency",
            HookKind::Resolve => "resolve",
        }
    }

    /// The interface a component of this hook exports.
    pub fn interface(self) -> &'static str {
        match self {
            HookKind::DedupKey => "tern:plugin/dedup-key-hook@0.2.0",
            HookKind::Route => "tern:plugin/route-hook@0.2.0",
            HookKind::Residency => "tern:plugin/residency-hook@0.2.0",
            HookKind::Resolve => "tern:plugin/resolve-hook@0.2.0",
        }
    }

    /// The interface name without its version (`tern:plugin/route-hook`), to recognize a
    /// plugin built for another version of the package.
    pub(crate) fn unversioned_interface(self) -> &'static str {
        let full = self.interface();
        full.split_once('@').map_or(full, |(name, _)| name)
    }

    /// The exported function that runs the hook.
    pub(crate) fn function(self) -> &'static str {
        self.as_str()
    }

    /// The fallback used when none is configured: fail closed where a wrong "yes" is
    /// harmful (routing, residency), open where the node has a safe default (dedup on the
    /// message's own id, the default conflict order).
    pub fn default_fallback(self) -> Fallback {
        match self {
            HookKind::DedupKey => Fallback::Allow,
            HookKind::Route => Fallback::Reject,
            HookKind::Residency => Fallback::Reject,
            HookKind::Resolve => Fallback::Allow,
        }
    }
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HookKind::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| format!("unknown hook `{s}` (dedup-key, route, residency, resolve)"))
    }
}

/// What happens to a batch when a plugin's call fails (timeout, trap, wrong answer...).
/// Configured per (stream, hook) attachment.
///
/// | hook        | `Reject`          | `Allow`                   | `Skip`                          |
/// |-------------|-------------------|---------------------------|---------------------------------|
/// | `dedup-key` | batch refused     | each message keeps its id | same as `Allow`                 |
/// | `route`     | batch refused     | each message `keep`s      | each message is `drop`ped       |
/// | `residency` | batch refused     | `anywhere`                | only the hop's source (`local`) |
/// | `resolve`   | default order (*) | default order             | default order                   |
///
/// `Allow` is "as if the plugin had no opinion"; `Skip` is "let it pass without doing
/// anything irreversible": dropped instead of stored elsewhere, kept here instead of
/// replicated. (*) A resolver cannot refuse data that is already stored: the conflict goes
/// to the default order, and the loser stays visible as a conflict record anyway.
/// After `Allow` or `Skip`, the rest of the chain still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    Reject,
    Allow,
    Skip,
}

impl Fallback {
    pub const ALL: [Fallback; 3] = [Fallback::Reject, Fallback::Allow, Fallback::Skip];

    /// The metric label / CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Reject => "reject",
            Fallback::Allow => "allow",
            Fallback::Skip => "skip",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Fallback {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fallback::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown fallback `{s}` (reject, allow, skip)"))
    }
}

/// One hook's answers for a batch, one per message (or conflict).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookResults {
    DedupKey(Vec<Option<String>>),
    Route(Vec<Routing>),
    Residency(Vec<Allowed>),
    Resolve(Vec<Winner>),
}

/// What a fallback turns a failed call into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FallbackOutcome {
    /// The whole batch is refused.
    Refuse,
    /// These answers stand in for the plugin's.
    Results(HookResults),
}

/// Applies `fallback` for a failed `hook` call on a batch of `batch_len`. `hop_source` is
/// the region the message is in now (residency only: where `Skip` keeps it).
pub fn apply_fallback(
    hook: HookKind,
    fallback: Fallback,
    batch_len: usize,
    hop_source: Option<&str>,
) -> FallbackOutcome {
    use Fallback::*;
    let results = match (hook, fallback) {
        (HookKind::Resolve, _) => HookResults::Resolve(vec![Winner::DefaultOrder; batch_len]),
        (_, Reject) => return FallbackOutcome::Refuse,
        (HookKind::DedupKey, Allow | Skip) => HookResults::DedupKey(vec![None; batch_len]),
        (HookKind::Route, Allow) => HookResults::Route(vec![Routing::Keep; batch_len]),
        (HookKind::Route, Skip) => HookResults::Route(vec![Routing::Drop; batch_len]),
        (HookKind::Residency, Allow) => HookResults::Residency(vec![Allowed::Anywhere; batch_len]),
        (HookKind::Residency, Skip) => HookResults::Residency(vec![
            Allowed::Only(
                hop_source.map(|s| vec![s.to_string()]).unwrap_or_default()
            );
            batch_len
        ]),
    };
    FallbackOutcome::Results(results)
}

/// How answers of consecutive plugins in a chain combine, per message: the first plugin
/// with an opinion decides dedup keys, routes and winners; residency intersects (every
/// policy must allow a region).
pub(crate) fn combine_dedup(acc: &mut [Option<String>], next: Vec<Option<String>>) {
    for (a, n) in acc.iter_mut().zip(next) {
        if a.is_none() {
            *a = n;
        }
    }
}

pub(crate) fn combine_route(acc: &mut [Routing], next: Vec<Routing>) {
    for (a, n) in acc.iter_mut().zip(next) {
        if matches!(a, Routing::Keep) {
            *a = n;
        }
    }
}

pub(crate) fn combine_residency(acc: &mut [Allowed], next: Vec<Allowed>) {
    for (a, n) in acc.iter_mut().zip(next) {
        *a = match (std::mem::replace(a, Allowed::Anywhere), n) {
            (Allowed::Anywhere, n) => n,
            (a, Allowed::Anywhere) => a,
            (Allowed::Only(mine), Allowed::Only(theirs)) => {
                Allowed::Only(mine.into_iter().filter(|r| theirs.contains(r)).collect())
            }
        };
    }
}

pub(crate) fn combine_resolve(acc: &mut [Winner], next: Vec<Winner>) {
    for (a, n) in acc.iter_mut().zip(next) {
        if *a == Winner::DefaultOrder {
            *a = n;
        }
    }
}

/// Whether every message already has an answer no later plugin can change.
pub(crate) fn route_settled(acc: &[Routing]) -> bool {
    acc.iter().all(|r| !matches!(r, Routing::Keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for h in HookKind::ALL {
            assert_eq!(h.as_str().parse::<HookKind>(), Ok(h));
        }
        for f in Fallback::ALL {
            assert_eq!(f.as_str().parse::<Fallback>(), Ok(f));
        }
        assert!("routes".parse::<HookKind>().is_err());
    }

    #[test]
    fn fallback_table() {
        use FallbackOutcome::*;
        assert_eq!(
            apply_fallback(HookKind::Route, Fallback::Reject, 2, None),
            Refuse
        );
        assert_eq!(
            apply_fallback(HookKind::Route, Fallback::Skip, 1, None),
            Results(HookResults::Route(vec![Routing::Drop]))
        );
        assert_eq!(
            apply_fallback(HookKind::Residency, Fallback::Skip, 1, Some("eu-west")),
            Results(HookResults::Residency(vec![Allowed::Only(vec![
                "eu-west".into()
            ])]))
        );
        assert_eq!(
            apply_fallback(HookKind::Residency, Fallback::Allow, 1, None),
            Results(HookResults::Residency(vec![Allowed::Anywhere]))
        );
        assert_eq!(
            apply_fallback(HookKind::DedupKey, Fallback::Skip, 2, None),
            Results(HookResults::DedupKey(vec![None, None]))
        );
        assert_eq!(
            apply_fallback(HookKind::Resolve, Fallback::Reject, 1, None),
            Results(HookResults::Resolve(vec![Winner::DefaultOrder]))
        );
    }

    #[test]
    fn residency_intersects() {
        let only = |r: &[&str]| Allowed::Only(r.iter().map(|s| s.to_string()).collect());
        let mut acc = vec![Allowed::Anywhere, only(&["a", "b"]), only(&["a"])];
        combine_residency(
            &mut acc,
            vec![only(&["b"]), Allowed::Anywhere, only(&["c"])],
        );
        assert_eq!(acc, vec![only(&["b"]), only(&["a", "b"]), only(&[])]);
    }

    #[test]
    fn first_opinion_wins() {
        let mut acc = vec![Routing::Keep, Routing::Drop];
        combine_route(&mut acc, vec![Routing::To(vec!["x".into()]), Routing::Keep]);
        assert_eq!(acc, vec![Routing::To(vec!["x".into()]), Routing::Drop]);
        assert!(route_settled(&acc));
        let mut keys = vec![None, Some("k".to_string())];
        combine_dedup(&mut keys, vec![Some("a".into()), Some("b".into())]);
        assert_eq!(keys, vec![Some("a".into()), Some("k".into())]);
        let mut w = vec![Winner::DefaultOrder, Winner::A];
        combine_resolve(&mut w, vec![Winner::B, Winner::B]);
        assert_eq!(w, vec![Winner::B, Winner::A]);
    }
}
