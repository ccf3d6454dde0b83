//! PostgreSQL text cannot hold U+0000 and no V Chat client sends it, so the server refuses it in
//! every string a client gives it (bodies, form fields, URLs, socket payloads, token claims), on
//! both stores alike: a clear 400 / `v1OnException` instead of a storage error on one store and a
//! stored NUL on the other.

use serde_json::Value;

pub const REFUSED: &str = "text must not contain the NUL character (U+0000)";

/// Any string (key or value) in `v` holds NUL.
pub fn in_value(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(in_value),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || in_value(v)),
        _ => false,
    }
}

/// JSON text whose strings hold NUL. In valid JSON a NUL can only be written as the escape
/// `\u0000`, so text without that escape (every normal payload) costs one substring scan.
pub fn in_json(text: &[u8]) -> bool {
    if !text
        .split(|&b| b == b'\\')
        .skip(1)
        .any(|after| after.starts_with(b"u0000"))
    {
        return false;
    }
    // The escape may itself be escaped text (`\\u0000`); only a parse tells. Invalid JSON is
    // left to the caller's own parse to report.
    serde_json::from_slice::<Value>(text).is_ok_and(|v| in_value(&v))
}

/// A URL (path and query) that decodes to a NUL.
pub fn in_url(path_and_query: &str) -> bool {
    path_and_query.contains("%00")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_nul_only_where_it_is() {
        assert!(in_json(br#"{"content":"a\u0000b"}"#));
        assert!(in_json(br#"{"a\u0000":1}"#));
        assert!(in_json(br#"[[{"x":["\u0000"]}]]"#));
        assert!(!in_json(br#"{"content":"a\\u0000b"}"#));
        assert!(!in_json(br#"{"content":"hello"}"#));
        assert!(!in_json(br#"{"broken":"\u0000"#));
        assert!(in_value(&json!({"k": ["x", "\u{0}"]})));
        assert!(!in_value(&json!({"k": ["x", 0, null]})));
        assert!(in_url("/api/v2/channel/%00/message"));
        assert!(in_url("/api/v2/profile/users?search=a%00"));
        assert!(!in_url("/api/v2/profile/users?search=%2500"));
    }
}
