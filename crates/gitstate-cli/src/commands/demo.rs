//! `gitstate demo`: a self-contained sandbox. It builds a throw-away repository with an
//! environment ref, serves a target on 127.0.0.1 that reports the commit it runs, and then
//! shows — in a few seconds, in plain words — drift detected and explained with the
//! history, the deploy re-triggered, the target converged with the lag measured, a hotfix
//! left alone with an alarm, a failing deploy backing off into an alarm that resolves
//! when the deploy is fixed, a release that fails its checks after the deploy rolled back
//! in Git and vetoed, and a hotfix deployed by hand adopted. Needs only this binary and git.

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_trait::async_trait;
use gitstate_core::git::GitSource;
use gitstate_core::verify::{Check, CheckContext, OnDegraded, Verify};
use gitstate_core::{
    ActionReport, AlarmEvent, AlarmNotification, AlarmSink, EnvName, EnvironmentSpec, EventKind, PassMode,
    PassOutcome, Phase, Policy, RemediationOutcome, RemediationRequest, Remediator, SinkError, TargetSpec,
};
use gitstate_http::{HttpClients, HttpProbe, HttpTarget};
use gitstate_runtime::{Controller, FileStore};

use crate::exit;
use crate::listener::dashboard::Dashboard;
use crate::output::{Paint, report};

const REF: &str = "refs/heads/environments/production";

