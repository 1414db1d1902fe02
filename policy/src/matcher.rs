//! The route matcher, compiled once at parse time: per host, a map from path to route, probed
//! for each whole-segment prefix of the request path from the longest to the shortest
//! (O(segments) lookups). It must not decide anything: it only answers "which route".

use std::collections::HashMap;

use crate::model::RouteId;

/// Per served host, the routes by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Matcher {
    hosts: HashMap<String, HostTable>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct HostTable {
    /// Paths of case-sensitive routes, as written.
    exact: HashMap<String, RouteId>,
    /// Paths of case-insensitive routes, Unicode lower-cased.
    folded: HashMap<String, RouteId>,
}

/// One route path to compile.
pub(crate) struct Entry<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub route: RouteId,
    pub case_insensitive: bool,
}

impl Matcher {
    /// Compiles entries. The parser has already refused two routes with the same path on the
    /// same host (compared case-insensitively), so no entry replaces another; if one would,
    /// the first is kept.
    pub(crate) fn build<'a>(entries: impl IntoIterator<Item = Entry<'a>>) -> Self {
        let mut hosts: HashMap<String, HostTable> = HashMap::new();
        for e in entries {
            let table = hosts.entry(e.host.to_ascii_lowercase()).or_default();
            let (map, key) = if e.case_insensitive {
                (&mut table.folded, e.path.to_lowercase())
            } else {
                (&mut table.exact, e.path.to_string())
            };
            map.entry(key).or_insert(e.route);
        }
        Self { hosts }
    }

    /// The longest matching route for a canonical path on `host`.
    pub(crate) fn lookup(&self, host: &str, path: &str) -> Option<RouteId> {
        let table = self.table(host)?;
        let lower = path.to_lowercase();
        prefixes(path, &lower).find_map(|(p, l)| table.probe(p, l))
    }

    /// Every matching route, longest first, without duplicates.
    pub(crate) fn candidates(&self, host: &str, path: &str) -> Vec<RouteId> {
        let Some(table) = self.table(host) else {
            return Vec::new();
        };
        let lower = path.to_lowercase();
        let mut found = Vec::new();
        for (p, l) in prefixes(path, &lower) {
            for id in [table.exact.get(p), table.folded.get(l)].into_iter().flatten() {
                if !found.contains(id) {
                    found.push(*id);
                }
            }
        }
        found
    }

    fn table(&self, host: &str) -> Option<&HostTable> {
        match self.hosts.get(host) {
            Some(t) => Some(t),
            None => self.hosts.get(&host.to_ascii_lowercase()),
        }
    }
}

impl HostTable {
    fn probe(&self, exact: &str, lower: &str) -> Option<RouteId> {
        self.exact.get(exact).or_else(|| self.folded.get(lower)).copied()
    }
}

/// The whole-segment prefixes of `path` (and, in step, of its lower-cased form), longest first,
/// ending with the root `/`. Lower-casing never creates nor removes a `/`, so the k-th slash
/// from the right is the same boundary in both strings.
fn prefixes<'p>(path: &'p str, lower: &'p str) -> impl Iterator<Item = (&'p str, &'p str)> {
    let whole = std::iter::once((path, lower));
    let cuts = path
        .rmatch_indices('/')
        .zip(lower.rmatch_indices('/'))
        .map(move |((i, _), (j, _))| {
            if i == 0 || j == 0 {
                ("/", "/")
            } else {
                (path.get(..i).unwrap_or("/"), lower.get(..j).unwrap_or("/"))
            }
        });
    whole.chain(cuts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_walk_segments() {
        let p: Vec<_> = prefixes("/a/B/", "/a/b/").map(|(p, _)| p).collect();
        assert_eq!(p, ["/a/B/", "/a/B", "/a", "/"]);
        let p: Vec<_> = prefixes("/", "/").map(|(p, _)| p).collect();
        assert_eq!(p, ["/", "/"]);
    }
}
