//! The documentation stays true (SPEC §21): the README and the book in `docs/src` are
//! read here and held against the program itself — every configuration key the loader
//! accepts is in the reference (the keys are asked of the loader, by offering it one it
//! does not know), every subcommand and flag of `--help` is in the command reference,
//! every troubleshooting heading quotes text the code can print and the common failures
//! are all there, every relative link resolves, every TOML snippet passes the loader's
//! schema, every `gitstate …` command line names a real subcommand and real flags, and
//! the demo's transcript is what the demo prints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::*;
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use regex::Regex;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn book() -> PathBuf {
    root().join("docs/src")
}

/// The README and every page of the book.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&book(), &mut out);
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// A fenced code block: its info string, its text and the line its fence opens on.
struct Block {
    info: String,
    text: String,
    line: usize,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (ev, range) in Parser::new_ext(text, Options::empty()).into_offset_iter() {
        match ev {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                open = Some(Block {
                    info: info.to_string(),
                    text: String::new(),
                    line: line_of(text, range.start),
                })
            }
            Event::Text(t) => {
                if let Some(b) = open.as_mut() {
                    b.text.push_str(&t)
                }
            }
            Event::End(TagEnd::CodeBlock) => out.extend(open.take()),
            _ => {}
        }
    }
    out
}

/// A heading: its level, its text (code spans without their backticks), the code spans
/// alone, and the Markdown from it to the next heading (`body`) and to the next heading
/// of its level or above (`section`).
struct Heading {
    level: u32,
    text: String,
    code: Vec<String>,
    line: usize,
    body: String,
    section: String,
}

