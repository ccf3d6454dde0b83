//! What a file is, from its bytes (never from the name or type the client claims).

/// An image clients can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub ext: &'static str,
    pub mime: &'static str,
    pub width: usize,
    pub height: usize,
}

/// A media file's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileType {
    pub ext: &'static str,
    pub mime: &'static str,
}

/// What the bytes are, if they are an image clients can show (PNG, JPEG, GIF, WebP).
pub fn image(bytes: &[u8]) -> Option<ImageInfo> {
    image_parts(bytes, bytes, bytes.len() as u64)
}

/// [`image`] from a file's first bytes, last bytes and length.
pub fn image_parts(head: &[u8], tail: &[u8], len: u64) -> Option<ImageInfo> {
    use imagesize::ImageType;
    let (ext, mime) = match imagesize::image_type(head).ok()? {
        ImageType::Png => ("png", "image/png"),
        ImageType::Jpeg => ("jpg", "image/jpeg"),
        ImageType::Gif => ("gif", "image/gif"),
        ImageType::Webp => ("webp", "image/webp"),
        _ => return None,
    };
    let size = imagesize::blob_size(head).ok()?;
    if size.width == 0 || size.height == 0 || !complete(ext, head, tail, len) {
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
fn complete(ext: &str, head: &[u8], tail: &[u8], len: u64) -> bool {
    match ext {
        "png" => tail.ends_with(b"\0\0\0\0IEND\xaeB`\x82"),
        "jpg" => {
            let t = &tail[tail.len().saturating_sub(1024)..];
            t.windows(2).any(|w| w == [0xff, 0xd9])
        }
        "gif" => tail.last() == Some(&0x3b),
        "webp" => {
            head.len() >= 12
                && u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64 + 8 == len
        }
        _ => false,
    }
}

/// A video (MP4, QuickTime, WebM, Matroska, 3GP, AVI).
pub fn video(head: &[u8]) -> Option<FileType> {
    let t = infer::get(head)?;
    (t.matcher_type() == infer::MatcherType::Video).then(|| FileType {
        ext: t.extension(),
        mime: t.mime_type(),
    })
}

/// A voice recording: audio, or the WebM/MP4 containers recorders write audio into.
pub fn voice(head: &[u8]) -> Option<FileType> {
    let t = infer::get(head)?;
    match (t.matcher_type(), t.mime_type()) {
        (infer::MatcherType::Audio, mime) => Some(FileType {
            ext: t.extension(),
            mime,
        }),
        (_, "video/webm") => Some(FileType {
            ext: "weba",
            mime: "audio/webm",
        }),
        (_, "video/mp4") => Some(FileType {
            ext: "m4a",
            mime: "audio/mp4",
        }),
        _ => None,
    }
}

/// Any file: its type when the bytes say, else opaque bytes (served as a download, never as a
/// page a browser would run).
pub fn any(head: &[u8]) -> FileType {
    match infer::get(head) {
        Some(t) if safe_to_serve(t.mime_type()) => FileType {
            ext: t.extension(),
            mime: t.mime_type(),
        },
        _ => FileType {
            ext: "bin",
            mime: "application/octet-stream",
        },
    }
}

/// Types a browser would render as a document (and run scripts in) are served as bytes.
fn safe_to_serve(mime: &str) -> bool {
    !(mime.contains("html") || mime.contains("xml") || mime.contains("svg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_bytes() {
        let mut mp4 = vec![0, 0, 0, 0x18];
        mp4.extend(b"ftypisom\0\0\x02\0isommp41");
        assert_eq!(video(&mp4).unwrap().mime, "video/mp4");
        assert_eq!(voice(&mp4).unwrap().mime, "audio/mp4");
        let webm = [0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x86, 0x81];
        assert_eq!(voice(&webm).map(|t| t.mime), Some("audio/webm"));
        assert!(video(b"just text").is_none());
        assert!(voice(b"just text").is_none());
        assert_eq!(
            any(b"<html><script>x</script>").mime,
            "application/octet-stream"
        );
        assert_eq!(any(b"<?xml version=\"1.0\"?><svg/>").ext, "bin");
        assert_eq!(any(b"%PDF-1.4 x").mime, "application/pdf");
    }
}
