//! The refs of a repository gix cannot read the refs of (Git's newer reftable format),
//! listed by `git for-each-ref`. Entry point: `LocalRepo::git_refs`, for
//! [`super::resolve`] and [`super::list`].

use gix::ObjectId;

use super::LocalRepo;
use crate::error::ExpectedError;

impl LocalRepo {
    /// Every ref under `prefix` with the object it points at, peeled once (annotated tags),
    /// as `git for-each-ref` lists it: for repositories gix cannot read the refs of.
    pub(super) fn git_refs(&self, prefix: &str) -> Result<Vec<(String, ObjectId)>, ExpectedError> {
        let mut cmd = crate::git::env::git();
        cmd.arg("-C").arg(&self.path).args([
            "for-each-ref",
            "--format=%(refname) %(objectname) %(*objectname)",
            "--",
            prefix,
        ]);
        let err = |message: String| ExpectedError::History {
            repo: self.display(),
            message: format!("listing refs with git for-each-ref (reftable): {message}"),
        };
        let out = cmd.output().map_err(|e| err(e.to_string()))?;
        if !out.status.success() {
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut refs = Vec::new();
        for line in text.lines() {
            let mut parts = line.split(' ');
            let (Some(name), Some(id), peeled) = (parts.next(), parts.next(), parts.next()) else { continue };
            let id = peeled.filter(|p| !p.is_empty()).unwrap_or(id);
            match ObjectId::from_hex(id.as_bytes()) {
                Ok(id) => refs.push((name.to_owned(), id)),
                Err(_) => tracing::warn!(line, "skipping a line git for-each-ref gave that names no object"),
            }
        }
        Ok(refs)
    }
}
