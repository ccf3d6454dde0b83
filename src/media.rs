//! Files users upload (profile pictures for now): checked by content, stored under the data dir
//! with server-made names (never a client-chosen path), and served at absolute URLs under the
//! public base URL, which is how V Chat clients load them.

use std::path::{Path, PathBuf};

use crate::wire::ApiError;

/// Where uploads live, and the URL path they are served under.
pub struct Media {
    root: PathBuf,
}

/// URL path prefix of stored files.
pub const URL_PREFIX: &str = "/media";

/// An image we accept, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub ext: &'static str,
    pub mime: &'static str,
    pub width: usize,
    pub height: usize,
}

/// What the bytes are, if they are an image clients can show (PNG, JPEG, GIF, WebP).
pub fn sniff_image(bytes: &[u8]) -> Option<ImageInfo> {
    use imagesize::ImageType;
    let (ext, mime) = match imagesize::image_type(bytes).ok()? {
        ImageType::Png => ("png", "image/png"),
        ImageType::Jpeg => ("jpg", "image/jpeg"),
        ImageType::Gif => ("gif", "image/gif"),
        ImageType::Webp => ("webp", "image/webp"),
        _ => return None,
    };
    let size = imagesize::blob_size(bytes).ok()?;
    if size.width == 0 || size.height == 0 || !complete(ext, bytes) {
        return None;
    }
    Some(ImageInfo {
        ext,
        mime,
        width: size.width,
        height: size.height,
    })
}

/// Whether the file ends as its format says a whole file ends (a header glued to other content,
/// or a file cut short, is refused).
fn complete(ext: &str, b: &[u8]) -> bool {
    match ext {
        "png" => b.ends_with(b"\0\0\0\0IEND\xaeB`\x82"),
        "jpg" => {
            let tail = &b[b.len().saturating_sub(1024)..];
            tail.windows(2).any(|w| w == [0xff, 0xd9])
        }
        "gif" => b.last() == Some(&0x3b),
        "webp" => {
            b.len() >= 12 && u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize + 8 == b.len()
        }
        _ => false,
    }
}

impl Media {
    pub fn new(data_dir: &Path) -> Media {
        Media {
            root: data_dir.join("media"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores an image (refusing anything that is not one) and returns its URL path
    /// (`/media/<folder>/<random>.<ext>`). Written to a temporary name and renamed, so a crash
    /// never leaves half a file under a served name.
    pub async fn save_image(&self, folder: &str, bytes: &[u8]) -> Result<String, ApiError> {
        if bytes.is_empty() {
            return Err(ApiError::bad("the image file is empty"));
        }
        let info = sniff_image(bytes).ok_or_else(|| {
            ApiError::bad("the file is not an image (PNG, JPEG, GIF or WebP, checked by content)")
        })?;
        let dir = self.root.join(folder);
        let name = format!("{}.{}", crate::ids::random_hex(16), info.ext);
        let tmp = dir.join(format!(".{name}.part"));
        let write = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(&tmp, bytes).await?;
            tokio::fs::rename(&tmp, dir.join(&name)).await
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            tracing::error!(error = %e, "cannot store an upload");
            return Err(ApiError::Internal("cannot store the file".into()));
        }
        Ok(format!("{URL_PREFIX}/{folder}/{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PNG's frame: header, IHDR, and the IEND trailer (the sniffing reads nothing else).
    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        b.extend(w.to_be_bytes());
        b.extend(h.to_be_bytes());
        b.extend([8, 6, 0, 0, 0, 0, 0, 0, 0]);
        b.extend(b"\0\0\0\0IEND\xaeB`\x82");
        b
    }

    #[test]
    fn sniffs_images_by_content() {
        let i = sniff_image(&png(2, 3)).unwrap();
        assert_eq!((i.ext, i.width, i.height), ("png", 2, 3));
        let mut gif = b"GIF89a\x05\0\x07\0".to_vec();
        gif.resize(32, 0);
        assert!(sniff_image(&gif).is_none(), "no trailer: cut short");
        gif.push(0x3b);
        assert_eq!(sniff_image(&gif).unwrap().mime, "image/gif");
        let mut glued = png(2, 3);
        glued.extend(b"<script>");
        assert!(sniff_image(&glued).is_none());
        assert!(sniff_image(b"<html>hello</html>").is_none());
        assert!(sniff_image(b"").is_none());
        assert!(sniff_image(&png(0, 3)).is_none());
    }
}