/// Runs the demo.
pub async fn run() -> anyhow::Result<i32> {
    let p = Paint::new(crate::output::color_enabled_stdout());
    let dir = tempfile::Builder::new().prefix("gitstate-demo-").tempdir()?;
    let repo = dir.path();
    git(repo, &["init", "-q", "-b", "main"])?;
    let mut commits = Vec::new();
    for msg in ["initial import", "add health check", "tune timeouts"] {
        commits.push(commit(repo, msg)?);
    }
    git(repo, &["update-ref", REF, &commits[2]])?;

    let served = Arc::new(Mutex::new(commits[2].clone()));
    let port = serve(served.clone()).await?;
    let url = format!("http://127.0.0.1:{port}/.well-known/deployment-meta.json");

    let deploy = Arc::new(DemoDeploy { served: served.clone(), broken: AtomicBool::new(false) });
    // The smoke check after each deploy: it fails while the service runs `bad`.
    let bad = Arc::new(Mutex::new(String::new()));
    let smoke = Arc::new(DemoCheck { served: served.clone(), bad: bad.clone() });
    let clients = HttpClients::new(16)?;
    let mut target = HttpTarget::new(vec![url.parse()?]);
    target.timeout = Duration::from_secs(2);
    let env = EnvironmentSpec {
        name: EnvName::new("production")?,
        reference: REF.into(),
        targets: vec![TargetSpec::new("web", Arc::new(HttpProbe::new(&clients, target)?))],
        remediator: Some(deploy.clone()),
        policy: Arc::new(Policy {
            grace: Duration::ZERO,
            settle: Duration::from_millis(1500),
            backoff: Duration::from_millis(1500),
            backoff_max: Duration::from_secs(5),
            max_attempts: 2,
            verify: Some(Verify {
                soak: Duration::from_secs(1),
                every: Duration::from_millis(200),
                failures: 2,
                on_degraded: OnDegraded::Rollback,
                ..Verify::default()
            }),
            ..Policy::default()
        }),
        controls: gitstate_core::Controls::default(),
        checks: vec![smoke],
    };
    // State and events in the sandbox, so that the dashboard shows what `watch` would.
    let store = Arc::new(FileStore::open(&dir.path().join(".gitstate"))?);
    let name = env.name.clone();
    let source = GitSource::local(repo)?;
    let controller = Controller::builder(Arc::new(source.clone()), store.clone())
        .environment(env)
        .sink(Arc::new(PrintSink { paint: p }))
        .build();
    let dashboard = Arc::new(
        Dashboard::new(controller.view(), gitstate_core::Links::default())
            .with_history(Arc::new(source.clone()), vec![name.clone()]),
    );
    let board = dashboard_listener(dashboard.clone()).await?;
    let mut demo = Demo { controller, paint: p, last_line: String::new() };

    println!(
        "{}",
        p.bold("gitstate demo: Git says what should run; gitstate checks, explains and fixes what does.")
    );
    println!("Sandbox: a repository in {} and a web service at", repo.display());
    println!("  {url}\nthat reports the commit it runs. The ref {REF} says what production should run.");
    println!("Watch it on the dashboard: {}", p.bold(&format!("http://{board}/")));

    step(&p, 1, "Production runs what its ref says");
    let out = demo.reconcile_pass().await?;
    print!("{}", report::render(&out.report, &p));

    step(&p, 2, "A release: three commits land and the ref moves (git update-ref)");
    for msg in ["feature: dark mode", "fix: login redirect", "bump dependencies"] {
        commits.push(commit(repo, msg)?);
    }
    git(repo, &["update-ref", REF, &commits[5]])?;
    let out = demo.check().await?;
    print!("{}", report::render(&out.report, &p));
    println!("Drift detected: the service is 3 commits behind its ref, so a deploy is pending.");

    step(&p, 3, "The closed loop: gitstate re-triggers the deploy and waits for convergence");
    demo.reconcile_pass().await?;
    let lag = demo.until_in_sync(Duration::from_secs(10)).await?;
    println!(
        "{} converged on {}: convergence lag {lag:.1} s (from the ref move being seen to every instance in sync).",
        p.good("✓"),
        &commits[5][..7],
    );

    step(&p, 4, "An out-of-band hotfix: someone deploys a commit the ref never led to");
    git(repo, &["checkout", "-q", "-b", "hotfix", &commits[4]])?;
    let hotfix = commit(repo, "hotfix: patch the login redirect")?;
    git(repo, &["checkout", "-q", "main"])?;
    *served.lock().unwrap_or_else(|e| e.into_inner()) = hotfix.clone();
    let out = demo.reconcile_pass().await?;
    print!("{}", report::render(&out.report, &p));
    println!(
        "gitstate does not overwrite a hotfix by default (on_diverged = \"alarm\"): it raises an alarm instead."
    );
    *served.lock().unwrap_or_else(|e| e.into_inner()) = commits[5].clone();
    demo.until_in_sync(Duration::from_secs(10)).await?;
    println!("The hotfix is folded back (the service runs {} again); the alarm resolves.", &commits[5][..7]);

    step(&p, 5, "A broken deploy: the ref moves, every deploy fails, gitstate backs off, then alarms");
    commits.push(commit(repo, "feature: export to CSV")?);
    git(repo, &["update-ref", REF, &commits[6]])?;
    deploy.broken.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = demo.reconcile_pass().await?;
        if out.report.environments[0].phase == Some(Phase::Alarm) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the demo's drift alarm did not fire in time");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "Someone fixes the deploy script. Attempts are used up, so the next one is the operator's call:"
    );
    deploy.broken.store(false, Ordering::SeqCst);
    println!("  $ gitstate retry production");
    gitstate_runtime::controls::retry(
        &*store,
        std::slice::from_ref(&name),
        gitstate_runtime::actions::Actor { by: "demo", via: "cli" },
        None,
        jiff::Timestamp::now(),
    )
    .await?;
    demo.reconcile_pass().await?;
    demo.until_in_sync(Duration::from_secs(10)).await?;
    println!(
        "{} converged on {}: a fresh attempt fixed it, and the drift alarm resolved.",
        p.good("✓"),
        &commits[6][..7],
    );

    step(&p, 6, "A release that deploys fine but fails its checks: rolled back in Git, and vetoed");
    demo.until_verified(Duration::from_secs(10)).await?;
    println!("{} is verified: it ran a 1 s soak with its smoke check passing.", &commits[6][..7]);
    commits.push(commit(repo, "feature: new checkout flow")?);
    *bad.lock().unwrap_or_else(|e| e.into_inner()) = commits[7].clone();
    git(repo, &["update-ref", REF, &commits[7]])?;
    demo.until_rolled_back(Duration::from_secs(15)).await?;
    println!("  $ git reflog -1 --format=%gs {REF}");
    println!("  {}", git(repo, &["reflog", "-1", "--format=%gs", REF])?);
    let vetoes = gitstate_runtime::Store::overrides(&*store)?.vetoes(&name).to_vec();
    let Some(veto) = vetoes.iter().find(|v| v.sha.as_str() == commits[7]) else {
        bail!("the demo's rolled-back commit was not vetoed");
    };
    println!(
        "  veto: {} by {} ({}): {}",
        veto.sha.short(7),
        veto.by,
        veto.via,
        veto.reason.as_deref().unwrap_or("")
    );
    demo.until_in_sync(Duration::from_secs(10)).await?;
    println!(
        "{} the ref is back on {}, which runs again; {} is vetoed here until someone runs gitstate unveto.",
        p.good("✓"),
        &commits[6][..7],
        &commits[7][..7],
    );

    step(&p, 7, "A hotfix deployed by hand, adopted into Git instead of overwritten");
    let hotfix = commit(repo, "hotfix: checkout total rounding")?;
    *served.lock().unwrap_or_else(|e| e.into_inner()) = hotfix.clone();
    println!("  $ gitstate adopt production --reason \"INC-7: rounding hotfix\"");
    let out = demo.check().await?;
    let actor = gitstate_runtime::actions::Actor { by: "demo", via: "cli" };
    let now = jiff::Timestamp::now();
    let report = &out.report.environments[0];
    let reason = Some("INC-7: rounding hotfix");
    gitstate_runtime::actions::adopt(&source, &*store, &name, report, actor, reason, None, now).await?;
    println!("  {}", git(repo, &["reflog", "-1", "--format=%gs", REF])?);
    demo.until_in_sync(Duration::from_secs(10)).await?;
    println!("{} the ref now says what runs ({}); nothing was redeployed.", p.good("✓"), &hotfix[..7]);

    step(&p, 8, "The fleet: where is a commit, and DORA's four keys from this history");
    use gitstate_core::ExpectedState as _;
    use gitstate_runtime::Store as _;
    let events = store.events_since(jiff::Timestamp::MIN).await?;
    let states = store.environments();
    println!("  $ gitstate where {}", &commits[4][..7]);
    let rev = source.rev_parse(&commits[4]).await?;
    let found = gitstate_runtime::fleet::where_is(&source, &states, &events, rev).await;
    print!("{}", indent(&super::fleet::where_text(&found)));
    println!("  $ gitstate dora");
    let until = jiff::Timestamp::now();
    let since = until.checked_sub(jiff::SignedDuration::from_hours(30 * 24))?;
    let keys = gitstate_runtime::dora::from_store(&source, &*store, &[], since, until).await?;
    print!("{}", indent(&super::fleet::dora_text(&keys)?));
    let whereabouts = if found.everywhere() { "runs everywhere" } else { "does not run everywhere yet" };
    println!(
        "{} {} {whereabouts}; the keys come from this demo's event log and the ref's reflog.",
        p.good("✓"),
        &commits[4][..7]
    );

    println!();
    println!("{}", p.bold("That is the whole loop. Point gitstate.toml at your repository and targets:"));
    println!("  gitstate check -c gitstate.toml        # what runs where, explained");
    println!(
        "  gitstate watch -c gitstate.toml        # the loop, with this dashboard at http://127.0.0.1:9464/"
    );
    // On a terminal, the dashboard stays up until Enter; piped or scripted, the demo never waits.
    if std::io::stdin().is_terminal() {
        println!("\nThe dashboard stays at http://{board}/ — press Enter to end the demo.");
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
    }
    Ok(exit::IN_SYNC)
}

