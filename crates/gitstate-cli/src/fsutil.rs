//! File-system helpers: [`write_atomic`] (temp file, fsync, rename, fsync the directory).

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that readers — and a crash — see the old file or the new
/// one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
