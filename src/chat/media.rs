//! The files of image, file, video and voice messages: each checked by its content against the
//! message type, then kept under `media/m/` (named by content hash) and described in `msgAtt`
//! by the server (see `attachments::media`).

use crate::app::App;
use crate::media::sniff::{self, FileType};
use crate::media::Upload;
use crate::wire::ApiError;

use super::attachments::{self, MediaClaims, StoredFile};

/// Folder of media message files under the media root.
const FOLDER: &str = "m";

/// What a checked upload is.
struct Checked {
    ty: FileType,
    dims: Option<(usize, usize)>,
}

fn check_one(kind: &str, up: &Upload) -> Result<Checked, ApiError> {
    if up.size == 0 {
        return Err(ApiError::bad("the file is empty"));
    }
    let not = |what: &str| ApiError::bad(format!("the file is not {what} (checked by content)"));
    match kind {
        "image" => {
            let i = sniff::image_parts(&up.head, &up.tail, up.size)
                .ok_or_else(|| not("an image: PNG, JPEG, GIF or WebP"))?;
            Ok(Checked {
                ty: FileType {
                    ext: i.ext,
                    mime: i.mime,
                },
                dims: Some((i.width, i.height)),
            })
        }
        "video" => Ok(Checked {
            ty: sniff::video(&up.head)
                .ok_or_else(|| not("a video: MP4, QuickTime, WebM, Matroska, 3GP or AVI"))?,
            dims: None,
        }),
        "voice" => Ok(Checked {
            ty: sniff::voice(&up.head)
                .ok_or_else(|| not("a recording: AAC/M4A, Ogg/Opus, MP3, WAV, AMR or WebM"))?,
            dims: None,
        }),
        _ => Ok(Checked {
            ty: sniff::any(&up.head),
            dims: None,
        }),
    }
}

/// Checks a `kind` message's uploads (how many, and what each is), keeps them, and returns the
/// message's `msgAtt`. Nothing is kept unless every check passes.
pub async fn store(
    app: &App,
    kind: &str,
    claims: &MediaClaims,
    uploads: Vec<Upload>,
    base: &str,
) -> Result<serde_json::Value, ApiError> {
    let most = if kind == "video" { 2 } else { 1 };
    if uploads.is_empty() {
        return Err(ApiError::bad(format!(
            "{kind} messages need the file as a multipart part named file"
        )));
    }
    if uploads.len() > most {
        return Err(ApiError::bad(format!(
            "{kind} messages carry at most {most} file part(s)"
        )));
    }
    let main = check_one(kind, &uploads[0])?;
    // A video's second file is its thumbnail: an image.
    let thumb = match uploads.get(1) {
        Some(up) => Some(check_one("image", up).map_err(|e| match e {
            ApiError::BadRequest(m) => ApiError::bad(format!("the video's thumbnail: {m}")),
            e => e,
        })?),
        None => None,
    };
    let mut stored = Vec::new();
    for (up, checked) in uploads.into_iter().zip(std::iter::once(main).chain(thumb)) {
        let name = if stored.is_empty() {
            claims.name.clone()
        } else {
            None
        }
        .or_else(|| up.file_name.as_deref().and_then(attachments::file_name))
        .unwrap_or_else(|| format!("{kind}.{}", checked.ty.ext));
        let (size, sha256) = (up.size, up.sha256.clone());
        let path = app.media.keep(up, FOLDER, checked.ty.ext).await?;
        stored.push(StoredFile {
            url: format!("{base}{path}"),
            name,
            mime: checked.ty.mime.to_string(),
            size,
            sha256,
            dims: checked.dims,
        });
    }
    Ok(attachments::media(kind, claims, &stored[0], stored.get(1)))
}
