//! json-dedup-key: the idempotency key of a message from a field of its JSON payload, so two
//! publishes of the same order are stored once even when producers assign different ids.
//!
//! Parameters (deploy time):
//! - `path` (required): the field, e.g. `$.order_id` or `$.order.id`;
//! - `prefix` (optional): prepended to the key, e.g. `order:`, to keep key spaces apart.
//!
//! A message whose payload is not JSON, lacks the field or has `null` there keeps its own id
//! (counter `missing`); strings are used as they are, numbers and booleans as JSON text,
//! objects and arrays as compact JSON. Keys longer than [`KEY_BYTES_MAX`] are not used
//! (counter `too-long`): the node refuses longer keys.
//!
//! The payload is read only as far as the field's value and the `,` or `}` after it (see
//! `tern_sdk::json`): it must be JSON that far, and what follows is not checked, so
//! `{"order_id":"o-1", oops` gives the key `o-1`.

use tern_sdk::json::Path;
use tern_sdk::{config, log, metrics, Message, Payloads};

/// Longest key this plugin returns (the node's limit on dedup keys is 256 bytes).
pub const KEY_BYTES_MAX: usize = 256;

#[tern_sdk::dedup_key]
fn key(batch: &[Message], payloads: &Payloads) -> Vec<Option<String>> {
    let path = match config::get("path").map(|p| Path::parse(&p)) {
        Some(Ok(path)) => path,
        Some(Err(err)) => return misconfigured(batch.len(), &err.to_string()),
        None => return misconfigured(batch.len(), "parameter `path` is required"),
    };
    let prefix = config::get("prefix").unwrap_or_default();
    let (mut missing, mut too_long) = (0u64, 0u64);
    let keys = (0..batch.len())
        .map(|i| {
            let Some(value) = path.find(payloads.get(i)).and_then(|found| found.to_key()) else {
                missing += 1;
                return None;
            };
            // Not `format!`: the formatting machinery costs more than the field's lookup.
            let key = if prefix.is_empty() {
                value
            } else {
                [prefix.as_str(), &value].concat()
            };
            if key.len() > KEY_BYTES_MAX {
                too_long += 1;
                return None;
            }
            Some(key)
        })
        .collect();
    if missing > 0 {
        metrics::counter_add("missing", missing);
    }
    if too_long > 0 {
        metrics::counter_add("too-long", too_long);
    }
    keys
}

/// Without a usable path every message keeps its own id (dedup still works on producer
/// ids), and the operator is told.
fn misconfigured(len: usize, why: &str) -> Vec<Option<String>> {
    log::error(
        "json-dedup-key misconfigured: keeping message ids",
        &[("error", why)],
    );
    metrics::counter_add("config-errors", 1);
    vec![None; len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_sdk::testing::TestHost;

    fn batch(payloads: &[&str]) -> (Vec<Message<'static>>, Payloads<'static>) {
        let msgs = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Message::new("orders.created")
                    .with_id(format!("m{i}"))
                    .with_payload_len(p.len() as u32)
            })
            .collect();
        (
            msgs,
            payloads.iter().map(|p| p.as_bytes().to_vec()).collect(),
        )
    }

    #[test]
    fn key_from_a_field() {
        let host = TestHost::new().param("path", "$.order_id").install();
        let (msgs, payloads) = batch(&[
            r#"{"order_id":"o-17","total":3}"#,
            r#"{"total":3,"order_id":42}"#,
            r#"{"total":3}"#,
            "not json",
            r#"{"order_id":null}"#,
        ]);
        assert_eq!(
            key(&msgs, &payloads),
            vec![Some("o-17".into()), Some("42".into()), None, None, None]
        );
        assert_eq!(host.counter("missing"), 3);
    }

    #[test]
    fn payload_read_only_as_far_as_the_field() {
        let _host = TestHost::new().param("path", "$.order_id").install();
        let (msgs, payloads) = batch(&[
            // Escapes in keys and values are decoded.
            r#"{"n\u0061me":"x","order_id":"o-\"1\""}"#,
            // Not JSON after the field: not read.
            r#"{"order_id":"o-2", oops"#,
            // Not JSON before the field: no key.
            r#"{"lines":[1,,2],"order_id":"o-3"}"#,
            // Not an object.
            r#"["order_id","o-4"]"#,
            // Skipped over: nested values, and a string holding what looks like the field.
            r#"{"a":{"order_id":"inner"},"b":"\"order_id\":\"no\"","order_id":5}"#,
        ]);
        assert_eq!(
            key(&msgs, &payloads),
            vec![
                Some("o-\"1\"".into()),
                Some("o-2".into()),
                None,
                None,
                Some("5".into())
            ]
        );
    }

    #[test]
    fn nested_path_and_prefix() {
        let _host = TestHost::new()
            .param("path", "$.order.lines[0].sku")
            .param("prefix", "sku:")
            .install();
        let (msgs, payloads) = batch(&[r#"{"order":{"lines":[{"sku":"A1"},{"sku":"B2"}]}}"#]);
        assert_eq!(key(&msgs, &payloads), vec![Some("sku:A1".into())]);
    }

    #[test]
    fn too_long_keys_are_not_used() {
        let host = TestHost::new().param("path", "$.id").install();
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(KEY_BYTES_MAX + 1));
        let (msgs, payloads) = batch(&[&long]);
        assert_eq!(key(&msgs, &payloads), vec![None]);
        assert_eq!(host.counter("too-long"), 1);
    }

    #[test]
    fn missing_or_bad_path_keeps_ids_and_logs() {
        let host = TestHost::new().install();
        let (msgs, payloads) = batch(&[r#"{"id":1}"#]);
        assert_eq!(key(&msgs, &payloads), vec![None]);
        assert_eq!(host.counter("config-errors"), 1);
        drop(host);
        let host = TestHost::new().param("path", "$.a[").install();
        assert_eq!(key(&msgs, &payloads), vec![None]);
        assert!(host.logs()[0]
            .field("error")
            .unwrap()
            .contains("invalid JSON path"));
    }
}
