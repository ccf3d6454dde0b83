//! Uploads stream to disk as they arrive: a media message's file is never whole in memory,
//! its size is checked as it grows, and it is hashed on the way. A spooled file lives under
//! `<media>/.incoming/` until it is kept (renamed to its served name) or dropped (deleted);
//! what a killed server left there is deleted at the next start.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// First bytes kept in memory: enough for any format's header (JPEG dimensions may sit behind
/// a large EXIF block).
pub const HEAD_BYTES: usize = 256 * 1024;
/// Last bytes kept in memory: whether the file ends as its format says a whole file ends.
pub const TAIL_BYTES: usize = 1024;

/// A file being received.
pub struct Spool {
    file: tokio::io::BufWriter<tokio::fs::File>,
    up: Upload,
    hasher: Sha256,
    limit: u64,
}

/// A received file on disk, not served yet. Deleted when dropped unless kept.
pub struct Upload {
    /// The form part's name (`file`).
    pub field: String,
    /// The name the client gave the file, if any.
    pub file_name: Option<String>,
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
    pub head: Vec<u8>,
    pub tail: Vec<u8>,
    pub(super) path: Option<PathBuf>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("field", &self.field)
            .field("file_name", &self.file_name)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Why a spool stopped.
#[derive(Debug)]
pub enum SpoolError {
    TooLarge(u64),
    Io(std::io::Error),
}

impl Spool {
    pub(super) async fn create(
        dir: PathBuf,
        field: String,
        file_name: Option<String>,
        limit: u64,
    ) -> Result<Spool, SpoolError> {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(SpoolError::Io)?;
        let path = dir.join(format!("{}.part", crate::ids::random_hex(16)));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(SpoolError::Io)?;
        Ok(Spool {
            file: tokio::io::BufWriter::with_capacity(256 * 1024, file),
            up: Upload {
                field,
                file_name,
                size: 0,
                sha256: String::new(),
                head: Vec::new(),
                tail: Vec::new(),
                path: Some(path),
            },
            hasher: Sha256::new(),
            limit,
        })
    }

    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), SpoolError> {
        let size = self.up.size + chunk.len() as u64;
        if size > self.limit {
            return Err(SpoolError::TooLarge(self.limit));
        }
        self.up.size = size;
        self.hasher.update(chunk);
        if self.up.head.len() < HEAD_BYTES {
            let n = (HEAD_BYTES - self.up.head.len()).min(chunk.len());
            self.up.head.extend_from_slice(&chunk[..n]);
        }
        let tail = &mut self.up.tail;
        tail.extend_from_slice(&chunk[chunk.len().saturating_sub(TAIL_BYTES)..]);
        if tail.len() > TAIL_BYTES {
            tail.drain(..tail.len() - TAIL_BYTES);
        }
        self.file.write_all(chunk).await.map_err(SpoolError::Io)
    }

    /// The whole file is on disk (flushed and synced: a message that names it may be
    /// committed next).
    pub async fn finish(mut self) -> Result<Upload, SpoolError> {
        self.file.flush().await.map_err(SpoolError::Io)?;
        self.file
            .get_ref()
            .sync_data()
            .await
            .map_err(SpoolError::Io)?;
        let mut up = std::mem::replace(
            &mut self.up,
            Upload {
                field: String::new(),
                file_name: None,
                size: 0,
                sha256: String::new(),
                head: Vec::new(),
                tail: Vec::new(),
                path: None,
            },
        );
        up.sha256 = format!("{:x}", self.hasher.finalize_reset());
        Ok(up)
    }
}
