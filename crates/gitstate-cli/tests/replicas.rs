//! More than one replica (SPEC §14): real `watch` processes sharing a real PostgreSQL
//! (a throw-away server per test), real HTTP targets, a real Alertmanager.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use gitstate_testkit::{Alertmanager, Postgres, http_get};

fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A repository, a target serving what the deploy script last deployed, a database.
struct World {
    pg: Postgres,
    url: String,
    repo: Repo,
    c: Vec<String>,
    server: TestServer,
    dir: tempfile::TempDir,
}

impl World {
    fn new(commits: usize) -> Self {
        let pg = Postgres::start();
        let url = pg.database("gitstate");
        let repo = Repo::new();
        let c = repo.commits(commits, "c");
        repo.update_ref(REF, &c[0]);
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start_background();
        server.route("/meta", Behavior::File(dir.path().join("served.json")));
        let w = Self { pg, url, repo, c, server, dir };
        w.serve(&w.c[0].clone());
        w
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn serve(&self, sha: &str) {
        let tmp = self.path().join("served.tmp");
        std::fs::write(&tmp, format!("{{\"sha\":\"{sha}\"}}")).unwrap();
        std::fs::rename(tmp, self.path().join("served.json")).unwrap();
    }

    /// deploy.sh: logs "<sha> <attempt> <time>" to deploys.log, then runs `body`.
    fn deploy_script(&self, body: &str) {
        let script = format!(
            "#!/bin/sh\necho \"$GITSTATE_EXPECTED_SHA $GITSTATE_ATTEMPT $(date +%s.%N)\" >> deploys.log\n{body}\n"
        );
        let path = self.path().join("deploy.sh");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Each deploy logged: (sha, attempt, started at).
    fn deploys(&self) -> Vec<(String, u32, f64)> {
        std::fs::read_to_string(self.path().join("deploys.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut p = l.split(' ');
                Some((p.next()?.to_owned(), p.next()?.parse().ok()?, p.next()?.parse().ok()?))
            })
            .collect()
    }

    fn config(&self, policy: &str, extra: &str) -> PathBuf {
        self.config_every("2s", policy, extra)
    }

    /// As `config`, full passes every `interval`.
    fn config_every(&self, interval: &str, policy: &str, extra: &str) -> PathBuf {
        write_config(
            self.path(),
            &format!(
                "[source]\nrepo = \"{}\"\n[policy]\n{policy}\n{}  [environments.remediate]\n  command = [\"./deploy.sh\"]\n[watch]\ninterval = \"{interval}\"\nref_poll = \"200ms\"\nconverging_poll = \"500ms\"\njitter = \"0%\"\n[state]\npostgres = \"${{GITSTATE_TEST_DATABASE}}\"\nfailover = \"3s\"\n{extra}",
                self.repo.path().display(),
                http_env("production", "web", &[self.server.url("/meta")], ""),
            ),
        )
    }

    fn replica(&self, cfg: &Path) -> Replica {
        let port = gitstate_testkit::free_port();
        let child = gitstate()
            .args(["watch", "--listen", &format!("127.0.0.1:{port}"), "-c"])
            .arg(cfg)
            .env("GITSTATE_TEST_DATABASE", &self.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Replica { child, port };
        wait_for(Duration::from_secs(30), "the replica to be ready", || r.role().is_some());
        r
    }

    fn gitstate(&self, cfg: &Path, args: &[&str]) -> Run {
        run(gitstate().args(args).arg("-c").arg(cfg).env("GITSTATE_TEST_DATABASE", &self.url))
    }

    /// A deploy script that makes the target serve what it deploys, and two replicas.
    fn converging_pair(&self) -> (PathBuf, Replica, Replica) {
        self.deploy_script(
            "printf '{\"sha\":\"%s\"}' \"$GITSTATE_EXPECTED_SHA\" > served.tmp && mv served.tmp served.json",
        );
        let cfg = self.config("grace = \"0s\"\nsettle = \"0s\"", "");
        let a = self.replica(&cfg);
        let b = self.replica(&cfg);
        (cfg, a, b)
    }

    /// Events of one kind the database holds.
    fn events(&self, kind: &str) -> usize {
        self.pg
            .sql(
                "gitstate",
                &format!("SELECT count(*) FROM gitstate_events WHERE event->>'event' = '{kind}'"),
            )
            .parse()
            .unwrap()
    }
}

/// A running `gitstate watch`, killed on drop.
struct Replica {
    child: Child,
    port: u16,
}

impl Replica {
    /// "leader" or "standby" once ready.
    fn role(&self) -> Option<String> {
        match http_get(self.port, "/readyz") {
            Ok((200, body)) => body.trim().strip_prefix("ready: ").map(str::to_owned),
            _ => None,
        }
    }

    /// The passes this replica has run (its `gitstate_reconcile_passes_total`, every result).
    fn passes(&self) -> Option<f64> {
        let (_, body) = http_get(self.port, "/metrics").ok()?;
        Some(passes_in(&body))
    }

    fn leader_metric(&self) -> Option<String> {
        let (_, body) = http_get(self.port, "/metrics").ok()?;
        body.lines().find_map(|l| l.strip_prefix("gitstate_leader ").map(str::to_owned))
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until each replica has run `n` more passes by its own pass counter: time for
/// anything those passes would do (a second deploy, a write) to show, without a fixed sleep.
fn passes_go_by(replicas: &[&Replica], n: f64) {
    let start: Vec<f64> = replicas.iter().map(|r| r.passes().unwrap_or(0.0)).collect();
    wait_for(Duration::from_secs(30), &format!("{n} more passes of each replica"), || {
        replicas.iter().zip(&start).all(|(r, s)| r.passes().is_some_and(|p| p >= s + n))
    });
}

/// The leader and the standby of a pair, once exactly one leads.
fn roles<'a>(a: &'a Replica, b: &'a Replica) -> (&'a Replica, &'a Replica) {
    let mut found = None;
    wait_for(Duration::from_secs(20), "exactly one leader", || {
        found = match (a.role().as_deref(), b.role().as_deref()) {
            (Some("leader"), Some("standby")) => Some((a, b)),
            (Some("standby"), Some("leader")) => Some((b, a)),
            _ => None,
        };
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn two_replicas_deploy_every_expected_commit_exactly_once() {
    let w = World::new(51);
    let (cfg, a, b) = w.converging_pair();
    let (leader, standby) = roles(&a, &b);
    assert_eq!(leader.leader_metric().as_deref(), Some("1"));
    assert_eq!(standby.leader_metric().as_deref(), Some("0"));

    for (i, c) in w.c.iter().enumerate().skip(1) {
        w.repo.update_ref(REF, c);
        wait_for(Duration::from_secs(30), &format!("commit {i} deployed"), || {
            std::fs::read_to_string(w.path().join("served.json")).unwrap_or_default().contains(c.as_str())
        });
    }
    // Passes enough for a second deploy to show up if either replica were to make one.
    passes_go_by(&[leader, standby], 3.0);
    let deploys = w.deploys();
    for c in &w.c[1..] {
        let n = deploys.iter().filter(|(sha, _, _)| sha == c).count();
        assert_eq!(n, 1, "{c} deployed {n} times: {deploys:?}");
    }
    assert_eq!(deploys.len(), 50);

    // The standby serves the shared state: production in sync at the last commit.
    let (_, body) = http_get(standby.port, "/status").unwrap();
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["environments"][0]["expected"], w.c[50].as_str(), "{st}");

    // `reconcile` while a watch leads: exit 2 naming the holder.
    let r = w.gitstate(&cfg, &["reconcile"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let pid = leader.child.id();
    assert!(r.stderr.contains(&format!("pid {pid}")), "{}", r.stderr);

    // Operators' controls and status against the database.
    let r = w.gitstate(&cfg, &["suspend", "production", "--reason", "incident 42"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = w.gitstate(&cfg, &["status", "-o", "json"]);
    assert_eq!(r.json()["environments"][0]["suspension"]["reason"], "incident 42", "{}", r.stdout);
    wait_for(Duration::from_secs(10), "the leader to see the suspension", || {
        let (_, body) = http_get(leader.port, "/status").unwrap();
        body.contains("incident 42")
    });
    assert_eq!(w.gitstate(&cfg, &["resume", "production"]).code, 0);
    assert_eq!(w.events("suspended"), 1);
    assert_eq!(w.events("remediation_started"), 50);
}

#[test]
fn a_killed_leader_mid_remediation_is_replaced_without_repeating_its_attempt() {
    let w = World::new(2);
    // Every deploy fails, slowly: the leader is killed while the first one runs.
    w.deploy_script("sleep 2; exit 1");
    let am = Alertmanager::start();
    // Full passes ten minutes apart: the new leader acts because it took over, not because
    // a pass happened to be due.
    let cfg = w.config_every(
        "10m",
        "grace = \"0s\"\nsettle = \"1s\"\nbackoff = \"4s\"\nmax_attempts = 2",
        &format!("[alerts.alertmanager]\nurl = \"{}\"\n", am.url()),
    );
    let mut a = w.replica(&cfg);
    let mut b = w.replica(&cfg);
    let a_leads = roles(&a, &b).0.port == a.port;
    w.repo.update_ref(REF, &w.c[1]);
    wait_for(Duration::from_secs(20), "the first attempt", || !w.deploys().is_empty());
    let killed_at = Instant::now();
    let survivor = if a_leads {
        a.kill9();
        &b
    } else {
        b.kill9();
        &a
    };
    wait_for(Duration::from_secs(10), "the standby to take over", || {
        survivor.role().as_deref() == Some("leader")
    });
    // Within failover (3 s; a try every second), with room for a loaded machine.
    assert!(killed_at.elapsed() < Duration::from_secs(8), "took {:?}", killed_at.elapsed());

    // The alarm is raised only once the last attempt has settled, and full passes are ten
    // minutes apart: nothing more can happen, so the record is read at once.
    wait_for(Duration::from_secs(40), "the drift alarm", || w.events("alarm_raised") >= 1);
    let deploys = w.deploys();
    let attempts: Vec<u32> = deploys.iter().map(|d| d.1).collect();
    assert_eq!(attempts, [1, 2], "attempt 1 not repeated, the count kept: {deploys:?}");
    // The backoff counts from the attempt as gitstate recorded it (the script's own clock
    // reads later, by however long the shell took to start: the gap it sees can be shorter).
    let started: Vec<jiff::Timestamp> = w
        .pg
        .sql(
            "gitstate",
            "SELECT event->>'at' FROM gitstate_events WHERE event->>'event' = 'remediation_started' ORDER BY id",
        )
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(started.len(), 2);
    let gap = started[1].duration_since(started[0]);
    assert!(
        gap >= jiff::SignedDuration::from_secs(4),
        "attempt 2 waited for its backoff: {gap:?} {deploys:?}"
    );
    assert_eq!(w.events("alarm_raised"), 1);
    let alerts: Vec<serde_json::Value> =
        am.alerts().into_iter().filter(|a| a["labels"]["alertname"] == "GitstateDrift").collect();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let r = w.gitstate(&cfg, &["status", "-o", "json"]);
    assert_eq!(r.json()["environments"][0]["incident"]["attempts"], 2, "{}", r.stdout);
    drop((a, b));
}

#[test]
fn a_leader_cut_from_the_database_stops_acting_and_rejoins_as_standby() {
    let w = World::new(3);
    let (_, a, b) = w.converging_pair();
    let (leader, standby) = roles(&a, &b);
    let leader_pid = leader.child.id();

    // Its session terminated while the process runs on.
    let cut = w.pg.sql(
        "gitstate",
        &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'gitstate:{leader_pid}'"),
    );
    assert_ne!(cut, "0");
    let cut_at = Instant::now();
    wait_for(Duration::from_secs(10), "the cut leader to stand down", || {
        leader.role().as_deref() == Some("standby")
    });
    assert!(
        cut_at.elapsed() < Duration::from_secs(3),
        "stood down after {:?} (failover 3 s)",
        cut_at.elapsed()
    );
    wait_for(Duration::from_secs(10), "the other to lead", || standby.role().as_deref() == Some("leader"));
    assert_eq!(leader.leader_metric().as_deref(), Some("0"));

    // A ref move: deployed once, by the new leader; the former one writes nothing.
    w.repo.update_ref(REF, &w.c[1]);
    wait_for(Duration::from_secs(20), "the deploy", || w.deploys().len() == 1);
    passes_go_by(&[leader, standby], 3.0);
    assert_eq!(w.deploys().len(), 1);
    assert_eq!(w.events("remediation_started"), 1);
    // It rejoined: connected again, as a standby.
    let sessions = w.pg.sql(
        "gitstate",
        &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'gitstate:{leader_pid}'"),
    );
    assert_ne!(sessions, "0", "the former leader reconnected");
    assert_eq!(leader.role().as_deref(), Some("standby"));
}

#[test]
fn a_database_restart_under_a_running_pair_loses_nothing() {
    let w = World::new(3);
    let (cfg, a, b) = w.converging_pair();
    roles(&a, &b);
    w.repo.update_ref(REF, &w.c[1]);
    wait_for(Duration::from_secs(20), "the first deploy", || w.deploys().len() == 1);
    wait_for(Duration::from_secs(20), "the convergence", || w.events("converged") >= 1);

    w.pg.restart();
    // Both reconnect; one leads.
    roles(&a, &b);
    w.repo.update_ref(REF, &w.c[2]);
    wait_for(Duration::from_secs(30), "the deploy after the restart", || w.deploys().len() == 2);
    passes_go_by(&[&a, &b], 3.0);
    let shas: Vec<String> = w.deploys().into_iter().map(|d| d.0).collect();
    assert_eq!(shas, [w.c[1].clone(), w.c[2].clone()]);
    // What was written before the restart is there: the first convergence.
    assert!(w.events("converged") >= 1);
    let r = w.gitstate(&cfg, &["status", "-o", "json"]);
    assert_eq!(r.json()["environments"][0]["expected"], w.c[2].as_str(), "{}", r.stdout);
}

#[test]
fn a_frozen_leader_loses_the_lead_within_failover() {
    let w = World::new(3);
    let (_, a, b) = w.converging_pair();
    let (leader, standby) = roles(&a, &b);
    let pid = leader.child.id();
    // The leader's machine freezes: its socket stays open, it says nothing more.
    let signal = |sig: &str| {
        assert!(std::process::Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
    };
    signal("-STOP");
    let frozen_at = Instant::now();
    wait_for(Duration::from_secs(20), "the standby to take over", || {
        standby.role().as_deref() == Some("leader")
    });
    // The server ends the silent session after failover (3 s); the standby tries every 1 s.
    assert!(frozen_at.elapsed() < Duration::from_secs(8), "took {:?}", frozen_at.elapsed());
    w.repo.update_ref(REF, &w.c[1]);
    wait_for(Duration::from_secs(20), "the new leader's deploy", || w.deploys().len() == 1);
    // Thawed, the former leader finds its session gone: standby, and it writes nothing.
    signal("-CONT");
    wait_for(Duration::from_secs(20), "the thawed replica to stand by", || {
        leader.role().as_deref() == Some("standby")
    });
    w.repo.update_ref(REF, &w.c[2]);
    wait_for(Duration::from_secs(20), "the next deploy", || w.deploys().len() == 2);
    passes_go_by(&[leader, standby], 3.0);
    assert_eq!(w.deploys().len(), 2, "{:?}", w.deploys());
    assert_eq!(w.events("remediation_started"), 2);
}

/// SPEC §17: a cause open when its leader dies stays one page. The standby that takes
/// over reads the cause from the database, tells nobody again, and its resolution carries
/// the same id.
#[test]
fn a_cause_open_at_failover_is_not_paged_twice_and_keeps_its_id() {
    let w = World::new(1);
    let hook = TestServer::start_background();
    hook.route("/hook", Behavior::Status(200));
    let envs: String = ["production", "staging"]
        .iter()
        .map(|n| {
            w.repo.update_ref(&format!("refs/heads/environments/{n}"), &w.c[0]);
            format!(
                "[[environments]]\nname = \"{n}\"\nref = \"refs/heads/environments/{n}\"\n  [[environments.targets]]\n  name = \"web\"\n  [environments.targets.http]\n  urls = [\"{}\"]\n",
                w.server.url("/meta")
            )
        })
        .collect();
    let cfg = write_config(
        w.path(),
        &format!(
            "[source]\nrepo = \"{}\"\n[policy]\ngrace = \"0s\"\nunreachable_after = 1\n{envs}[alerts.webhook]\nurl = \"{}\"\n[watch]\ninterval = \"1s\"\nref_poll = \"200ms\"\nconverging_poll = \"500ms\"\njitter = \"0%\"\n[state]\npostgres = \"${{GITSTATE_TEST_DATABASE}}\"\nfailover = \"3s\"\n",
            w.repo.path().display(),
            hook.url("/hook")
        ),
    );
    let pages = || -> Vec<serde_json::Value> {
        hook.bodies("/hook").iter().map(|b| serde_json::from_str(b).unwrap()).collect()
    };
    let mut a = w.replica(&cfg);
    let mut b = w.replica(&cfg);
    let a_leads = roles(&a, &b).0.port == a.port;
    // The origin both environments answer from goes down.
    w.server.route("/meta", Behavior::Status(503));
    wait_for(Duration::from_secs(30), "the cause's page", || !pages().is_empty());
    let survivor = if a_leads {
        a.kill9();
        &b
    } else {
        b.kill9();
        &a
    };
    wait_for(Duration::from_secs(15), "the standby to take over", || {
        survivor.role().as_deref() == Some("leader")
    });
    passes_go_by(&[survivor], 4.0);
    let opened = pages();
    assert_eq!(opened.len(), 1, "not paged again after failover: {opened:#?}");
    assert_eq!(opened[0]["event"], "cause_opened");
    assert_eq!(opened[0]["cause"], format!("origin:127.0.0.1:{}", w.server.port));
    // The origin is back: the new leader resolves the cause the old one opened.
    w.server.route("/meta", Behavior::File(w.path().join("served.json")));
    wait_for(Duration::from_secs(30), "the cause resolved", || pages().len() >= 2);
    passes_go_by(&[survivor], 3.0);
    let all = pages();
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[1]["event"], "cause_resolved");
    assert_eq!(all[1]["id"], all[0]["id"], "the same fingerprint after failover");
}
