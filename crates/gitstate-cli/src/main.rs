//! The `gitstate` binary.

fn main() {
    std::process::exit(gitstate_cli::run());
}
