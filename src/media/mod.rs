//! Files users upload (profile pictures, media messages): checked by content, stored under the
//! data dir with server-made names (never a client-chosen path), and served at absolute URLs
//! under the public base URL, which is how V Chat clients load them.

pub mod serve;
pub mod sniff;
pub mod spool;
pub mod store;

use std::path::{Path, PathBuf};

use object_store::path::Path as Key;

pub use spool::{Spool, SpoolError, Upload};
pub use store::{Backing, Location};

use crate::wire::ApiError;

/// Where uploads arrive, where they are kept, and the URL path they are served under.
pub struct Media {
    backing: Backing,
    /// Spooled uploads: inside the directory store (kept by a rename), else under the data dir.
    incoming: PathBuf,
}

/// URL path prefix of stored files.
pub const URL_PREFIX: &str = "/media";

pub use sniff::ImageInfo;

/// What the bytes are, if they are an image clients can show (PNG, JPEG, GIF, WebP).
pub fn sniff_image(bytes: &[u8]) -> Option<ImageInfo> {
    sniff::image(bytes)
}

impl Media {
    /// `location`: `VCHAT_MEDIA_STORE`, else `<data dir>/media`.
    pub fn open(data_dir: &Path, location: Option<&str>) -> Result<Media, String> {
        let location = match location {
            Some(url) => Location::parse(url)?,
            None => Location::Dir(data_dir.join("media")),
        };
        let backing = Backing::open(&location)?;
        let incoming = match &location {
            Location::Dir(root) => root.join(".incoming"),
            Location::Bucket { .. } => data_dir.join("media").join(".incoming"),
        };
        Ok(Media { backing, incoming })
    }

    pub fn backing(&self) -> &Backing {
        &self.backing
    }

    /// Deletes what uploads cut off by a kill left behind (call at start, before serving).
    pub fn sweep_incoming(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.incoming) {
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
        Spool::create(self.incoming.clone(), field, file_name, limit).await
    }

    /// Serves a received file: keeps it under `folder` with a name made of its hash and `ext`,
    /// and returns its URL path. The same content uploaded twice is one file.
    pub async fn keep(&self, mut up: Upload, folder: &str, ext: &str) -> Result<String, ApiError> {
        let name = format!("{folder}/{}.{ext}", up.sha256);
        let local = up.path.take().expect("an upload not kept yet");
        let kept = self
            .backing
            .keep_file(&local, &Key::from(name.as_str()))
            .await;
        // Gone after a rename; a bucket has its copy (or failed): either way not needed here.
        let _ = tokio::fs::remove_file(&local).await;
        kept.map(|()| format!("{URL_PREFIX}/{name}"))
    }

    /// Stores an image (refusing anything that is not one) and returns its URL path
    /// (`/media/<folder>/<random>.<ext>`). Never half a file under a served name.
    pub async fn save_image(&self, folder: &str, bytes: &[u8]) -> Result<String, ApiError> {
        if bytes.is_empty() {
            return Err(ApiError::bad("the image file is empty"));
        }
        let info = sniff_image(bytes).ok_or_else(|| {
            ApiError::bad("the file is not an image (PNG, JPEG, GIF or WebP, checked by content)")
        })?;
        let name = format!("{folder}/{}.{}", crate::ids::random_hex(16), info.ext);
        self.backing
            .put(&Key::from(name.as_str()), bytes.to_vec())
            .await?;
        Ok(format!("{URL_PREFIX}/{name}"))
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
