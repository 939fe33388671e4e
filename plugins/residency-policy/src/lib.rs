//! residency-policy: which regions may hold a message, from rules given as parameters.
//!
//! Parameters (deploy time):
//! - `rule.<n> = <match> -> <target>`, tried in order of `n`; the first match decides;
//! - `default = <target>` for messages no rule matches (default `anywhere`).
//!
//! A `<match>` is `header:<name>=<value>`, `header:<name>` (present), `subject:<pattern>`
//! (`*` one token, final `>` the rest) or `*` (every message).
//! A `<target>` is `tag:<tag>` (regions tagged so), `regions:<a>,<b>` (by name), `local`
//! (only the region the message is in now, i.e. never replicated) or `anywhere`.
//!
//! Example, "EU data stays in the EU":
//! ```text
//! rule.1 = header:residency=eu -> tag:eu
//! rule.2 = subject:*.eu.>      -> tag:eu
//! ```
//! Invalid rules fail closed: every message is allowed nowhere (the node refuses it) and an
//! error is logged, because a residency policy that silently allows everything is worse.

use tern_sdk::{config, log, metrics, subject, Allowed, Hop, Message};

#[tern_sdk::residency]
fn allowed(hop: &Hop, batch: &[Message]) -> Vec<Allowed> {
    match Policy::from_config() {
        Ok(policy) => {
            let out: Vec<Allowed> = batch.iter().map(|m| policy.allowed(hop, m)).collect();
            let restricted = out.iter().filter(|a| **a != Allowed::Anywhere).count();
            if restricted > 0 {
                metrics::counter_add("restricted", restricted as u64);
            }
            out
        }
        Err(err) => {
            log::error(
                "invalid residency rules: refusing every message",
                &[("error", &err)],
            );
            metrics::counter_add("config-errors", 1);
            vec![Allowed::Only(Vec::new()); batch.len()]
        }
    }
}

#[derive(Debug, PartialEq)]
enum Match {
    HeaderEquals(String, String),
    HeaderPresent(String),
    Subject(String),
    Any,
}

#[derive(Debug, PartialEq)]
enum Target {
    Tag(String),
    Regions(Vec<String>),
    Local,
    Anywhere,
}

#[derive(Debug, PartialEq)]
struct Policy {
    rules: Vec<(Match, Target)>,
    default: Target,
}

impl Policy {
    fn from_config() -> Result<Self, String> {
        let mut rules = Vec::new();
        for (n, text) in config::with_prefix("rule.") {
            let (m, t) = text
                .split_once("->")
                .ok_or_else(|| format!("rule.{n}: expected `<match> -> <target>`, got `{text}`"))?;
            let m = parse_match(m.trim()).map_err(|e| format!("rule.{n}: {e}"))?;
            let t = parse_target(t.trim()).map_err(|e| format!("rule.{n}: {e}"))?;
            rules.push((m, t));
        }
        let default = match config::get("default") {
            Some(t) => parse_target(t.trim()).map_err(|e| format!("default: {e}"))?,
            None => Target::Anywhere,
        };
        Ok(Self { rules, default })
    }

    fn allowed(&self, hop: &Hop, msg: &Message) -> Allowed {
        let target = self
            .rules
            .iter()
            .find(|(m, _)| matches(m, msg))
            .map(|(_, t)| t)
            .unwrap_or(&self.default);
        match target {
            Target::Anywhere => Allowed::Anywhere,
            Target::Local => Allowed::Only(vec![hop.source.clone()]),
            Target::Regions(names) => Allowed::Only(names.clone()),
            Target::Tag(tag) => Allowed::Only(hop.regions_tagged(tag)),
        }
    }
}

fn matches(m: &Match, msg: &Message) -> bool {
    match m {
        Match::HeaderEquals(name, value) => msg.header_is(name, value),
        Match::HeaderPresent(name) => msg.header(name).is_some(),
        Match::Subject(pattern) => subject::matches(pattern, &msg.subject),
        Match::Any => true,
    }
}

fn parse_match(text: &str) -> Result<Match, String> {
    if text == "*" {
        return Ok(Match::Any);
    }
    if let Some(rest) = text.strip_prefix("header:") {
        return Ok(match rest.split_once('=') {
            Some((name, value)) => Match::HeaderEquals(name.trim().into(), value.trim().into()),
            None => Match::HeaderPresent(rest.trim().into()),
        });
    }
    if let Some(pattern) = text.strip_prefix("subject:") {
        if pattern.trim().is_empty() {
            return Err("empty subject pattern".into());
        }
        return Ok(Match::Subject(pattern.trim().into()));
    }
    Err(format!(
        "unknown match `{text}` (header:<name>=<value>, header:<name>, subject:<pattern>, *)"
    ))
}

