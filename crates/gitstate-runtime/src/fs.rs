//! File-system helpers: [`write_atomic`] (temp file, fsync, rename, fsync the directory)
//! for gitstate's own files (mode 0600), [`write_atomic_public`] for files others serve.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that readers — and a crash — see the old file or the new
/// one, never a part. The file is private to its owner (0600): state, not for others.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o600)
}

/// As [`write_atomic`], with the mode any new file gets (0666 less the umask: 0644 as a
/// rule), for what a web server running as another user serves (`stamp -o`).
pub fn write_atomic_public(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, 0o666)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The mode goes to open(2), which applies the umask.
    let mut tmp =
        tempfile::Builder::new().permissions(std::fs::Permissions::from_mode(mode)).tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}
