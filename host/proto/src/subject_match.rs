//! Matching a subject against a filter, token by token in place. One source for both
//! sides: the node compiles it into `tern_proto::subject`, and the plugin SDK into
//! `tern_sdk::subject` (by path), so node and plugins cannot disagree on a match.
//!
//! Tokens are dot-separated; in a filter `*` matches one token and a final `>` matches one
//! or more. A `>` that is not the last token is compared as it is (a node refuses such a
//! filter before it is ever matched).

/// Whether `subject` matches `pattern`.
///
/// Walks both strings once, token by token: a literal token is compared where it lies in
/// the subject, so only `*` has to look for the end of a subject token.
pub fn matches(pattern: &str, subject: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), subject.as_bytes());
    // Where the current token of each starts; `j == s.len() + 1` once the subject's last
    // token has been taken (a string of n dots has n + 1 tokens, some of them empty).
    let (mut i, mut j) = (0, 0);
    loop {
        let pe = token_end(p, i);
        let token = &p[i..pe];
        let last = pe == p.len();
        if token == b">" && last {
            return j <= s.len();
        }
        let Some(rest) = s.get(j..) else {
            return false;
        };
        let se = if token == b"*" {
            j + token_end(rest, 0)
        } else if rest.starts_with(token) && matches!(rest.get(token.len()), None | Some(b'.')) {
            j + token.len()
        } else {
            return false;
        };
        if last {
            return se == s.len();
        }
        (i, j) = (pe + 1, se + 1);
    }
}

/// Where the token starting at `from` ends: at the next dot, or at the end.
fn token_end(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| c == b'.')
        .map_or(b.len(), |k| from + k)
}
