//! Files users upload (profile pictures, media messages): checked by content, stored under the
//! data dir with server-made names (never a client-chosen path), and served at absolute URLs
//! under the public base URL, which is how V Chat clients load them.

pub mod sniff;
pub mod spool;

use std::path::{Path, PathBuf};

pub use spool::{Spool, SpoolError, Upload};

use crate::wire::ApiError;

/// Where uploads live, and the URL path they are served under.
pub struct Media {
    root: PathBuf,
}

/// URL path prefix of stored files.
pub const URL_PREFIX: &str = "/media";

pub use sniff::ImageInfo;

/// What the bytes are, if they are an image clients can show (PNG, JPEG, GIF, WebP).
pub fn sniff_image(bytes: &[u8]) -> Option<ImageInfo> {
    sniff::image(bytes)
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

    fn incoming(&self) -> PathBuf {
        self.root.join(".incoming")
    }

    /// Deletes what uploads cut off by a kill left behind (call at start, before serving).
    pub fn sweep_incoming(&self) {
        let dir = self.incoming();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Starts receiving a file part of at most `limit` bytes.
    pub async fn spool(
        &self,
        field: String,
        file_name: Option<String>,
        limit: u64,
    ) -> Result<Spool, SpoolError> {
        Spool::create(self.incoming(), field, file_name, limit).await
    }

    /// Serves a received file: moves it under `folder` with a name made of its hash and `ext`,
    /// and returns its URL path. The same content uploaded twice is one file.
    pub async fn keep(&self, mut up: Upload, folder: &str, ext: &str) -> Result<String, ApiError> {
        let dir = self.root.join(folder);
        let name = format!("{}.{ext}", up.sha256);
        let from = up.path.take().expect("an upload not kept yet");
        let moved = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::rename(&from, dir.join(&name)).await
        };
        if let Err(e) = moved.await {
            let _ = tokio::fs::remove_file(&from).await;
            tracing::error!(error = %e, "cannot store an upload");
            return Err(ApiError::Internal("cannot store the file".into()));
        }
        Ok(format!("{URL_PREFIX}/{folder}/{name}"))
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
