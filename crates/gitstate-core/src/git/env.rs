//! The environment a `git` gitstate runs sees: none of the variables a hook running
//! gitstate may have set to point git at another repository. Entry point: [`git`].

/// Variables that point git at another repository; a hook running gitstate may have set
/// them, and a spawned `git` must not see them.
const HOOK_ENV: &[&str] = &[
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY",
    "GIT_DIR",
    "GIT_COMMON_DIR",
    "GIT_WORK_TREE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE",
    "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_SHALLOW_FILE",
];

/// A `git` command with [`HOOK_ENV`] removed from its environment, as gix and git do.
pub(super) fn git() -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    for var in HOOK_ENV {
        cmd.env_remove(var);
    }
    cmd
}
