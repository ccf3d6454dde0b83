//! What a client may put in `msgAtt`, per message type (protocol §5.1). Receivers parse these
//! maps with strict Dart code, so an attachment of the wrong shape would crash every receiving
//! app: each is checked, and rebuilt from the keys its type has (anything else is dropped).
//! `info` and `call` attachments are the server's alone.

use serde_json::{Map, Value};

use crate::wire::ApiError;

/// Longest text in a link preview field.
const MAX_PREVIEW_FIELD: usize = 2048;
/// Largest custom attachment, as JSON text.
pub const MAX_CUSTOM_BYTES: usize = 32 * 1024;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad(msg.into())
}

/// The stored `msgAtt` for a client message of `kind`, from what it sent.
pub fn check(kind: &str, given: Option<Value>) -> Result<Option<Value>, ApiError> {
    match kind {
        "text" => match given {
            None => Ok(None),
            Some(_) => Err(bad("text messages carry no attachment")),
        },
        "location" => location(given.ok_or_else(|| {
            bad("location messages need an attachment {lat, long, linkPreviewData}")
        })?)
        .map(Some),
        "custom" => custom(given).map(Some),
        "info" | "call" => Err(bad(format!(
            "{kind} messages are written by the server only"
        ))),
        other => Err(bad(format!("unknown messageType {other:?}"))),
    }
}

fn number(
    m: &Map<String, Value>,
    key: &str,
    range: std::ops::RangeInclusive<f64>,
) -> Result<f64, ApiError> {
    match m.get(key).and_then(Value::as_f64) {
        Some(v) if range.contains(&v) => Ok(v),
        _ => Err(bad(format!(
            "location attachment: {key} must be a number between {} and {}",
            range.start(),
            range.end()
        ))),
    }
}

/// `{lat, long, linkPreviewData: {image?, title?, desc?, link?}}`.
fn location(v: Value) -> Result<Value, ApiError> {
    let Value::Object(m) = v else {
        return Err(bad("location attachment must be an object"));
    };
    let lat = number(&m, "lat", -90.0..=90.0)?;
    let long = number(&m, "long", -180.0..=180.0)?;
    let mut preview = Map::new();
    match m.get("linkPreviewData") {
        None | Some(Value::Null) => {}
        Some(Value::Object(p)) => {
            for key in ["image", "title", "desc", "link"] {
                match p.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) if s.len() <= MAX_PREVIEW_FIELD => {
                        preview.insert(key.into(), Value::String(s.clone()));
                    }
                    Some(_) => {
                        return Err(bad(format!(
                            "location attachment: linkPreviewData.{key} must be a string of at most {MAX_PREVIEW_FIELD} bytes"
                        )))
                    }
                }
            }
        }
        Some(_) => {
            return Err(bad(
                "location attachment: linkPreviewData must be an object",
            ))
        }
    }
    let mut out = Map::new();
    out.insert("lat".into(), lat.into());
    out.insert("long".into(), long.into());
    out.insert("linkPreviewData".into(), Value::Object(preview));
    Ok(Value::Object(out))
}

/// `{data: {...}}`; the SDK sends custom messages without one, so none means `{data: {}}`.
fn custom(v: Option<Value>) -> Result<Value, ApiError> {
    let data = match v {
        None => Value::Object(Map::new()),
        Some(Value::Object(mut m)) => match m.remove("data") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(d @ Value::Object(_)) => d,
            Some(_) => return Err(bad("custom attachment: data must be an object")),
        },
        Some(_) => return Err(bad("custom attachment must be an object {data: {...}}")),
    };
    if data.to_string().len() > MAX_CUSTOM_BYTES {
        return Err(bad(format!(
            "custom attachment: data is larger than {MAX_CUSTOM_BYTES} bytes"
        )));
    }
    let mut out = Map::new();
    out.insert("data".into(), data);
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_only_types_are_refused() {
        for kind in ["info", "call"] {
            assert!(check(kind, Some(json!({"action": "kick"}))).is_err());
        }
    }

    #[test]
    fn location_is_checked_and_rebuilt() {
        let ok = check(
            "location",
            Some(json!({"lat": 30.5, "long": -31, "linkPreviewData": {"title": "x", "evil": 1}, "x": 2})),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            ok,
            json!({"lat": 30.5, "long": -31.0, "linkPreviewData": {"title": "x"}})
        );
        for bad in [
            json!({"lat": "30", "long": 1}),
            json!({"lat": 91, "long": 1}),
            json!({"lat": 1}),
            json!({"lat": 1, "long": 1, "linkPreviewData": "x"}),
            json!({"lat": 1, "long": 1, "linkPreviewData": {"title": 5}}),
            json!([1, 2]),
        ] {
            assert!(check("location", Some(bad.clone())).is_err(), "{bad}");
        }
        assert!(check("location", None).is_err());
    }

    #[test]
    fn custom_always_has_a_data_map() {
        assert_eq!(check("custom", None).unwrap(), Some(json!({"data": {}})));
        assert_eq!(
            check("custom", Some(json!({"data": {"k": 1}, "x": 1}))).unwrap(),
            Some(json!({"data": {"k": 1}}))
        );
        assert!(check("custom", Some(json!({"data": [1]}))).is_err());
        assert!(check("custom", Some(json!("x"))).is_err());
        let huge = "x".repeat(MAX_CUSTOM_BYTES);
        assert!(check("custom", Some(json!({"data": {"k": huge}}))).is_err());
    }

    #[test]
    fn text_has_none() {
        assert_eq!(check("text", None).unwrap(), None);
        assert!(check("text", Some(json!({"a": 1}))).is_err());
    }
}