fn headings(text: &str) -> Vec<Heading> {
    let mut raw: Vec<(u32, String, Vec<String>, usize, usize)> = Vec::new(); // level, text, code, start, end
    let mut open: Option<(u32, String, Vec<String>, usize)> = None;
    for (ev, range) in Parser::new_ext(text, Options::empty()).into_offset_iter() {
        match ev {
            Event::Start(Tag::Heading { level, .. }) => {
                let level = match level {
                    HeadingLevel::H1 => 1,
                    HeadingLevel::H2 => 2,
                    HeadingLevel::H3 => 3,
                    HeadingLevel::H4 => 4,
                    HeadingLevel::H5 => 5,
                    HeadingLevel::H6 => 6,
                };
                open = Some((level, String::new(), Vec::new(), range.start));
            }
            Event::Text(t) => {
                if let Some(h) = open.as_mut() {
                    h.1.push_str(&t)
                }
            }
            Event::Code(c) => {
                if let Some(h) = open.as_mut() {
                    h.1.push_str(&c);
                    h.2.push(c.to_string());
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, t, code, start)) = open.take() {
                    raw.push((level, t, code, start, range.end));
                }
            }
            _ => {}
        }
    }
    raw.iter()
        .enumerate()
        .map(|(i, (level, t, code, start, end))| {
            let next = raw.get(i + 1).map_or(text.len(), |h| h.3);
            let next_up = raw[i + 1..].iter().find(|h| h.0 <= *level).map_or(text.len(), |h| h.3);
            Heading {
                level: *level,
                text: t.clone(),
                code: code.clone(),
                line: line_of(text, *start),
                body: text[*end..next].to_owned(),
                section: text[*end..next_up].to_owned(),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Structure: a short README, a book whose summary lists every chapter.

#[test]
fn the_readme_is_short_and_the_summary_lists_every_chapter() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines; SPEC §21 allows 250: move the detail into the book");
    assert!(root().join("docs/book.toml").is_file(), "docs/book.toml is missing");

    let summary_path = book().join("SUMMARY.md");
    let summary = read(&summary_path);
    let mut linked = BTreeSet::new();
    for ev in Parser::new(&summary) {
        match ev {
            // `[Part]()`: a part's title, no page of its own.
            Event::Start(Tag::Link { dest_url, .. }) if !dest_url.is_empty() => {
                linked.insert(book().join(dest_url.as_ref()));
            }
            _ => {}
        }
    }
    let chapters: BTreeSet<PathBuf> =
        pages().into_iter().filter(|p| p.starts_with(book()) && *p != summary_path).collect();
    let unlisted: Vec<_> = chapters.difference(&linked).map(|p| rel(p)).collect();
    assert!(unlisted.is_empty(), "chapters not in SUMMARY.md: {unlisted:?}");
    let missing: Vec<_> = linked.difference(&chapters).map(|p| rel(p)).collect();
    assert!(missing.is_empty(), "SUMMARY.md links to pages that do not exist: {missing:?}");
}

#[test]
fn every_relative_link_and_image_resolves() {
    let mut broken = Vec::new();
    let mut seen = 0;
    for page in pages() {
        let text = read(&page);
        for (ev, range) in Parser::new_ext(&text, Options::empty()).into_offset_iter() {
            let dest = match ev {
                Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => {
                    dest_url
                }
                _ => continue,
            };
            if dest.is_empty() || dest.contains("://") || dest.starts_with("mailto:") || dest.starts_with('#')
            {
                continue;
            }
            seen += 1;
            let path = dest.split('#').next().unwrap();
            let target = page.parent().unwrap().join(path);
            if !target.exists() {
                broken.push(format!("{}:{}: {dest}", rel(&page), line_of(&text, range.start)));
            }
        }
    }
    assert!(seen > 50, "only {seen} relative links found: is the book there?");
    assert!(broken.is_empty(), "links that lead nowhere:\n{}", broken.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Configuration: every key the loader accepts is in the reference; every TOML snippet
// passes the loader's schema.

/// What the loader's schema says of `text`: empty when it accepts it.
fn schema_error(text: &str) -> String {
    match gitstate_cli::config::check_schema(Path::new("probe.toml"), text) {
        Ok(()) => String::new(),
        Err(e) => e.message,
    }
}

const PROBE: &str = "zz_probe";

/// A configuration holding `{ zz_probe = 1 }` (or `[{ … }]` where a step is an array of
/// tables) at `path`, the root's other requirements met.
fn probe_at(path: &[(String, bool)], named: bool) -> String {
    let mut inner = format!("{{ {PROBE} = 1 }}");
    for (i, (key, array)) in path.iter().enumerate().rev() {
        let mut value = if *array { format!("[{inner}]") } else { inner };
        if named && i == 0 && *array {
            // An element of `[[environments]]` is read only with its name.
            value = value.replacen("[{ ", "[{ name = \"probe\", ", 1);
        }
        inner = if i == 0 { format!("{key} = {value}") } else { format!("{{ {key} = {value} }}") };
    }
    if path[0].0 == "source" { inner } else { format!("source = {{ repo = \".\" }}\n{inner}") }
}

/// The keys of the table at `path`, as the loader lists them when it refuses an unknown
/// one; `None` when `path` is not a table.
fn keys_at(path: &[(String, bool)]) -> Option<Vec<String>> {
    let mut message = schema_error(&probe_at(path, false));
    if message.contains("missing field `name`") {
        message = schema_error(&probe_at(path, true));
    }
    let at = message.find(&format!("unknown field `{PROBE}`"))?;
    let rest = &message[at..];
    let expected = &rest[rest.find("expected").map_or(rest.len(), |i| i)..];
    Some(expected.split('`').skip(1).step_by(2).map(str::to_owned).collect())
}

/// A table's place: the keys from the root, each marked when it is an array of tables.
type TablePath = Vec<(String, bool)>;

/// Every table the loader reads, by dotted path, with its keys: found by offering the
/// loader an unknown key in each table and reading the keys it lists instead.
fn loader_tables() -> BTreeMap<String, Vec<String>> {
    /// The table at `path` with `key` appended, and its keys: read as a table first (serde
    /// would also read a struct from an array, by position), else as an array of tables.
    fn step(path: &[(String, bool)], key: &str) -> Option<(TablePath, Vec<String>)> {
        [false, true].into_iter().find_map(|array| {
            let mut next = path.to_vec();
            next.push((key.to_owned(), array));
            keys_at(&next).map(|keys| (next, keys))
        })
    }
    let mut out = BTreeMap::new();
    let mut todo: Vec<_> = keys_at_root()
        .expect("the root refuses an unknown key")
        .iter()
        .filter_map(|k| step(&[], k))
        .collect();
    while let Some((path, keys)) = todo.pop() {
        todo.extend(keys.iter().filter_map(|k| step(&path, k)));
        out.insert(path.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join("."), keys);
    }
    out
}

/// The root's keys (each a table), as the loader lists them when it refuses an unknown one.
fn keys_at_root() -> Option<Vec<String>> {
    let message = schema_error(&format!("{PROBE} = 1\n[source]\nrepo = \".\"\n"));
    let rest = &message[message.find("expected")?..];
    Some(rest.split('`').skip(1).step_by(2).map(str::to_owned).collect())
}

#[test]
fn the_loader_is_walked_whole() {
    // The walk above sees what it should, or the next test proves nothing.
    let tables = loader_tables();
    for t in [
        "source",
        "source.trust",
        "policy",
        "policy.windows",
        "environments",
        "environments.targets",
        "environments.targets.http",
        "environments.targets.exec",
        "environments.remediate.webhook",
        "environments.policy",
        "discover.targets.aws",
        "alerts.alertmanager",
        "alerts.webhook",
        "watch.auth.users",
        "watch.tls",
        "state",
        "output",
    ] {
        assert!(tables.contains_key(t), "the walk missed [{t}]: {:?}", tables.keys().collect::<Vec<_>>());
    }
    assert!(tables["source"].contains(&"repo".to_owned()));
    assert!(tables["policy"].contains(&"max_attempts".to_owned()), "{:?}", tables["policy"]);
    assert!(tables["policy.windows"].contains(&"timezone".to_owned()));
    let root = keys_at_root().expect("the root refuses an unknown key");
    assert!(root.contains(&"environments".to_owned()) && root.contains(&"watch".to_owned()), "{root:?}");
    for k in &root {
        assert!(tables.contains_key(k), "a root key that is not a table: {k}");
    }
}

#[test]
fn every_configuration_key_is_in_the_reference() {
    let path = book().join("configuration.md");
    let text = read(&path);
    let hs = headings(&text);
    let split = |t: &str| -> BTreeSet<String> {
        t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut missing = Vec::new();
    let tables = loader_tables();
    for (table, keys) in &tables {
        let Some(h) = hs.iter().find(|h| split(&h.text).contains(table)) else {
            missing.push(format!("[{table}]: no heading names it"));
            continue;
        };
        for k in keys {
            if !h.body.contains(&format!("`{k}`")) {
                missing.push(format!("[{table}] {k}: not under the heading at line {}", h.line));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of the loader's {} tables or keys are not in {}:\n{}",
        missing.len(),
        tables.values().map(Vec::len).sum::<usize>(),
        rel(&path),
        missing.join("\n")
    );
}

#[test]
fn every_toml_snippet_passes_the_loaders_schema() {
    let mut bad = Vec::new();
    let mut seen = 0;
    for page in pages() {
        for b in blocks(&read(&page)) {
            if b.info.trim() != "toml" {
                continue;
            }
            seen += 1;
            let has_source = b.text.lines().any(|l| l.trim() == "[source]");
            let text =
                if has_source { b.text.clone() } else { format!("[source]\nrepo = \".\"\n{}", b.text) };
            let message = schema_error(&text);
            if !message.is_empty() {
                bad.push(format!("{}:{}: {message}", rel(&page), b.line));
            }
        }
    }
    assert!(seen >= 20, "only {seen} TOML snippets found");
    assert!(bad.is_empty(), "TOML snippets the loader refuses:\n{}", bad.join("\n"));
}

#[test]
fn the_schema_check_refuses_what_the_loader_refuses() {
    // check_schema is the loader's own schema: a wrong key or type anywhere is caught.
    assert_eq!(schema_error("[source]\nrepo = \".\"\n"), "");
    assert!(schema_error("[source]\nrepo = \".\"\n[watch]\nintervall = \"1m\"\n").contains("unknown field"));
    assert!(schema_error("[source]\nrepo = \".\"\n[watch]\ninterval = 60\n").contains("invalid type"));
    assert!(
        schema_error("[source]\nrepo = \".\"\n[policy]\ngrace = \"soon\"\n").contains("invalid duration")
    );
    let env_policy =
        "[source]\nrepo = \".\"\n[[environments]]\nname = \"p\"\n[environments.policy]\nmodee = \"x\"\n";
    assert!(schema_error(env_policy).contains("unknown field `modee`"));
}

// ---------------------------------------------------------------------------------------
// Commands: every subcommand and flag of --help is documented; every command line in
// the book is one the program accepts.

/// `gitstate [SUB] --help`, read: subcommands (at the top) and long flags.
fn help(sub: Option<&str>) -> (Vec<String>, BTreeSet<String>) {
    let mut cmd = gitstate();
    if let Some(s) = sub {
        cmd.arg(s);
    }
    let r = run(cmd.arg("--help"));
    assert_eq!(r.code, 0, "{sub:?} --help: {}", r.stderr);
    let mut subs = Vec::new();
    let mut flags = BTreeSet::new();
    let mut in_commands = false;
    let flag = Regex::new(r"^\s+(?:-[A-Za-z], )?(--[a-z][a-z0-9-]*)").unwrap();
    for line in r.stdout.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_commands = false;
        }
        let name = line.split_whitespace().next().unwrap_or_default();
        if in_commands && line.starts_with("  ") && !line.starts_with("   ") && name != "help" {
            subs.push(name.to_owned());
        }
        if let Some(c) = flag.captures(line) {
            flags.insert(c[1].to_owned());
        }
    }
    flags.remove("--help");
    flags.remove("--version");
    (subs, flags)
}

fn subcommands() -> BTreeMap<String, BTreeSet<String>> {
    let (subs, _) = help(None);
    assert!(subs.len() >= 15, "{subs:?}");
    subs.into_iter().map(|s| (s.clone(), help(Some(&s)).1)).collect()
}

#[test]
fn every_subcommand_and_flag_is_in_the_command_reference() {
    let path = book().join("reference/commands.md");
    let text = read(&path);
    let hs = headings(&text);
    let (_, global) = help(None);
    let mut missing = Vec::new();
    for g in &global {
        if !text.contains(g.as_str()) {
            missing.push(format!("the global flag {g}"));
        }
    }
    for (sub, flags) in subcommands() {
        let title = format!("gitstate {sub}");
        let Some(h) = hs.iter().find(|h| h.level == 2 && h.code.contains(&title)) else {
            missing.push(format!("## `{title}`: no such heading"));
            continue;
        };
        for f in flags.difference(&global) {
            let named = Regex::new(&format!("{}([^a-z0-9-]|$)", regex::escape(f))).unwrap();
            if !named.is_match(&h.section) {
                missing.push(format!("{title} {f}: not in its section (line {})", h.line));
            }
        }
    }
    assert!(missing.is_empty(), "not documented in {}:\n{}", rel(&path), missing.join("\n"));
}

#[test]
fn every_command_line_in_the_docs_is_one_gitstate_accepts() {
    let subs = subcommands();
    let (_, global) = help(None);
    let mut bad = Vec::new();
    let mut seen = 0;
    for page in pages() {
        for b in blocks(&read(&page)) {
            let info = b.info.split(',').next().unwrap_or("").trim().to_owned();
            if !["sh", "console", "bash", "shell"].contains(&info.as_str()) {
                continue;
            }
            for (i, line) in b.text.lines().enumerate() {
                let line = line.trim_start();
                let line = match (info.as_str(), line.strip_prefix("$ ")) {
                    ("console", Some(l)) => l,
                    ("console", None) => continue,
                    (_, Some(l)) => l,
                    _ => line,
                };
                let line = line.split(" #").next().unwrap();
                for command in line.split(&['|', ';'][..]).flat_map(|c| c.split("&&")) {
                    let words: Vec<&str> = command.split_whitespace().collect();
                    let start = match words.iter().position(|w| *w == "gitstate" || w.ends_with("/gitstate"))
                    {
                        Some(0) => 1,
                        // `cargo run -p gitstate-cli -- demo`
                        _ if words.starts_with(&["cargo", "run"]) && words.contains(&"--") => {
                            words.iter().position(|w| *w == "--").unwrap() + 1
                        }
                        _ => continue,
                    };
                    seen += 1;
                    let at = format!("{}:{}", rel(&page), b.line + 1 + i);
                    let Some(sub) = words.get(start).filter(|w| !w.starts_with('-')) else {
                        continue;
                    };
                    let Some(flags) = subs.get(*sub) else {
                        bad.push(format!("{at}: no subcommand `{sub}` in: {command}"));
                        continue;
                    };
                    for w in &words[start + 1..] {
                        if w.starts_with('>') || w.starts_with('<') {
                            break;
                        }
                        if w.starts_with("--") && w.len() > 2 {
                            let f = w.split('=').next().unwrap();
                            if !flags.contains(f) && !global.contains(f) {
                                bad.push(format!("{at}: gitstate {sub} has no {f}: {command}"));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(seen >= 30, "only {seen} gitstate command lines found");
    assert!(bad.is_empty(), "command lines gitstate would refuse:\n{}", bad.join("\n"));
}

// ---------------------------------------------------------------------------------------
// Troubleshooting: every message quoted is one the code prints; the common failures are
// all there.

/// Every `.rs` file under `crates/*/src`, concatenated.
fn source() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push_str(&read(&p));
                out.push('\n');
            }
        }
    }
    let mut out = String::new();
    for e in std::fs::read_dir(root().join("crates")).unwrap() {
        let src = e.unwrap().path().join("src");
        if src.is_dir() && !src.starts_with(root().join("crates/gitstate-testkit")) {
            walk(&src, &mut out);
        }
    }
    out
}

/// The messages the troubleshooting chapter explains: each `###` heading's quoted text,
/// outside the first section (statuses and phases, which are words, not messages).
fn troubleshooting_messages() -> Vec<(usize, String)> {
    let text = read(&book().join("troubleshooting.md"));
    let hs = headings(&text);
    let first_section = hs.iter().find(|h| h.level == 2).map(|h| h.line).unwrap_or(0);
    let second_section = hs.iter().filter(|h| h.level == 2).nth(1).map_or(0, |h| h.line);
    assert!(second_section > first_section, "troubleshooting.md has one section");
    hs.iter()
        .filter(|h| h.level == 3 && h.line > second_section)
        .map(|h| (h.line, h.code.first().cloned().unwrap_or_default()))
        .collect()
}

#[test]
fn every_troubleshooting_message_is_one_the_code_prints() {
    let src = source();
    let messages = troubleshooting_messages();
    assert!(messages.len() >= 40, "only {} messages in troubleshooting.md", messages.len());
    let unknown: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m.len() < 8 || !src.contains(m.as_str()))
        .map(|(line, m)| format!("troubleshooting.md:{line}: `{m}`"))
        .collect();
    assert!(unknown.is_empty(), "headings quoting text no source file holds:\n{}", unknown.join("\n"));
}

#[test]
fn the_common_failures_are_all_in_troubleshooting() {
    let messages: Vec<String> = troubleshooting_messages().into_iter().map(|(_, m)| m).collect();
    let repo = Repo::new();
    let c = repo.commits(3, "c");
    repo.update_ref(REF, &c[2]);
    let env = http_env("production", "web", &["http://127.0.0.1:9/meta".to_owned()], "");
    let good = write_config(repo.path(), &format!("[source]\nrepo = \".\"\n{env}"));
    let config = |name: &str, text: &str| {
        let p = repo.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let good = good.display().to_string();
    let syntax = config("syntax.toml", "[source\nrepo = \".\"\n");
    let unknown_key = config("unknown.toml", &format!("[source]\nrepo = \".\"\nrepoo = 1\n{env}"));
    let unset =
        config("unset.toml", &format!("[source]\nrepo = \"https://${{GITSTATE_DOCS_UNSET}}/x.git\"\n{env}"));
    let not_git = tempfile::tempdir().unwrap();
    let not_repo =
        config("norepo.toml", &format!("[source]\nrepo = \"{}\"\n{env}", not_git.path().display()));
    std::fs::create_dir_all(repo.path().join(".gitstate")).unwrap();

    // (what, arguments, a file written for the case and its content)
    type Case<'a> = (&'a str, Vec<&'a str>, Option<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        ("no configuration file", vec!["check", "-c", "/nonexistent/gitstate.toml"], None),
        ("a TOML syntax error", vec!["validate", "-c", &syntax], None),
        ("an unknown key", vec!["validate", "-c", &unknown_key], None),
        ("an unset variable", vec!["validate", "-c", &unset], None),
        ("a source that is no repository", vec!["expected", "-c", &not_repo], None),
        ("an unknown environment", vec!["check", "-c", &good, "-e", "nope"], None),
        ("suspending an unknown environment", vec!["suspend", "-c", &good, "nope"], None),
        ("a corrupt state file", vec!["status", "-c", &good], Some((".gitstate/state.json", "{ not json"))),
        ("vetoing what is no commit", vec!["veto", "-c", &good, "production", "zzzz"], None),
        ("lifting a veto never made", vec!["unveto", "-c", &good, "production", &c[1]], None),
        ("rolling back with nothing to go back to", vec!["rollback", "-c", &good, "production"], None),
        ("adopting when nothing diverged", vec!["adopt", "-c", &good, "production"], None),
        ("where with an unknown revision", vec!["where", "-c", &good, "no-such-rev"], None),
        ("diff of an unknown environment", vec!["diff", "-c", &good, "production", "nope"], None),
    ];
    let mut unexplained = Vec::new();
    for (what, args, file) in cases {
        if let Some((f, body)) = file {
            std::fs::write(repo.path().join(f), body).unwrap();
        }
        let r = run(gitstate().current_dir(repo.path()).args(&args));
        if let Some((f, _)) = file {
            std::fs::remove_file(repo.path().join(f)).unwrap();
        }
        assert_eq!(r.code, 2, "{what}: {args:?} should fail with 2: {}{}", r.stdout, r.stderr);
        if !messages.iter().any(|m| r.stderr.contains(m.as_str())) {
            unexplained.push(format!("{what}: {}", r.stderr.trim()));
        }
    }
    assert!(
        unexplained.is_empty(),
        "failures troubleshooting.md does not explain:\n{}",
        unexplained.join("\n")
    );
}

#[test]
fn every_answer_the_listener_refuses_with_is_in_troubleshooting() {
    // The listener's 4xx answers are written as `Response::new(StatusCode::X, TEXT, "…")`
    // or `refuse(StatusCode::X, "…")`: each body's fixed text is explained.
    let messages: Vec<String> = troubleshooting_messages().into_iter().map(|(_, m)| m).collect();
    let answer = Regex::new(
        r#"StatusCode::(BAD_REQUEST|UNAUTHORIZED|FORBIDDEN|NOT_FOUND|METHOD_NOT_ALLOWED|CONFLICT|PAYLOAD_TOO_LARGE|TOO_MANY_REQUESTS)\s*,\s*(?:TEXT\s*,\s*)?(?:format!\()?\s*"([^"{\\]{6,})"#,
    )
    .unwrap();
    let dir = root().join("crates/gitstate-cli/src/listener");
    let mut found = 0;
    let mut unexplained = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let text = read(&p);
        for c in answer.captures_iter(&text) {
            found += 1;
            let body = c[2].trim_end_matches("\\n").trim();
            if !messages.iter().any(|m| body.starts_with(m.as_str())) {
                unexplained.push(format!("{} {}: {body:?}", rel(&p), &c[1]));
            }
        }
    }
    assert!(found >= 5, "only {found} refusals found in the listener: has its code changed shape?");
    assert!(
        unexplained.is_empty(),
        "listener answers troubleshooting.md does not explain:\n{}",
        unexplained.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The demo's transcript in the book is what the demo prints.

/// Masks what changes from run to run: commit ids, times, durations, ports, the sandbox
/// directory, the counts that depend on timing, and the width of table columns.
fn masked(s: &str) -> String {
    let rules = [
        (r"/tmp/gitstate-demo-\w+", "<dir>"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>"),
        (r"\b[0-9a-f]{7,40}\b", "<sha>"),
        (r"\b\d+(\.\d+)?\s?(ms|s|m|h|d)\b", "<dur>"),
        (r"[ \t]+", " "),
    ];
    let mut s = s.to_owned();
    for (re, with) in rules {
        s = Regex::new(re).unwrap().replace_all(&s, with).into_owned();
    }
    // DORA's counts depend on how many attempts the timing allowed.
    let counts = Regex::new(r"\d+(\.\d+)?").unwrap();
    s.lines()
        .map(|l| {
            if l.contains("deployments (") { counts.replace_all(l, "<n>").into_owned() } else { l.to_owned() }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_demo_transcript_in_the_book_is_what_the_demo_prints() {
    let path = book().join("demo.txt");
    let committed = read(&path);
    let dir = tempfile::tempdir().unwrap();
    let r = run(gitstate().current_dir(dir.path()).env("NO_COLOR", "1").arg("demo"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (want, got) = (masked(&committed), masked(&r.stdout));
    if want != got {
        let first = want.lines().zip(got.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!(
            "{} is stale (run scripts/docs); first difference at line {}:\n  book: {:?}\n  demo: {:?}",
            rel(&path),
            first + 1,
            want.lines().nth(first),
            got.lines().nth(first)
        );
    }
}

#[test]
fn the_readme_tour_quotes_the_demo() {
    // The README's tour is made of the demo's own lines: each is in the transcript the
    // test above holds to the real demo (ids, times and counts masked).
    let transcript: BTreeSet<String> =
        masked(&read(&book().join("demo.txt"))).lines().map(|l| l.trim().to_owned()).collect();
    let readme = read(&root().join("README.md"));
    let mut quoted = 0;
    let mut strange = Vec::new();
    for b in blocks(&readme).iter().filter(|b| b.info.trim() == "text") {
        for line in masked(&b.text).lines().map(str::trim).filter(|l| !l.is_empty()) {
            quoted += 1;
            if !transcript.contains(line) {
                strange.push(format!("README.md:{}: {line}", b.line));
            }
        }
    }
    assert!(quoted >= 10, "only {quoted} lines quoted from the demo");
    assert!(
        strange.is_empty(),
        "lines the demo does not print (run scripts/docs, then quote it):\n{}",
        strange.join("\n")
    );
}
