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

/// The types whose message carries uploaded files.
pub fn is_media(kind: &str) -> bool {
    matches!(kind, "image" | "file" | "video" | "voice")
}

/// Longest file name kept in `msgAtt.name`.
const MAX_NAME_CHARS: usize = 255;
/// Longest duration a voice note or video may claim: a day, in ms.
const MAX_DURATION_MS: u64 = 24 * 3600 * 1000;

/// What a media message's client attachment may tell the server (the rest of that map is the
/// sender's local file: paths, bytes, its own idea of the size and type, all dropped).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MediaClaims {
    pub name: Option<String>,
    /// Voice (required) and video (optional), in ms.
    pub duration: Option<u64>,
}

/// Checks a media message's client attachment (before any file is kept).
pub fn media_claims(kind: &str, given: Option<Value>) -> Result<MediaClaims, ApiError> {
    let m = match given {
        None => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(bad(format!("{kind} attachment must be an object"))),
    };
    let name = match m.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => file_name(s),
        Some(_) => return Err(bad(format!("{kind} attachment: name must be a string"))),
    };
    let duration = match m.get("duration") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f.round() as u64)
        }) {
            Some(ms) if ms <= MAX_DURATION_MS => Some(ms),
            _ => {
                return Err(bad(format!(
                    "{kind} attachment: duration must be a number of milliseconds (0 to {MAX_DURATION_MS})"
                )))
            }
        },
    };
    if kind == "voice" && duration.is_none() {
        return Err(bad(
            "voice attachment: duration (int, milliseconds) is required",
        ));
    }
    Ok(MediaClaims {
        name,
        duration: if matches!(kind, "voice" | "video") {
            duration
        } else {
            None
        },
    })
}

/// A file name as shown to receivers: its last path component, without control characters, at
/// most [`MAX_NAME_CHARS`]; `None` when nothing is left.
pub fn file_name(given: &str) -> Option<String> {
    let last = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim().to_string();
    (!clean.is_empty() && clean != "." && clean != "..").then_some(clean)
}

/// A file the server stored, as a `msgAtt` file map describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    /// Absolute URL.
    pub url: String,
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub sha256: String,
    /// Images: width and height in pixels.
    pub dims: Option<(usize, usize)>,
}

impl StoredFile {
    fn map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("name".into(), self.name.clone().into());
        m.insert("url".into(), self.url.clone().into());
        m.insert("mimeType".into(), self.mime.clone().into());
        m.insert("fileSize".into(), self.size.into());
        m.insert("fileHash".into(), self.sha256.clone().into());
        if let Some((w, h)) = self.dims {
            m.insert("width".into(), w.into());
            m.insert("height".into(), h.into());
        }
        m
    }
}

/// The `msgAtt` of a media message, built by the server from what it stored.
pub fn media(
    kind: &str,
    claims: &MediaClaims,
    file: &StoredFile,
    thumb: Option<&StoredFile>,
) -> Value {
    let mut m = file.map();
    if let Some(d) = claims.duration {
        m.insert("duration".into(), d.into());
    }
    if let (Some(t), "video") = (thumb, kind) {
        m.insert("thumbImage".into(), Value::Object(t.map()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    #[test]
    fn media_claims_keep_only_name_and_duration() {
        let c = media_claims(
            "voice",
            Some(
                json!({"name": "/data/user/0/rec.m4a", "filePath": "/data/x", "bytes": [1, 2],
                        "duration": 1234, "fileSize": 99, "mimeType": "text/html"}),
            ),
        )
        .unwrap();
        assert_eq!(
            c,
            MediaClaims {
                name: Some("rec.m4a".into()),
                duration: Some(1234)
            }
        );
        assert!(media_claims("voice", Some(json!({"name": "a"}))).is_err());
        assert!(media_claims("voice", Some(json!({"duration": -1}))).is_err());
        assert!(media_claims("voice", Some(json!({"duration": "5"}))).is_err());
        assert!(media_claims("image", Some(json!([1]))).is_err());
        assert_eq!(media_claims("image", None).unwrap(), MediaClaims::default());
        assert_eq!(
            media_claims("image", Some(json!({"duration": 5})))
                .unwrap()
                .duration,
            None
        );
        assert_eq!(file_name("C:\\pics\\a.png").as_deref(), Some("a.png"));
        assert_eq!(file_name("../.."), None);
        assert_eq!(file_name("a\u{7}b"), Some("ab".into()));
    }

    #[test]
    fn media_maps_carry_server_facts_only() {
        let f = StoredFile {
            url: "http://h/media/m/ab.mp4".into(),
            name: "clip.mp4".into(),
            mime: "video/mp4".into(),
            size: 10,
            sha256: "ab".into(),
            dims: None,
        };
        let t = StoredFile {
            dims: Some((4, 3)),
            mime: "image/png".into(),
            ..f.clone()
        };
        let v = media(
            "video",
            &MediaClaims {
                name: None,
                duration: Some(9),
            },
            &f,
            Some(&t),
        );
        assert_eq!(v["url"], "http://h/media/m/ab.mp4");
        assert_eq!(v["duration"], 9);
        assert_eq!(v["thumbImage"]["width"], 4);
        assert!(v.get("filePath").is_none());
    }

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
