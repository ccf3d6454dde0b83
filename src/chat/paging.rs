//! `?limit&page` arguments and the `{docs, page, limit, nextPage}` answer the SDK's paged lists
//! parse.

use serde::Serialize;
use serde_json::{json, Value};

use crate::wire::ApiError;

pub fn page_args(limit: Option<i64>, page: Option<i64>) -> Result<(i64, i64), ApiError> {
    let (limit, page) = (limit.unwrap_or(30), page.unwrap_or(1));
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad("limit must be between 1 and 100"));
    }
    if !(1..=100_000).contains(&page) {
        return Err(ApiError::bad("page must be between 1 and 100000"));
    }
    Ok((limit, page))
}

/// `{docs, page, limit, nextPage}` from one extra row fetched past the page.
pub fn paged<T: Serialize>(mut docs: Vec<T>, limit: i64, page: i64) -> Value {
    let more = docs.len() as i64 > limit;
    docs.truncate(limit as usize);
    json!({
        "docs": docs,
        "page": page,
        "limit": limit,
        "nextPage": if more { Value::from(page + 1) } else { Value::Null },
    })
}
