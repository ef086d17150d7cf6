//! The project's scripts say what they run: every test-name filter `scripts/fuzz` passes
//! to `cargo test` names a test that exists (a filter matching nothing runs nothing, and
//! says nothing).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The filters after `--` in `scripts/fuzz`'s `cargo test` line.
fn fuzz_filters() -> Vec<String> {
    let script = std::fs::read_to_string(root().join("scripts/fuzz")).unwrap();
    let start = script.find("cargo test").expect("scripts/fuzz runs cargo test");
    let after = &script[start..];
    let args = &after[after.find(" -- ").expect("filters after --") + 4..];
    args.split_whitespace().filter(|w| *w != "\\").map(str::to_owned).collect()
}

/// Every `fn name` of the Rust sources under `dir` (tests are functions too).
fn functions(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && name != "target" && !name.starts_with('.') {
            functions(&path, out);
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for piece in text.split("fn ").skip(1) {
                let ident: String = piece.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.push(ident);
            }
        }
    }
}

#[test]
fn every_filter_of_scripts_fuzz_names_a_test() {
    let filters = fuzz_filters();
    assert!(filters.len() >= 5, "{filters:?}");
    let mut names = Vec::new();
    for dir in ["crates", "tests", "src", "benches"] {
        functions(&root().join(dir), &mut names);
    }
    let missing: Vec<&String> =
        filters.iter().filter(|f| !names.iter().any(|n| n.contains(f.as_str()))).collect();
    assert!(missing.is_empty(), "scripts/fuzz filters on tests that do not exist: {missing:?}");
}
