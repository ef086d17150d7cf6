//! `gitstate expected`: what each environment should run now, ref → commit. Explicit refs
//! are resolved in one batch; `[[discover]]` prefixes are listed once, not looked up one
//! by one.

use std::collections::HashSet;

use gitstate_core::ExpectedState;

use crate::cli::{Output, Select};
use crate::config::discover;
use crate::output::table::Table;
use crate::output::{self, Paint};
use crate::{exit, plan};

/// One environment's line of the listing (serde's rendering of it is the model the tests
/// hold [`write_json`] to).
#[cfg_attr(test, derive(serde::Serialize))]
struct Row<'a> {
    name: &'a str,
    #[cfg_attr(test, serde(rename = "ref"))]
    reference: std::borrow::Cow<'a, str>,
    expected: Option<gitstate_core::CommitId>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    error: Option<&'a str>,
}

/// Writes the listing as `serde_json::to_writer_pretty` writes `{"schema": 1,
/// "environments": [rows]}` (a test holds the two to the same bytes), row by row into a
/// 16 KiB buffer. Written by hand because this command is what scripts call in a loop:
/// serde's machinery was a sixth of a 1,000-environment listing's time, most of it in
/// running its code the first time.
fn write_json<'a>(out: &mut impl std::io::Write, rows: impl Iterator<Item = Row<'a>>) -> std::io::Result<()> {
    out.write_all(b"{\n  \"schema\": 1,\n  \"environments\": [")?;
    let mut any = false;
    for r in rows {
        out.write_all(if any { b",\n    {\n      \"name\": " } else { b"\n    {\n      \"name\": " })?;
        any = true;
        output::write_json_str(out, r.name)?;
        out.write_all(b",\n      \"ref\": ")?;
        output::write_json_str(out, &r.reference)?;
        out.write_all(b",\n      \"expected\": ")?;
        match &r.expected {
            Some(c) => output::write_json_str(out, c.as_str())?,
            None => out.write_all(b"null")?,
        }
        if let Some(e) = r.error {
            out.write_all(b",\n      \"error\": ")?;
            output::write_json_str(out, e)?;
        }
        out.write_all(b"\n    }")?;
    }
    out.write_all(if any { b"\n  ]\n}\n" } else { b"]\n}\n" })
}

/// Runs the command.
pub async fn run(args: Select) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.config.as_deref())?;
    // Run under `block_on` with nothing else to do: the Git work needs no pool thread.
    let source = plan::source(&config)?.on_this_thread();
    // Discovered environments come straight from the listing: no target is built, no ref
    // is looked up twice.
    let listed = plan::listings(&config, &source).await?;
    let (found, skipped) = discover::discovered(&config, &listed);
    plan::warn_skipped(&skipped);
    let names =
        config.environments.iter().map(|e| e.name.as_str()).chain(found.iter().map(|(_, n, _)| n.as_str()));
    plan::check_selection(names, &args.environments)?;
    let only: HashSet<&str> = args.environments.iter().map(String::as_str).collect();
    let selected = |name: &str| only.is_empty() || only.contains(name);

    let explicit: Vec<_> = config.environments.iter().filter(|e| selected(e.name.as_str())).collect();
    let refs: Vec<String> = explicit.iter().map(|e| e.reference.clone()).collect();
    let resolved = if refs.is_empty() { Vec::new() } else { source.resolve(&refs).await? };
    let errors: Vec<Option<String>> = explicit
        .iter()
        .zip(&resolved)
        .map(|(e, r)| r.as_ref().err().map(|err| format!("environment {}: {err}", e.name)))
        .collect();
    let explicit_rows = explicit.iter().zip(&resolved).zip(&errors).map(|((e, r), error)| Row {
        name: e.name.as_str(),
        reference: r.as_ref().map_or(e.reference.as_str(), |x| x.reference.as_str()).into(),
        expected: r.as_ref().ok().map(|x| x.commit),
        error: error.as_deref(),
    });
    let found_rows = found.iter().filter(|(_, n, _)| selected(n.as_str())).map(|(_, name, e)| Row {
        name: name.as_str(),
        reference: e.reference.as_str().into(),
        expected: Some(e.commit),
        error: None,
    });
    let rows = explicit_rows.chain(found_rows);
    match args.output {
        Output::Json => output::emit_with(16 * 1024, |out| write_json(out, rows))?,
        Output::Html => {
            anyhow::bail!(
                "-o html is for check, status, reconcile, fleet and dora; expected prints text or json"
            )
        }
        Output::Text => {
            let p = Paint::new(output::color_enabled_stdout());
            let mut t = Table::new(&["ENVIRONMENT", "REF", "COMMIT"]);
            for r in rows {
                let commit: std::borrow::Cow<'_, str> = match (&r.expected, &r.error) {
                    (Some(c), _) => c.as_str().to_owned().into(),
                    (None, Some(e)) => p.bad(e).into(),
                    (None, None) => "-".into(),
                };
                t.row(vec![r.name.into(), r.reference, commit]);
            }
            output::emit(t.render().as_bytes())?;
        }
    }
    if errors.iter().any(Option::is_some) {
        for e in errors.iter().flatten() {
            eprintln!("error: {e}");
        }
        return Ok(exit::ERROR);
    }
    Ok(exit::IN_SYNC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(serde::Serialize)]
    struct Doc<'a> {
        schema: u32,
        environments: Vec<Row<'a>>,
    }

    /// Text with what JSON must escape (every control character, quotes, backslashes) and
    /// any Unicode (proptest's plain strings leave control characters out).
    fn text() -> impl Strategy<Value = String> {
        prop_oneof!["[\\x00-\\x20\"\\\\a-z\\x7f]{0,10}", any::<String>()]
    }

    fn commit() -> impl Strategy<Value = Option<gitstate_core::CommitId>> {
        prop::option::of("[0-9a-f]{40}".prop_map(|h| gitstate_core::CommitId::parse(&h).unwrap()))
    }

    proptest! {
        /// The hand-written listing is byte for byte what serde_json's pretty printer
        /// writes, for any names, refs and errors (control characters, quotes, backslashes,
        /// any Unicode) and any number of rows.
        #[test]
        fn the_listing_is_what_serde_json_writes(
            rows in prop::collection::vec((text(), text(), commit(), prop::option::of(text())), 0..6),
        ) {
            let make = || rows.iter().map(|(n, r, c, e)| Row { name: n, reference: r.as_str().into(), expected: *c, error: e.as_deref() });
            let mut ours = Vec::new();
            write_json(&mut ours, make()).unwrap();
            let model = serde_json::to_string_pretty(&Doc { schema: 1, environments: make().collect() }).unwrap() + "\n";
            prop_assert_eq!(String::from_utf8(ours).unwrap(), model);
        }
    }
}
