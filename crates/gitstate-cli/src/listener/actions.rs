//! `POST /actions/{suspend,resume,retry,rollback,veto,unveto,adopt}` (SPEC §20): an
//! operator's form (or a client's, with `X-CSRF-Token`) turned into the runtime's
//! [`Operator::act`](gitstate_runtime::operate::Operator::act) — the same code as the
//! CLI's commands — after the token and the `Origin` are checked. The answer: `303` to
//! `/` for a form, or `{"schema": 1, "action", "environment", "ok", "error"}` for
//! `Accept: application/json`.

use gitstate_runtime::actions::Actor;
use gitstate_runtime::operate::{Action, OperateError, Operator, Request as Asked};

use super::auth::Who;
use super::csrf::Csrf;
use crate::config::Role;
use crate::serve::{Request, Response, StatusCode};

/// Longest body accepted.
pub const MAX_BODY: usize = 16 * 1024;

const TEXT: &str = "text/plain; charset=utf-8";

/// The form's fields.
#[derive(Debug, Default)]
struct Form {
    environment: Option<String>,
    sha: Option<String>,
    until: Option<String>,
    reason: Option<String>,
    csrf: Option<String>,
}

fn form(body: &[u8]) -> Form {
    let mut f = Form::default();
    for (k, v) in url::form_urlencoded::parse(body) {
        let slot = match &*k {
            "environment" => &mut f.environment,
            "sha" => &mut f.sha,
            "until" => &mut f.until,
            "reason" => &mut f.reason,
            "csrf" => &mut f.csrf,
            _ => continue,
        };
        // The first of a repeated field counts.
        slot.get_or_insert_with(|| v.into_owned());
    }
    f
}

/// Whether `r`'s `Origin`, when it has one, is the listener's own (the scheme it was
/// reached by and its `Host`).
fn same_origin(r: &Request) -> Option<bool> {
    let origin = r.header("origin")?;
    let host = r.header("host").unwrap_or_default();
    let scheme = if r.tls { "https" } else { "http" };
    Some(origin == format!("{scheme}://{host}"))
}

fn answer(r: &Request, status: StatusCode, action: &str, environment: &str, error: Option<&str>) -> Response {
    let json = r.header("accept").is_some_and(|a| a.contains("application/json"));
    if json {
        let body = serde_json::json!({
            "schema": 1,
            "action": action,
            "environment": environment,
            "ok": error.is_none(),
            "error": error,
        });
        let status = if status == StatusCode::SEE_OTHER { StatusCode::OK } else { status };
        return Response::new(status, "application/json", format!("{body}\n"));
    }
    match error {
        None => {
            let mut resp = Response::new(StatusCode::SEE_OTHER, TEXT, format!("{action}: done\n"));
            resp.headers.push(("location", format!("/#env-{environment}")));
            resp
        }
        Some(e) => Response::new(status, TEXT, format!("{action} {environment}: {e}\n")),
    }
}

/// Answers `POST /actions/{name}` for `who`.
pub async fn respond(r: &Request, who: &Who, csrf: &Csrf, operator: &Operator) -> Response {
    let name = r.path.strip_prefix("/actions/").unwrap_or_default();
    const NAMES: [&str; 7] = ["suspend", "resume", "retry", "rollback", "veto", "unveto", "adopt"];
    if !NAMES.contains(&name) {
        return Response::new(
            StatusCode::NOT_FOUND,
            TEXT,
            format!("no action {name:?}: one of {}\n", NAMES.join(", ")),
        );
    }
    if who.role != Role::Operator {
        return Response::new(StatusCode::FORBIDDEN, TEXT, "only an operator may act\n");
    }
    let f = form(&r.body);
    // A header token works without Origin (a script or curl); a form's needs a browser's
    // Origin that is this listener's.
    let header = r.header("x-csrf-token");
    let now = jiff::Timestamp::now();
    let token_ok = header.as_deref().or(f.csrf.as_deref()).is_some_and(|t| csrf.check(&who.name, t, now));
    let origin_ok = match same_origin(r) {
        Some(same) => same,
        None => header.is_some(),
    };
    if !token_ok || !origin_ok {
        let why = if token_ok {
            "the request's Origin is not this dashboard"
        } else {
            "a missing or invalid CSRF token"
        };
        tracing::warn!(user = %who.name, action = name, address = %r.peer.ip(), "action refused: {why}");
        return Response::new(StatusCode::FORBIDDEN, TEXT, format!("refused: {why}\n"));
    }
    let environment = f.environment.clone().unwrap_or_default();
    if !operator.knows(&environment) {
        return answer(r, StatusCode::NOT_FOUND, name, &environment, Some("unknown environment"));
    }
    let field = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let action = match name {
        "suspend" => match field(&f.until).map(|u| crate::commands::control::until(&u, now)).transpose() {
            Ok(until) => Action::Suspend { until },
            Err(e) => return answer(r, StatusCode::BAD_REQUEST, name, &environment, Some(&e.to_string())),
        },
        "resume" => Action::Resume,
        "retry" => Action::Retry,
        "rollback" => Action::Rollback { to: field(&f.sha) },
        "adopt" => Action::Adopt,
        veto => match field(&f.sha) {
            Some(sha) if veto == "veto" => Action::Veto { sha },
            Some(sha) => Action::Unveto { sha },
            None => return answer(r, StatusCode::BAD_REQUEST, name, &environment, Some("sha is required")),
        },
    };
    let asked = Asked::new(action, environment.clone(), f.reason.clone().unwrap_or_default());
    let actor = Actor { by: &who.name, via: "dashboard" };
    match operator.act(&asked, actor, now).await {
        Ok(_) => answer(r, StatusCode::SEE_OTHER, name, &environment, None),
        Err(OperateError::UnknownEnvironment(_)) => {
            answer(r, StatusCode::NOT_FOUND, name, &environment, Some("unknown environment"))
        }
        Err(OperateError::Invalid(e)) => answer(r, StatusCode::BAD_REQUEST, name, &environment, Some(&e)),
        Err(OperateError::Refused(e)) => answer(r, StatusCode::CONFLICT, name, &environment, Some(&e)),
        Err(e) => answer(r, StatusCode::INTERNAL_SERVER_ERROR, name, &environment, Some(&e.to_string())),
    }
}
