//! Subject patterns, as the node understands them: dot-separated tokens, `*` matches one
//! token, a final `>` matches one or more.

#[path = "../../host/proto/src/subject_match.rs"]
mod subject_match;

pub use subject_match::matches;

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literal_star_and_tail() {
        assert!(matches("orders.eu.created", "orders.eu.created"));
        assert!(!matches("orders.eu.created", "orders.eu"));
        assert!(matches("orders.*.created", "orders.us.created"));
        assert!(!matches("orders.*.created", "orders.us.x.created"));
        assert!(matches("orders.>", "orders.eu.created"));
        assert!(matches("orders.>", "orders.eu"));
        assert!(!matches("orders.>", "orders"));
        assert!(matches("*.eu.>", "orders.eu.created"));
        assert!(!matches("*.eu.>", "orders.us.created"));
        assert!(matches(">", "a"));
        assert!(!matches("a.>.b", "a.x.b") && matches("a.>.b", "a.>.b"));
    }
}
