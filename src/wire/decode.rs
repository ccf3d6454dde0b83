//! V Chat clients send every payload as a JSON *string*; other clients send objects. Accept both.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes an event payload that is either a JSON string holding JSON, or the JSON itself.
/// The error names what was wrong, for `v1OnException`.
pub fn decode<T: DeserializeOwned>(event: &str, payload: &Value) -> Result<T, String> {
    use serde_json::error::Category;
    match payload {
        // One pass from the text straight into `T` (this is every V Chat client's payload).
        Value::String(s) if super::nul::in_json(s.as_bytes()) => {
            Err(format!("{event}: {}", super::nul::REFUSED))
        }
        Value::String(s) => serde_json::from_str::<T>(s).map_err(|e| {
            // A shape error can hide a syntax error further on: say which one it is.
            let syntax = serde_json::from_str::<serde::de::IgnoredAny>(s).err();
            match (e.classify(), syntax) {
                (Category::Data, None) => format!("{event}: invalid payload ({e})"),
                (_, Some(syntax)) => format!("{event}: payload is not valid JSON ({syntax})"),
                (_, None) => format!("{event}: payload is not valid JSON ({e})"),
            }
        }),
        Value::Null => Err(format!("{event}: payload is missing")),
        other if super::nul::in_value(other) => Err(format!("{event}: {}", super::nul::REFUSED)),
        other => T::deserialize(other).map_err(|e| format!("{event}: invalid payload ({e})")),
    }
}

/// The payload as a JSON value, whichever way it came.
pub fn to_value(event: &str, payload: &Value) -> Result<Value, String> {
    decode::<Value>(event, payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct P {
        room_id: String,
    }

    #[test]
    fn string_or_object() {
        let a: P = decode("e", &Value::String(r#"{"roomId":"r"}"#.into())).unwrap();
        let b: P = decode("e", &serde_json::json!({"roomId":"r"})).unwrap();
        assert_eq!(a.room_id, b.room_id);
    }

    #[test]
    fn clear_errors() {
        assert!(decode::<P>("e", &Value::String("{".into()))
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(decode::<P>("e", &serde_json::json!({"roomId": 5}))
            .unwrap_err()
            .contains("invalid payload"));
        assert!(decode::<P>("e", &Value::Null)
            .unwrap_err()
            .contains("missing"));
        assert!(
            decode::<P>("e", &Value::String(r#"{"roomId":"a\u0000"}"#.into()))
                .unwrap_err()
                .contains("NUL")
        );
        assert!(decode::<P>("e", &serde_json::json!({"roomId": "a\u{0}"}))
            .unwrap_err()
            .contains("NUL"));
    }
}
