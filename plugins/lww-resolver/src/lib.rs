//! lww-resolver: last-writer-wins on a timestamp (or version) the application writes, for
//! per-key conflicts between regions; falls back to the node's default order.
//!
//! Parameters (deploy time), one of:
//! - `field = <JSON path>`, e.g. `$.updated_at`: read from the payload;
//! - `header = <name>`, e.g. `updated-at`: read from a header.
//!
//! The version with the greater value wins: numerically when both values are numbers
//! (integers compared exactly), otherwise as text (so RFC 3339 timestamps in one time zone
//! compare correctly). A missing value on either side, equal values, or no configuration
//! give `default-order` (highest `key-seq`, `hlc`, `origin`), decided by the node the same
//! way in every region.

use std::cmp::Ordering;
use tern_sdk::json::{Path, Value};
use tern_sdk::{config, log, metrics, Conflict, Message, Payloads, Winner};

#[tern_sdk::resolve(reads_payload = needs_payload)]
fn resolve(batch: &[Conflict], payloads: &Payloads) -> Vec<Winner> {
    let source = match Source::from_config() {
        Ok(source) => source,
        Err(err) => {
            log::error(
                "lww-resolver misconfigured: default order",
                &[("error", &err)],
            );
            metrics::counter_add("config-errors", 1);
            return vec![Winner::DefaultOrder; batch.len()];
        }
    };
    let out: Vec<Winner> = batch
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (pa, pb) = payloads.pair(i);
            let a = source.value(&c.a.message, pa);
            let b = source.value(&c.b.message, pb);
            match (a, b) {
                (Some(a), Some(b)) => match compare(&a, &b) {
                    Ordering::Greater => Winner::A,
                    Ordering::Less => Winner::B,
                    Ordering::Equal => Winner::DefaultOrder,
                },
                _ => Winner::DefaultOrder,
            }
        })
        .collect();
    let deferred = out.iter().filter(|w| **w == Winner::DefaultOrder).count();
    metrics::counter_add("decided", (out.len() - deferred) as u64);
    if deferred > 0 {
        metrics::counter_add("default-order", deferred as u64);
    }
    out
}

fn needs_payload() -> bool {
    matches!(Source::from_config(), Ok(Source::Field(_)))
}

/// Where the last-writer timestamp is read.
enum Source {
    Field(Path),
    Header(String),
}

/// A comparable value.
#[derive(Debug, PartialEq)]
enum Stamp {
    Int(i128),
    Float(f64),
    Text(String),
}

impl Source {
    fn from_config() -> Result<Self, String> {
        match (config::get("field"), config::get("header")) {
            (Some(f), None) => Path::parse(&f)
                .map(Source::Field)
                .map_err(|e| e.to_string()),
            (None, Some(h)) if !h.trim().is_empty() => Ok(Source::Header(h.trim().into())),
            (Some(_), Some(_)) => Err("give `field` or `header`, not both".into()),
            _ => Err("parameter `field` (JSON path) or `header` is required".into()),
        }
    }

    fn value(&self, msg: &Message, payload: &[u8]) -> Option<Stamp> {
        match self {
            Source::Header(name) => msg.header(name).map(parse_text),
            Source::Field(path) => match path.extract(payload)? {
                Value::Number(n) => n
                    .as_i64()
                    .map(|i| Stamp::Int(i.into()))
                    .or_else(|| n.as_u64().map(|u| Stamp::Int(u.into())))
                    .or_else(|| n.as_f64().map(Stamp::Float)),
                Value::String(s) => Some(parse_text(&s)),
                _ => None,
            },
        }
    }
}

fn parse_text(text: &str) -> Stamp {
    if let Ok(i) = text.trim().parse::<i128>() {
        return Stamp::Int(i);
    }
    match text.trim().parse::<f64>() {
        Ok(f) if f.is_finite() => Stamp::Float(f),
        _ => Stamp::Text(text.to_string()),
    }
}

fn compare(a: &Stamp, b: &Stamp) -> Ordering {
    match (a, b) {
        (Stamp::Int(x), Stamp::Int(y)) => x.cmp(y),
        (Stamp::Int(x), Stamp::Float(y)) => (*x as f64).total_cmp(y),
        (Stamp::Float(x), Stamp::Int(y)) => x.total_cmp(&(*y as f64)),
        (Stamp::Float(x), Stamp::Float(y)) => x.total_cmp(y),
        (Stamp::Text(x), Stamp::Text(y)) => x.cmp(y),
        // A number against text: no sensible order, let the node decide.
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_sdk::testing::TestHost;
    use tern_sdk::{Stamp as WireStamp, Version};

    fn conflict(a: Message<'static>, b: Message<'static>) -> Conflict<'static> {
        Conflict::new(
            Version::new(a.with_key("k"), WireStamp::new("eu-west", 10, 3, 1_000)),
            Version::new(b.with_key("k"), WireStamp::new("us-east", 7, 3, 2_000)),
        )
    }

    #[test]
    fn newer_field_wins() {
        let host = TestHost::new().param("field", "$.updated_at").install();
        assert!(needs_payload());
        let batch = [
            conflict(Message::new("a"), Message::new("b")),
            conflict(Message::new("a"), Message::new("b")),
            conflict(Message::new("a"), Message::new("b")),
            conflict(Message::new("a"), Message::new("b")),
        ];
        let payloads = Payloads::from_pairs(vec![
            (
                br#"{"updated_at":20}"#.to_vec(),
                br#"{"updated_at":10}"#.to_vec(),
            ),
            (
                br#"{"updated_at":"2026-11-22T10:00:00Z"}"#.to_vec(),
                br#"{"updated_at":"2026-11-22T11:00:00Z"}"#.to_vec(),
            ),
            (br#"{"updated_at":5}"#.to_vec(), br#"{"other":1}"#.to_vec()),
            (
                br#"{"updated_at":5}"#.to_vec(),
                br#"{"updated_at":5.0}"#.to_vec(),
            ),
        ]);
        assert_eq!(
            resolve(&batch, &payloads),
            vec![
                Winner::A,
                Winner::B,
                Winner::DefaultOrder,
                Winner::DefaultOrder
            ]
        );
        assert_eq!(host.counter("decided"), 2);
        assert_eq!(host.counter("default-order"), 2);
    }

    #[test]
    fn header_source_needs_no_payload() {
        let _host = TestHost::new().param("header", "version").install();
        assert!(!needs_payload());
        let out = resolve(
            &[
                conflict(
                    Message::new("a").with_header("version", "9"),
                    Message::new("b").with_header("version", "10"),
                ),
                conflict(
                    Message::new("a").with_header("version", "x"),
                    Message::new("b"),
                ),
            ],
            &Payloads::default(),
        );
        // 10 > 9 numerically (as text "9" > "10").
        assert_eq!(out, vec![Winner::B, Winner::DefaultOrder]);
    }

    #[test]
    fn no_configuration_defers_to_the_default_order() {
        let host = TestHost::new().install();
        let out = resolve(
            &[conflict(Message::new("a"), Message::new("b"))],
            &Payloads::default(),
        );
        assert_eq!(out, vec![Winner::DefaultOrder]);
        assert_eq!(host.counter("config-errors"), 1);
    }
}
