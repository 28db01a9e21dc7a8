//! How deep a GraphQL query nests, counted the way schema-driven clients need: introspection
//! (`__schema`, `__type` and what is under them) has its own, larger bound, so the standard
//! introspection query that GraphiQL, Apollo and graphql-js's `getIntrospectionQuery()` send
//! (`ofType` nested 9 deep) passes while data queries keep a tight one. async-graphql's
//! `limit_depth` counts both together (async-graphql issue #1696).

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use std::collections::HashSet;

/// Data fields nested deeper than this are refused (function → versions → … is at most 4).
pub const MAX_DATA_DEPTH: usize = 8;
/// The standard introspection query nests 13 levels; leave room for variants of it.
pub const MAX_INTROSPECTION_DEPTH: usize = 20;

/// The refusal, if any: which bound the document exceeds.
pub fn check(document: &ExecutableDocument) -> Result<(), String> {
    let mut depth = Depth::default();
    for (_, operation) in document.operations.iter() {
        walk(document, &operation.node.selection_set.node, 1, false, &mut HashSet::new(), &mut depth);
    }
    if depth.data > MAX_DATA_DEPTH {
        return Err(format!(
            "Query is nested too deep: {} levels of fields, the limit is {MAX_DATA_DEPTH} (introspection is not counted)",
            depth.data
        ));
    }
    if depth.introspection > MAX_INTROSPECTION_DEPTH {
        return Err(format!(
            "Introspection query is nested too deep: {} levels, the limit is {MAX_INTROSPECTION_DEPTH}",
            depth.introspection
        ));
    }
    Ok(())
}

#[derive(Default)]
struct Depth {
    data: usize,
    introspection: usize,
}

/// Fields at `level` in `set`; `introspection` once under a `__` field. Fragments count as the
/// fields they spread; `seen` stops a cyclic spread (validation refuses those afterwards).
fn walk(
    document: &ExecutableDocument,
    set: &SelectionSet,
    level: usize,
    introspection: bool,
    seen: &mut HashSet<String>,
    depth: &mut Depth,
) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let inside = introspection || field.node.name.node.starts_with("__");
                if inside {
                    depth.introspection = depth.introspection.max(level);
                } else {
                    depth.data = depth.data.max(level);
                }
                walk(document, &field.node.selection_set.node, level + 1, inside, seen, depth);
            }
            Selection::InlineFragment(fragment) => {
                walk(document, &fragment.node.selection_set.node, level, introspection, seen, depth);
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.to_string();
                if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node)
                    && seen.insert(name.clone())
                {
                    walk(document, &fragment.node.selection_set.node, level, introspection, seen, depth);
                    seen.remove(&name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_text(query: &str) -> Result<(), String> {
        check(&async_graphql::parser::parse_query(query).expect("parses"))
    }

    /// graphql-js 16's `getIntrospectionQuery()`, as GraphiQL sends it.
    pub const INTROSPECTION: &str = r#"
    query IntrospectionQuery {
      __schema {
        queryType { name } mutationType { name } subscriptionType { name }
        types { ...FullType }
        directives { name description locations args { ...InputValue } }
      }
    }
    fragment FullType on __Type {
      kind name description
      fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
      inputFields { ...InputValue }
      interfaces { ...TypeRef }
      enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
      possibleTypes { ...TypeRef }
    }
    fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
    fragment TypeRef on __Type {
      kind name
      ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
        ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
    }"#;

    #[test]
    fn the_standard_introspection_query_passes() {
        assert_eq!(check_text(INTROSPECTION), Ok(()));
    }

    #[test]
    fn deep_data_queries_are_refused() {
        let deep = "{ a { b { c { d { e { f { g { h { i } } } } } } } } }";
        let error = check_text(deep).expect_err("nine levels");
        assert!(error.contains("too deep") && error.contains('9'), "{error}");
        assert_eq!(check_text("{ a { b { c { d { e { f { g { h } } } } } } } }"), Ok(()));
    }

    #[test]
    fn fragments_count_where_they_are_spread() {
        let query = "{ a { ...F } } fragment F on T { b { c { d { e { f { g { h { i } } } } } } } }";
        assert!(check_text(query).is_err());
    }

    #[test]
    fn cyclic_fragments_do_not_loop() {
        let query = "{ a { ...F } } fragment F on T { b { ...F } }";
        assert_eq!(check_text(query), Ok(()));
    }
}
