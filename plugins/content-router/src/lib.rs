//! content-router: routes messages on subject, header or JSON field to subjects, e.g.
//! priority lanes.
//!
//! Parameters (deploy time):
//! - `route.<n> = <match> -> <action>`, tried in order of `n`; the first match decides;
//! - `default = <action>` for messages no rule matches (default `keep`).
//!
//! A `<match>` is `subject:<pattern>`, `header:<name>=<value>`, `header:<name>` (present),
//! `json:<path>=<value>`, `json:<path>` (present and not null) or `*`.
//! An `<action>` is `to:<subject>[,<subject>...]` (`{subject}` stands for the message's own
//! subject), `reject:<reason>`, `drop` or `keep`.
//!
//! Example, priority lanes:
//! ```text
//! route.1 = header:priority=high        -> to:lanes.high.{subject}
//! route.2 = json:$.customer.tier=gold   -> to:lanes.high.{subject}
//! route.3 = subject:orders.test.>       -> drop
//! default = to:lanes.normal.{subject}
//! ```
//! The plugin asks the node for payloads only when a `json:` rule exists, so header- and
//! subject-only configurations never pay for copying payloads. A `json:` rule reads a
//! payload only as far as the field's value and the `,` or bracket after it (see
//! `tern_sdk::json`): the payload must be JSON that far, and what follows is not checked.
//! Invalid rules reject every message with the error as reason (and log it once per call).

use tern_sdk::json::{Path, Value};
use tern_sdk::{config, log, metrics, subject, Message, Payloads, Routing};

#[tern_sdk::route(reads_payload = needs_payload)]
fn route(batch: &[Message], payloads: &Payloads) -> Vec<Routing> {
    let router = match Router::from_config() {
        Ok(router) => router,
        Err(err) => {
            log::error(
                "content-router misconfigured: rejecting",
                &[("error", &err)],
            );
            metrics::counter_add("config-errors", 1);
            return vec![
                Routing::Reject(format!("content-router misconfigured: {err}"));
                batch.len()
            ];
        }
    };
    let out: Vec<Routing> = batch
        .iter()
        .enumerate()
        .map(|(i, msg)| router.route(msg, payloads.get(i)))
        .collect();
    let routed = out.iter().filter(|r| matches!(r, Routing::To(_))).count();
    if routed > 0 {
        metrics::counter_add("routed", routed as u64);
    }
    out
}

/// Payloads are needed only by `json:` rules.
fn needs_payload() -> bool {
    Router::from_config().is_ok_and(|r| r.rules.iter().any(|(m, _)| matches!(m, Match::Json(..))))
}

#[derive(Debug)]
enum Match {
    Subject(String),
    HeaderEquals(String, String),
    HeaderPresent(String),
    /// The path, and the value it must have, or `None` for "present".
    Json(Path, Option<Want>),
    Any,
}

/// A JSON value to match: strings compare with the text, other values with the text read
/// as JSON (`2`, `true`, `2.0`...).
#[derive(Debug)]
struct Want {
    text: String,
    json: Option<Value>,
}

#[derive(Clone, Debug, PartialEq)]
enum Action {
    To(Vec<Template>),
    Reject(String),
    Drop,
    Keep,
}

#[derive(Debug)]
struct Router {
    rules: Vec<(Match, Action)>,
    default: Action,
}

impl Router {
    fn from_config() -> Result<Self, String> {
        let mut rules = Vec::new();
        for (n, text) in config::with_prefix("route.") {
            let (m, a) = text.split_once("->").ok_or_else(|| {
                format!("route.{n}: expected `<match> -> <action>`, got `{text}`")
            })?;
            let m = parse_match(m.trim()).map_err(|e| format!("route.{n}: {e}"))?;
            let a = parse_action(a.trim()).map_err(|e| format!("route.{n}: {e}"))?;
            rules.push((m, a));
        }
        let default = match config::get("default") {
            Some(a) => parse_action(a.trim()).map_err(|e| format!("default: {e}"))?,
            None => Action::Keep,
        };
        Ok(Self { rules, default })
    }

