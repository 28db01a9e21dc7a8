//! Route patterns and the [`RouteTable`] the data plane matches every request against.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The wildcard suffix: `/hello/...` matches `/hello` and everything below it.
const WILDCARD: &str = "/...";
const MAX_ROUTE_LEN: usize = 1024;
/// Paths the data plane answers itself (`/_faas/invocations/{id}`), never routed to a function.
pub const RESERVED: &str = "/_faas";

/// One parsed route: an exact path, or a prefix that matches a whole subtree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoutePattern {
    Exact(String),
    /// The prefix without the trailing `/...` (empty for the catch-all `/...`).
    Prefix(String),
}

impl RoutePattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| Err(format!("invalid route `{text}`: {why}"));
        if !text.starts_with('/') {
            return bad("it must start with `/`");
        }
        if text == RESERVED || text.starts_with(&format!("{RESERVED}/")) {
            return bad("`/_faas/` is the platform's own (async invocation status)");
        }
        if text.len() > MAX_ROUTE_LEN {
            return bad("it is longer than 1024 bytes");
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
            return bad("it may not contain whitespace, `?` or `#`");
        }
        let (base, wildcard) = match text.strip_suffix(WILDCARD) {
            Some(base) => (base, true),
            None => (text, false),
        };
        if base.contains("...") {
            return bad("`...` is only allowed as the last segment, as in `/hello/...`");
        }
        if base.contains("//") {
            return bad("it contains an empty segment `//`");
        }
        if base.len() > 1 && base.ends_with('/') {
            return bad("drop the trailing `/` (or use `/...` to match a subtree)");
        }
        Ok(if wildcard { Self::Prefix(base.to_owned()) } else { Self::Exact(base.to_owned()) })
    }

    /// A path this route matches: the exact path, or the prefix itself (`/` for `/...`).
    pub fn example_path(&self) -> String {
        match self {
            Self::Exact(path) => path.clone(),
            Self::Prefix(prefix) if prefix.is_empty() => "/".to_owned(),
            Self::Prefix(prefix) => prefix.clone(),
        }
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == exact,
            Self::Prefix(prefix) => {
                path.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }
        }
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(path) => f.write_str(path),
            Self::Prefix(prefix) => write!(f, "{prefix}{WILDCARD}"),
        }
    }
}

/// Immutable snapshot of every active route; the registry swaps in a new one on each change, so
/// lookups never take a lock.
pub struct RouteTable<T> {
    exact: HashMap<String, Arc<T>>,
    /// Longest prefix first, so the most specific wildcard wins.
    prefixes: Vec<(RoutePattern, Arc<T>)>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self { exact: HashMap::new(), prefixes: Vec::new() }
    }
}

impl<T> RouteTable<T> {
    pub fn new(routes: impl IntoIterator<Item = (RoutePattern, Arc<T>)>) -> Self {
        let mut table = Self::default();
        for (pattern, target) in routes {
            match pattern {
                RoutePattern::Exact(path) => {
                    table.exact.insert(path, target);
                }
                prefix => table.prefixes.push((prefix, target)),
            }
        }
        table.prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.to_string().len()));
        table
    }

    /// An exact route beats a wildcard; among wildcards the longest prefix wins.
    pub fn lookup(&self, path: &str) -> Option<&Arc<T>> {
        self.exact.get(path).or_else(|| self.prefixes.iter().find(|(p, _)| p.matches(path)).map(|(_, t)| t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_exact_and_wildcard_routes() {
        assert_eq!(RoutePattern::parse("/hello"), Ok(RoutePattern::Exact("/hello".into())));
        assert_eq!(RoutePattern::parse("/hello/..."), Ok(RoutePattern::Prefix("/hello".into())));
        assert_eq!(RoutePattern::parse("/..."), Ok(RoutePattern::Prefix(String::new())));
        assert_eq!(RoutePattern::parse("/hello/...").unwrap().to_string(), "/hello/...");
    }

    #[test]
    fn parse_rejects_bad_routes_with_a_reason() {
        for bad in ["hello", "/a b", "/a?x=1", "/a/.../b", "/a//b", "/a/", "/a...", ""] {
            let err = RoutePattern::parse(bad).unwrap_err();
            assert!(err.starts_with("invalid route"), "{bad}: {err}");
        }
    }

    #[test]
    fn lookup_prefers_exact_then_longest_prefix() {
        let route = |s: &str, v: u32| (RoutePattern::parse(s).unwrap(), Arc::new(v));
        let table = RouteTable::new([route("/...", 0), route("/a/...", 1), route("/a/b/...", 2), route("/a/b", 3)]);
        let at = |p: &str| table.lookup(p).map(|v| **v);
        assert_eq!(at("/a/b"), Some(3));
        assert_eq!(at("/a/b/c"), Some(2));
        assert_eq!(at("/a"), Some(1));
        assert_eq!(at("/a/x"), Some(1));
        assert_eq!(at("/ab"), Some(0));
        assert_eq!(at("/"), Some(0));
        let table = RouteTable::new([route("/hello/...", 1)]);
        assert_eq!(table.lookup("/hellox").map(|v| **v), None);
        assert_eq!(table.lookup("/hello").map(|v| **v), Some(1));
    }
}
