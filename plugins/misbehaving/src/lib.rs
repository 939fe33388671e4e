//! A test guest that misbehaves on cue, to prove each of the node's budgets holds.
//!
//! A `route` plugin. The first message's subject picks the misbehaviour for the whole batch:
//! - `loop`: never returns (epoch deadline);
//! - `bomb`: allocates 1 GiB (memory limit);
//! - `panic`: panics, i.e. traps (`unreachable`);
//! - `recurse`: recurses until the stack is exhausted (stack limit);
//! - `wrong`: returns one result too many (wrong answer);
//! - `huge`: returns a 4 MiB subject (output limit);
//! - `bad-subject`: routes to an empty subject (invalid value);
//! - `kv-fill`: writes 1 KiB values until the kv quota refuses, rejects with the error text;
//! - `log-spam`: logs 10,000 records (the node keeps a bounded number per call);
//!
//! two cues probe the host interface instead:
//! - `now`: routes to `time.<now-ms>`;
//! - `param`: routes to `param.<value of parameter "echo">` (and logs it);
//!
//! and anything else behaves: every message keeps its subject, counter `ok` counts them.

use std::hint::black_box;
use tern_sdk::{config, kv, log, metrics, now_ms, Message, Routing};

#[tern_sdk::route]
fn misbehave(batch: &[Message]) -> Vec<Routing> {
    let cue = batch.first().map(|m| &*m.subject).unwrap_or("");
    match cue {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "bomb" => {
            let big = black_box(vec![1u8; 1 << 30]);
            vec![Routing::To(vec![format!("got.{}", big.len())]); batch.len()]
        }
        "panic" => panic!("misbehaving guest panics on cue"),
        "recurse" => {
            let depth = recurse(black_box(0));
            vec![Routing::To(vec![format!("depth.{depth}")]); batch.len()]
        }
        "wrong" => vec![Routing::Keep; batch.len() + 1],
        "huge" => vec![Routing::To(vec!["x".repeat(4 << 20)]); batch.len()],
        "bad-subject" => vec![Routing::To(vec![String::new()]); batch.len()],
        "kv-fill" => {
            let value = vec![7u8; 1024];
            let mut written = 0u32;
            let error = loop {
                match kv::set(&format!("fill.{written}"), &value) {
                    Ok(()) => written += 1,
                    Err(e) => break e,
                }
            };
            metrics::gauge_set("kv-written", i64::from(written));
            vec![Routing::Reject(format!("kv after {written} writes: {error}")); batch.len()]
        }
        "log-spam" => {
            for i in 0..10_000u32 {
                log::info("spam", &[("i", &i.to_string())]);
            }
            vec![Routing::Keep; batch.len()]
        }
        "now" => vec![Routing::To(vec![format!("time.{}", now_ms())]); batch.len()],
        "param" => {
            let echo = config::get("echo").unwrap_or_else(|| "none".into());
            log::info("echo", &[("echo", &echo)]);
            vec![Routing::To(vec![format!("param.{echo}")]); batch.len()]
        }
        _ => {
            metrics::counter_add("ok", batch.len() as u64);
            vec![Routing::Keep; batch.len()]
        }
    }
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    // Never true (depth only grows), but the compiler cannot know.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    let frame = black_box([depth; 64]);
    black_box(recurse(frame[0] + 1)) + frame[63]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_sdk::testing::TestHost;

    #[test]
    fn behaves_without_a_cue() {
        let host = TestHost::new().install();
        let out = misbehave(&[Message::new("a"), Message::new("b")]);
        assert_eq!(out, vec![Routing::Keep, Routing::Keep]);
        assert_eq!(host.counter("ok"), 2);
    }

    #[test]
    fn host_probes() {
        let host = TestHost::new().now_ms(1234).param("echo", "hi").install();
        assert_eq!(
            misbehave(&[Message::new("now")]),
            vec![Routing::To(vec!["time.1234".into()])]
        );
        assert_eq!(
            misbehave(&[Message::new("param")]),
            vec![Routing::To(vec!["param.hi".into()])]
        );
        assert_eq!(host.logs()[0].field("echo"), Some("hi"));
    }

    #[test]
    fn wrong_answer_has_one_result_too_many() {
        assert_eq!(misbehave(&[Message::new("wrong")]).len(), 2);
    }

    #[test]
    fn kv_fill_stops_at_the_quota() {
        let host = TestHost::new().kv_quota_bytes(10 * 1024).install();
        let out = misbehave(&[Message::new("kv-fill")]);
        assert!(matches!(&out[0], Routing::Reject(why) if why.contains("QuotaExceeded")));
        assert_eq!(host.gauge("kv-written"), Some(9));
    }
}
