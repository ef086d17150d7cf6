//! `[[environments.targets]]`: an HTTP, AWS or exec target from its table, `{environment}`
//! substituted, every URL, header and duration checked.

use std::collections::BTreeSet;

use gitstate_aws::AwsTarget;
use gitstate_http::HttpTarget;

use super::raw::RawTarget;
use super::*;

pub(crate) fn targets(
    ctx: &Ctx,
    raw: &[RawTarget],
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<TargetConfig>, ConfigError> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for t in raw {
        let name = t.name.get_ref().trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ctx.at(&t.name, format!("invalid target name {:?}", t.name.get_ref())));
        }
        if !names.insert(name.to_owned()) {
            return Err(ctx.at(&t.name, format!("target {name} is defined twice in environment {env}")));
        }
        let kind = match (&t.http, &t.aws, &t.exec) {
            (Some(h), None, None) => TargetKind::Http(http(ctx, h, env, lookup)?),
            (None, Some(a), None) => {
                let target = aws(ctx, a, env, lookup)?;
                if !cfg!(feature = "aws") {
                    return Err(ctx.at(
                        &t.name,
                        format!(
                            "target {name}: this gitstate was built without the AWS probe (cargo feature `aws` \
                             of gitstate-cli, on by default): build it with that feature to read AWS tags"
                        ),
                    ));
                }
                TargetKind::Aws(target)
            }
            (None, None, Some(x)) => TargetKind::Exec(exec(ctx, x, env)?),
            _ => {
                return Err(ctx.at(
                    &t.name,
                    format!(
                        "target {name}: give exactly one of [targets.http], [targets.aws] or [targets.exec]"
                    ),
                ));
            }
        };
        out.push(TargetConfig { name: name.to_owned(), kind });
    }
    Ok(out)
}

pub(super) fn http(
    ctx: &Ctx,
    h: &raw::RawHttp,
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<HttpTarget, ConfigError> {
    if h.urls.get_ref().is_empty() {
        return Err(ctx.at(&h.urls, "urls is empty"));
    }
    let urls = h.urls.get_ref().iter().map(|u| url_at(ctx, u, env, lookup)).collect::<Result<Vec<_>, _>>()?;
    let mut t = HttpTarget::new(urls);
    if let Some(p) = &h.sha_pointer {
        if !p.get_ref().starts_with('/') {
            return Err(ctx
                .at(p, format!("sha_pointer {:?} must be a JSON pointer starting with \"/\"", p.get_ref())));
        }
        t.sha_pointer = Some(p.get_ref().clone());
    }
    if let Some(d) = h.timeout {
        if d.0.is_zero() {
            return Err(ctx.err(Some(h.urls.span()), "timeout must be more than 0s"));
        }
        t.timeout = d.0;
    }
    if let Some(n) = h.max_bytes {
        t.max_bytes = n;
    }
    t.headers = headers(ctx, &h.headers, lookup)?;
    if let Some(ca) = &h.ca_file {
        let p = ctx.dir.join(ca.get_ref());
        if !p.is_file() {
            return Err(ctx.at(ca, format!("ca_file {} does not exist", p.display())));
        }
        t.ca_file = Some(p);
    }
    if let Some(f) = h.follow_redirects {
        t.follow_redirects = f;
    }
    Ok(t)
}

pub(super) fn exec(
    ctx: &Ctx,
    x: &raw::RawExec,
    env: &str,
) -> Result<gitstate_process::ExecTarget, ConfigError> {
    let command: Vec<String> = x.command.get_ref().iter().map(|a| substitute(a, env)).collect();
    if command.first().is_none_or(|c| c.trim().is_empty()) {
        return Err(ctx
            .at(&x.command, "command is empty: give argv, e.g. [\"ssh\", \"host\", \"cat\", \"REVISION\"]"));
    }
    if let Some(p) = &x.sha_pointer
        && !p.get_ref().starts_with('/')
    {
        return Err(
            ctx.at(p, format!("sha_pointer {:?} must be a JSON pointer starting with \"/\"", p.get_ref()))
        );
    }
    if x.sha_pointer.is_some() && x.format == gitstate_process::ExecFormat::Lines {
        return Err(ctx.at(&x.command, "sha_pointer applies to format = \"report\" only"));
    }
    let timeout = match x.timeout {
        Some(d) if d.0.is_zero() => return Err(ctx.at(&x.command, "timeout must be more than 0s")),
        Some(d) => d.0,
        None => gitstate_process::ExecTarget::DEFAULT_TIMEOUT,
    };
    Ok(gitstate_process::ExecTarget {
        command,
        format: x.format,
        sha_pointer: x.sha_pointer.as_ref().map(|p| p.get_ref().clone()),
        timeout,
        max_bytes: x.max_bytes.unwrap_or(gitstate_process::ExecTarget::DEFAULT_MAX_BYTES),
    })
}

pub(super) fn aws(
    ctx: &Ctx,
    a: &raw::RawAws,
    env: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<AwsTarget, ConfigError> {
    let region = a.region.get_ref().trim();
    if region.is_empty() || !region.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ctx.at(&a.region, format!("invalid AWS region {:?}", a.region.get_ref())));
    }
    if a.tags.get_ref().is_empty() {
        return Err(ctx.at(&a.tags, "tags is empty: give at least one tag filter"));
    }
    let tags = a
        .tags
        .get_ref()
        .iter()
        .map(|(k, v)| {
            let values = match v {
                raw::OneOrMany::One(s) => vec![substitute(s, env)],
                raw::OneOrMany::Many(l) => l.iter().map(|s| substitute(s, env)).collect(),
            };
            (k.clone(), values)
        })
        .collect();
    let endpoint_url = a.endpoint_url.as_ref().map(|u| url_at(ctx, u, env, lookup)).transpose()?;
    if let Some(t) = &a.sha_tag
        && t.trim().is_empty()
    {
        return Err(ctx.at(&a.region, "sha_tag is empty"));
    }
    let mut target = AwsTarget::new(region, tags);
    target.resource_types = a.resource_types.clone();
    if let Some(t) = &a.sha_tag {
        target.sha_tag = t.clone();
    }
    target.endpoint_url = endpoint_url.map(|u| u.to_string().trim_end_matches('/').to_owned());
    target.profile = a.profile.clone();
    if let Some(d) = a.timeout {
        if d.0.is_zero() {
            return Err(ctx.at(&a.region, "timeout must be more than 0s"));
        }
        target.timeout = d.0;
    }
    Ok(target)
}