/// Serves the dashboard on 127.0.0.1:9464 (watch's default) when it is free, else on a
/// port of the system's choosing.
async fn dashboard_listener(dashboard: Arc<Dashboard>) -> anyhow::Result<std::net::SocketAddr> {
    let handler = move |r: &crate::serve::Request| {
        dashboard.respond(&r.path, r.query.as_deref(), None).unwrap_or_else(|| {
            crate::serve::Response::new(crate::serve::StatusCode::NOT_FOUND, "text/plain", "not found\n")
        })
    };
    let handler = Arc::new(handler);
    let h = handler.clone();
    match crate::serve::serve(([127, 0, 0, 1], 9464).into(), 0, move |r| h(r)).await {
        Ok(addr) => Ok(addr),
        Err(_) => Ok(crate::serve::serve(([127, 0, 0, 1], 0).into(), 0, move |r| handler(r)).await?),
    }
}

struct Demo {
    controller: Controller,
    paint: Paint,
    last_line: String,
}

impl Demo {
    /// One pass of the runtime's controller, as `reconcile` runs it (its reports go to
    /// the dashboard's view).
    async fn pass(&mut self, mode: PassMode) -> anyhow::Result<PassOutcome> {
        Ok(self.controller.run_once(mode, false).await?.outcome)
    }

    async fn check(&mut self) -> anyhow::Result<PassOutcome> {
        self.pass(PassMode::Check).await
    }

    /// One reconcile pass; prints what it did in words.
    async fn reconcile_pass(&mut self) -> anyhow::Result<PassOutcome> {
        let out = self.pass(PassMode::Reconcile { dry_run: false }).await?;
        let p = &self.paint;
        for (_, reason, _) in &out.decisions {
            for a in &out.report.environments[0].actions {
                // Alarms are printed by the demo's sink, as on-call would receive them.
                if let ActionReport::Remediate { attempt, ok, detail } = a {
                    let verdict = if *ok == Some(true) { p.good("triggered") } else { p.bad("failed") };
                    println!("  deploy attempt {attempt}: {verdict} ({detail})");
                }
            }
            let phase = out.report.environments[0].phase;
            let line = format!("{}: {reason}", phase.map_or("?", |ph| ph.as_str()));
            if out.report.environments[0].actions.is_empty()
                && phase != Some(Phase::InSync)
                && line != self.last_line
            {
                println!("  {}", p.dim(&line));
            }
            self.last_line = line;
        }
        Ok(out)
    }

