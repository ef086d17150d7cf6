//! `gitstate expected`: what each environment should run now, ref → commit. Explicit refs
//! are resolved in one batch; `[[discover]]` prefixes are listed once, not looked up one
//! by one.

use gitstate_core::ExpectedState;
use serde::Serialize;

use crate::cli::{Output, Select};
use crate::output::Paint;
use crate::output::table::Table;
use crate::{exit, plan};

#[derive(Serialize)]
struct Row {
    name: String,
    #[serde(rename = "ref")]
    reference: String,
    expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs the command.
pub async fn run(args: Select) -> anyhow::Result<i32> {
    let config = super::load_config(args.config.config.as_deref())?;
    let source = plan::source(&config)?;
    let (envs, _) = plan::environments(&config, &source, &args.environments).await?;
    let source = plan::Prefetched::new(source, &envs);
    let refs: Vec<String> = envs.iter().map(|p| p.config.reference.clone()).collect();
    let resolved = source.resolve(&refs).await?;
    let rows: Vec<Row> = envs
        .iter()
        .zip(resolved)
        .map(|(p, r)| (&p.config, r))
        .map(|(e, r)| match r {
            Ok(x) => Row {
                name: e.name.to_string(),
                reference: x.reference,
                expected: Some(x.commit.to_string()),
                error: None,
            },
            Err(err) => Row {
                name: e.name.to_string(),
                reference: e.reference.clone(),
                expected: None,
                error: Some(format!("environment {}: {err}", e.name)),
            },
        })
        .collect();
    let failed = rows.iter().any(|r| r.error.is_some());
    match args.output {
        Output::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"schema": 1, "environments": rows}))?
            );
        }
        Output::Text => {
            let p = Paint::new(crate::output::color_enabled_stdout());
            let mut t = Table::new(&["ENVIRONMENT", "REF", "COMMIT"]);
            for r in &rows {
                let commit = match (&r.expected, &r.error) {
                    (Some(c), _) => c.clone(),
                    (None, Some(e)) => p.bad(e),
                    (None, None) => "-".into(),
                };
                t.row(vec![r.name.clone(), r.reference.clone(), commit]);
            }
            print!("{}", t.render());
        }
    }
    if failed {
        for r in rows.iter().filter_map(|r| r.error.as_ref()) {
            eprintln!("error: {r}");
        }
        return Ok(exit::ERROR);
    }
    Ok(exit::IN_SYNC)
}
