//! How Git names things, shared by [`super::LocalRepo`] and [`super::RemoteRepo`]: the
//! full ref names a short name stands for, and a gix object id as a [`CommitId`].

use crate::commit::CommitId;

/// The full names git tries for `name` (gitrevisions(7)), valid ones only.
pub(super) fn candidates(name: &str) -> Vec<String> {
    let list = if name.starts_with("refs/") {
        vec![name.to_owned()]
    } else {
        vec![
            format!("refs/{name}"),
            format!("refs/tags/{name}"),
            format!("refs/heads/{name}"),
            format!("refs/remotes/{name}"),
            format!("refs/remotes/{name}/HEAD"),
        ]
    };
    list.into_iter()
        .filter(|c| <&gix::refs::FullNameRef>::try_from(c.as_str()).is_ok() && !c.contains(['*', '?', '[']))
        .collect()
}

/// A gix object id (SHA-1, so always valid hex of the right length) as a [`CommitId`].
pub(crate) fn to_commit_id(id: impl AsRef<gix::oid>) -> CommitId {
    let mut buf = [0u8; 64];
    let hex = id.as_ref().hex_to_buf(&mut buf);
    CommitId::from_trusted_hex(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_expand_like_git() {
        assert_eq!(candidates("refs/heads/environments/prod"), ["refs/heads/environments/prod"]);
        assert_eq!(candidates("environments/prod")[2], "refs/heads/environments/prod");
        assert!(candidates("a..b").is_empty());
        assert!(candidates("x*").is_empty());
    }
}