    /// Reconcile passes until the expected commit is verified.
    async fn until_verified(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.pass(PassMode::Reconcile { dry_run: false }).await?;
            if out.events.iter().any(|e| matches!(e.kind, EventKind::Verified { .. })) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the demo's commit was not verified in time");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reconcile passes until the loop rolls the ref back (a degraded soak).
    async fn until_rolled_back(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let out = self.reconcile_pass().await?;
            if out.events.iter().any(|e| matches!(e.kind, EventKind::RolledBack { .. })) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the demo's bad release was not rolled back in time");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reconcile passes until in sync; returns the recorded convergence lag.
    async fn until_in_sync(&mut self, limit: Duration) -> anyhow::Result<f64> {
        let deadline = Instant::now() + limit;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let out = self.pass(PassMode::Reconcile { dry_run: false }).await?;
            if out.report.in_sync {
                let lag = out.states.first().and_then(|(_, s)| s.last_convergence_lag_s);
                return lag.context("no convergence lag was recorded");
            }
            if Instant::now() > deadline {
                bail!("the demo target did not converge in time");
            }
        }
    }
}

/// `text`, two spaces in on every line.
fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn step(p: &Paint, n: u32, title: &str) {
    println!("\n{}", p.bold(&format!("{n}. {title}")));
}

/// Stands in for a deploy pipeline: "deploys" by making the service report the commit
/// after a short delay; can be broken on purpose.
struct DemoDeploy {
    served: Arc<Mutex<String>>,
    broken: AtomicBool,
}

#[async_trait]
impl Remediator for DemoDeploy {
    fn name(&self) -> &str {
        "demo-deploy"
    }
    async fn remediate(&self, req: &RemediationRequest) -> RemediationOutcome {
        if self.broken.load(Ordering::SeqCst) {
            return RemediationOutcome {
                ok: false,
                detail: "deploy.sh exited 1: registry unavailable".into(),
                exit_code: Some(1),
                output_tail: None,
            };
        }
        let served = self.served.clone();
        let sha = req.expected.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            *served.lock().unwrap_or_else(|e| e.into_inner()) = sha;
        });
        RemediationOutcome {
            ok: true,
            detail: format!("deploy of {} started", req.expected.short(7)),
            exit_code: Some(0),
            output_tail: None,
        }
    }
}

/// The demo's smoke check: fails while the service runs the bad release.
struct DemoCheck {
    served: Arc<Mutex<String>>,
    bad: Arc<Mutex<String>>,
}

#[async_trait]
impl Check for DemoCheck {
    fn name(&self) -> &str {
        "smoke"
    }
    async fn run(&self, _cx: &CheckContext<'_>) -> Result<(), String> {
        let served = self.served.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if served == *self.bad.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err("checkout answers HTTP 500".into());
        }
        Ok(())
    }
}

/// Prints alarm notifications as an on-call person would receive them.
struct PrintSink {
    paint: Paint,
}

#[async_trait]
impl AlarmSink for PrintSink {
    fn name(&self) -> &str {
        "demo"
    }
    async fn notify(&self, n: &AlarmNotification) -> Result<(), SinkError> {
        let p = &self.paint;
        match n.event {
            AlarmEvent::AlarmRaised => println!("  {} {} alarm: {}", p.bad("ALARM"), n.alarm, n.summary),
            AlarmEvent::AlarmResolved => println!("  {} {}", p.good("RESOLVED"), n.summary),
            AlarmEvent::AlarmRepeated => println!("  {} {}", p.warn("STILL OPEN"), n.summary),
            AlarmEvent::AlarmFiring => {}
        }
        Ok(())
    }
}

/// Serves deployment-meta.json with whatever commit `served` holds.
async fn serve(served: Arc<Mutex<String>>) -> anyhow::Result<u16> {
    let addr = crate::serve::serve(([127, 0, 0, 1], 0).into(), 0, move |_| {
        let sha = served.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let built_at = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        crate::serve::Response::new(
            crate::serve::StatusCode::OK,
            "application/json",
            format!(
                "{{\"schema\":1,\"sha\":\"{sha}\",\"ref\":\"{REF}\",\"environment\":\"production\",\"built_at\":\"{built_at}\"}}"
            ),
        )
    })
    .await?;
    Ok(addr.port())
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Demo Developer")
        .env("GIT_AUTHOR_EMAIL", "dev@example.invalid")
        .env("GIT_COMMITTER_NAME", "Demo Developer")
        .env("GIT_COMMITTER_EMAIL", "dev@example.invalid")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running git (the demo needs git on PATH)")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn commit(dir: &Path, msg: &str) -> anyhow::Result<String> {
    git(dir, &["commit", "-q", "--allow-empty", "-m", msg])?;
    git(dir, &["rev-parse", "HEAD"])
}
