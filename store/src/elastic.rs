//! The query as Elasticsearch's query DSL (written by the ES translation work).

use crate::query::{Query, QueryError};

/// The `_search` body for `q`.
pub fn search_body(q: &Query) -> Result<serde_json::Value, QueryError> {
    let _ = q;
    Err(QueryError {
        field: "elasticsearch",
        reason: "not translated yet".into(),
    })
}