fn parse_target(text: &str) -> Result<Target, String> {
    match text {
        "anywhere" => return Ok(Target::Anywhere),
        "local" => return Ok(Target::Local),
        _ => {}
    }
    if let Some(tag) = text.strip_prefix("tag:") {
        if tag.trim().is_empty() {
            return Err("empty tag".into());
        }
        return Ok(Target::Tag(tag.trim().into()));
    }
    if let Some(list) = text.strip_prefix("regions:") {
        let names: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if names.is_empty() {
            return Err("empty region list".into());
        }
        return Ok(Target::Regions(names));
    }
    Err(format!(
        "unknown target `{text}` (tag:<tag>, regions:<a>,<b>, local, anywhere)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_sdk::testing::TestHost;

    fn mesh() -> Hop {
        Hop::new("eu-west", "us-east")
            .with_region("eu-west", &["eu"])
            .with_region("eu-central", &["eu", "pci"])
            .with_region("us-east", &["us"])
    }

    fn eu_rules() -> TestHost {
        TestHost::new()
            .param("rule.1", "header:residency=eu -> tag:eu")
            .param("rule.2", "subject:*.eu.> -> tag:eu")
            .install()
    }

    #[test]
    fn eu_by_header_or_subject_stays_in_eu_regions() {
        let host = eu_rules();
        let batch = [
            Message::new("orders.created").with_header("residency", "eu"),
            Message::new("orders.eu.created"),
            Message::new("orders.us.created"),
            Message::new("orders.created").with_header("residency", "us"),
        ];
        let out = allowed(&mesh(), &batch);
        let eu = Allowed::Only(vec!["eu-west".into(), "eu-central".into()]);
        assert_eq!(
            out,
            vec![eu.clone(), eu, Allowed::Anywhere, Allowed::Anywhere]
        );
        assert!(!out[0].permits("us-east") && out[0].permits("eu-central"));
        assert_eq!(host.counter("restricted"), 2);
    }

    #[test]
    fn first_matching_rule_wins_and_default_applies() {
        let _host = TestHost::new()
            .param("rule.1", "header:pci -> regions:eu-central")
            .param("rule.2", "* -> tag:eu")
            .param("default", "anywhere")
            .install();
        let out = allowed(
            &mesh(),
            &[Message::new("a").with_header("pci", "1"), Message::new("b")],
        );
        assert_eq!(
            out,
            vec![
                Allowed::Only(vec!["eu-central".into()]),
                Allowed::Only(vec!["eu-west".into(), "eu-central".into()])
            ]
        );
    }

    #[test]
    fn rules_order_numerically_and_local_keeps_the_message_here() {
        let _host = TestHost::new()
            .param("rule.10", "* -> anywhere")
            .param("rule.2", "subject:audit.> -> local")
            .install();
        let out = allowed(&mesh(), &[Message::new("audit.login")]);
        assert_eq!(out, vec![Allowed::Only(vec!["eu-west".into()])]);
    }

    #[test]
    fn no_rules_means_anywhere() {
        let _host = TestHost::new().install();
        let out = allowed(&mesh(), &[Message::new("x")]);
        assert_eq!(out, vec![Allowed::Anywhere]);
    }

    #[test]
    fn invalid_rules_fail_closed_and_log() {
        let host = TestHost::new()
            .param("rule.1", "header:x => tag:eu")
            .install();
        let out = allowed(&mesh(), &[Message::new("a"), Message::new("b")]);
        assert_eq!(out, vec![Allowed::Only(vec![]), Allowed::Only(vec![])]);
        assert_eq!(host.counter("config-errors"), 1);
        let logs = host.logs();
        assert_eq!(logs.len(), 1);
        assert!(logs[0].field("error").unwrap().contains("rule.1"));
    }

    #[test]
    fn parses_targets() {
        assert_eq!(
            parse_target("regions: a, b ,"),
            Ok(Target::Regions(vec!["a".into(), "b".into()]))
        );
        assert!(parse_target("tag:").is_err());
        assert!(parse_target("nowhere").is_err());
        assert!(parse_match("subject:").is_err());
    }
}