    fn route(&self, msg: &Message, payload: &[u8]) -> Routing {
        let action = self
            .rules
            .iter()
            .find(|(m, _)| matches(m, msg, payload))
            .map(|(_, a)| a)
            .unwrap_or(&self.default);
        match action {
            Action::Keep => Routing::Keep,
            Action::Drop => Routing::Drop,
            Action::Reject(reason) => Routing::Reject(reason.clone()),
            Action::To(targets) => {
                Routing::To(targets.iter().map(|t| t.expand(&msg.subject)).collect())
            }
        }
    }
}

/// A target subject, split where `{subject}` stands, so a message's target is built
/// without searching the text again.
#[derive(Clone, Debug, PartialEq)]
struct Template(Vec<String>);

impl Template {
    fn parse(text: &str) -> Self {
        Self(text.split("{subject}").map(String::from).collect())
    }

    fn expand(&self, subject: &str) -> String {
        let fixed: usize = self.0.iter().map(String::len).sum();
        let mut out = String::with_capacity(fixed + subject.len() * (self.0.len() - 1));
        for (i, part) in self.0.iter().enumerate() {
            if i > 0 {
                out.push_str(subject);
            }
            out.push_str(part);
        }
        out
    }
}

fn matches(m: &Match, msg: &Message, payload: &[u8]) -> bool {
    match m {
        Match::Subject(pattern) => subject::matches(pattern, &msg.subject),
        Match::HeaderEquals(name, value) => msg.header_is(name, value),
        Match::HeaderPresent(name) => msg.header(name).is_some(),
        Match::Json(path, want) => match (path.find(payload), want) {
            (None, _) => false,
            (Some(found), _) if found.is_null() => false,
            // Present: and, like any value the router reads, UTF-8.
            (Some(found), None) => std::str::from_utf8(found.json()).is_ok(),
            // Compared where it lies in the payload: most rules name strings.
            (Some(found), Some(want)) if found.is_string() => found.is_str(&want.text),
            (Some(found), Some(want)) => want.json.is_some() && want.json == found.value(),
        },
        Match::Any => true,
    }
}

fn parse_match(text: &str) -> Result<Match, String> {
    if text == "*" {
        return Ok(Match::Any);
    }
    if let Some(pattern) = text.strip_prefix("subject:") {
        if pattern.trim().is_empty() {
            return Err("empty subject pattern".into());
        }
        return Ok(Match::Subject(pattern.trim().into()));
    }
    if let Some(rest) = text.strip_prefix("header:") {
        return Ok(match rest.split_once('=') {
            Some((name, value)) => Match::HeaderEquals(name.trim().into(), value.trim().into()),
            None => Match::HeaderPresent(rest.trim().into()),
        });
    }
    if let Some(rest) = text.strip_prefix("json:") {
        let (path, want) = match rest.split_once('=') {
            Some((path, value)) => {
                let text = value.trim().to_string();
                let json = tern_sdk::json::Path::parse("$")
                    .ok()
                    .and_then(|root| root.extract(text.as_bytes()));
                (path, Some(Want { text, json }))
            }
            None => (rest, None),
        };
        let path = Path::parse(path.trim()).map_err(|e| e.to_string())?;
        return Ok(Match::Json(path, want));
    }
    Err(format!(
        "unknown match `{text}` (subject:, header:, json:, *)"
    ))
}

fn parse_action(text: &str) -> Result<Action, String> {
    match text {
        "keep" => return Ok(Action::Keep),
        "drop" => return Ok(Action::Drop),
        _ => {}
    }
    if let Some(reason) = text.strip_prefix("reject:") {
        return Ok(Action::Reject(reason.trim().into()));
    }
    if let Some(list) = text.strip_prefix("to:") {
        let subjects: Vec<Template> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Template::parse)
            .collect();
        if subjects.is_empty() {
            return Err("`to:` needs at least one subject".into());
        }
        return Ok(Action::To(subjects));
    }
    Err(format!(
        "unknown action `{text}` (to:<subjects>, reject:<reason>, drop, keep)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_sdk::testing::TestHost;

    fn lanes() -> TestHost {
        TestHost::new()
            .param("route.1", "header:priority=high -> to:lanes.high.{subject}")
            .param(
                "route.2",
                "json:$.customer.tier=gold -> to:lanes.high.{subject}",
            )
            .param("route.3", "subject:orders.test.> -> drop")
            .param("route.4", "json:$.amount=0 -> reject:empty order")
            .param("default", "to:lanes.normal.{subject}")
            .install()
    }

    #[test]
    fn templates_put_the_subject_where_it_stands() {
        let expand = |t: &str| Template::parse(t).expand("orders.eu");
        assert_eq!(expand("lanes.{subject}"), "lanes.orders.eu");
        assert_eq!(
            expand("{subject}.copy.{subject}"),
            "orders.eu.copy.orders.eu"
        );
        assert_eq!(expand("audit"), "audit");
    }

    #[test]
    fn priority_lanes() {
        let host = lanes();
        let batch = [
            Message::new("orders.eu").with_header("priority", "high"),
            Message::new("orders.us"),
            Message::new("orders.test.1"),
            Message::new("orders.eu"),
            Message::new("orders.us"),
        ];
        let payloads = Payloads::new(vec![
            br#"{"customer":{"tier":"bronze"}}"#.to_vec(),
            br#"{"customer":{"tier":"gold"}}"#.to_vec(),
            br#"{"customer":{"tier":"silver"}}"#.to_vec(),
            br#"{"amount":0}"#.to_vec(),
            b"not json".to_vec(),
        ]);
        assert_eq!(
            route(&batch, &payloads),
            vec![
                Routing::To(vec!["lanes.high.orders.eu".into()]),
                Routing::To(vec!["lanes.high.orders.us".into()]),
                Routing::Drop,
                Routing::Reject("empty order".into()),
                Routing::To(vec!["lanes.normal.orders.us".into()]),
            ]
        );
        assert_eq!(host.counter("routed"), 3);
        assert!(needs_payload());
    }

    #[test]
    fn header_only_rules_do_not_ask_for_payloads() {
        let _host = TestHost::new()
            .param("route.1", "header:priority -> to:fast,audit")
            .install();
        assert!(!needs_payload());
        // Without payloads every payload reads empty; header rules still work.
        let out = route(
            &[
                Message::new("a").with_header("priority", "x"),
                Message::new("b"),
            ],
            &Payloads::default(),
        );
        assert_eq!(
            out,
            vec![
                Routing::To(vec!["fast".into(), "audit".into()]),
                Routing::Keep
            ]
        );
    }

    #[test]
    fn json_presence_and_numbers() {
        let _host = TestHost::new()
            .param("route.1", "json:$.n=2 -> to:two")
            .param("route.2", "json:$.flag -> to:flagged")
            .install();
        let out = route(
            &[Message::new("a"), Message::new("b"), Message::new("c")],
            &Payloads::new(vec![
                br#"{"n":2}"#.to_vec(),
                br#"{"flag":false}"#.to_vec(),
                br#"{"flag":null}"#.to_vec(),
            ]),
        );
        assert_eq!(
            out,
            vec![
                Routing::To(vec!["two".into()]),
                Routing::To(vec!["flagged".into()]),
                Routing::Keep
            ]
        );
    }

    #[test]
    fn json_strings_compare_decoded_and_read_only_so_far() {
        let _host = TestHost::new()
            .param("route.1", r#"json:$.tier=g"old -> to:quoted"#)
            .param("route.2", "json:$.tier=gold -> to:gold")
            .install();
        let out = route(
            &[Message::new("a"), Message::new("b"), Message::new("c")],
            &Payloads::new(vec![
                br#"{"tier":"g\u006fld"}"#.to_vec(),
                br#"{"tier":"g\"old", "rest": not json"#.to_vec(),
                br#"{"x":bad,"tier":"gold"}"#.to_vec(),
            ]),
        );
        assert_eq!(
            out,
            vec![
                Routing::To(vec!["gold".into()]),
                Routing::To(vec!["quoted".into()]),
                Routing::Keep
            ]
        );
    }

    #[test]
    fn invalid_rules_reject_with_the_error() {
        let host = TestHost::new()
            .param("route.1", "header:x -> to:")
            .install();
        let out = route(&[Message::new("a")], &Payloads::default());
        assert!(matches!(&out[0], Routing::Reject(r) if r.contains("route.1")));
        assert_eq!(host.counter("config-errors"), 1);
        assert!(!needs_payload());
    }
}
