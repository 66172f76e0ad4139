//! `aerodbctl console` against a live cluster: the JSON API shows facts (an unreachable node is a
//! row with its error), a read-only console has no action, the local web security rules refuse
//! rebinding, cross-site and secret-less requests, and actions go through the same
//! RequestAction/ConfirmAction as aerodbctl with typed targets: a mistype or a decline executes
//! nothing. The last test drives the page in headless Chromium (tests/browser/console.mjs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aerodb_testkit as common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use aerodb::proto::kernel as kpb;
use aerodb::tls::identity::Role;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The Content-Security-Policy every response must carry.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'";

/// A running `aerodbctl console` (killed on drop).
struct Console {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, as printed.
    addr: String,
    /// The per-launch secret from the printed URL.
    secret: String,
    /// Every stdout line so far.
    lines: Arc<Mutex<Vec<String>>>,
}

/// An HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A refusal case: what, path, headers, expected status.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, u16);

/// One HTTP/1.1 request with exactly the given headers (plus Content-Length and
/// Connection: close), read to the end.
async fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the console");
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("Connection: close\r\n\r\n");
    req.push_str(body.unwrap_or_default());
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw)).await.expect("answer within the deadline").expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Resp { status, headers, body: body.to_string() }
}

impl Console {
    /// Starts `aerodbctl console --profile PROFILE --listen 127.0.0.1:0 EXTRA…` and waits
    /// (bounded) for the URL it prints.
    fn start(profile: &Path, extra: &[&str]) -> Self {
        let mut cmd = Command::new(aerodbctl_bin());
        cmd.arg("console").arg("--profile").arg(profile).args(["--listen", "127.0.0.1:0"]).args(extra);
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).stdin(Stdio::null());
        cmd.env_remove("AERODB_FAILPOINTS");
        let mut child = cmd.spawn().expect("spawn aerodbctl console");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let keep = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        // The console prints four lines; each must come within the deadline.
        let mut url = None;
        for _ in 0..16 {
            match rx.recv_timeout(WAIT) {
                Ok(l) if l.starts_with("open: ") => {
                    url = Some(l.trim_start_matches("open: ").to_string());
                    break;
                }
                Ok(_) => continue,
                Err(e) => panic!("aerodbctl console printed no URL ({e}); stdout: {:?}", lines.lock().unwrap()),
            }
        }
        let url = url.expect("the URL line");
        let rest = url.strip_prefix("http://").expect("http URL");
        let (addr, q) = rest.split_once("/?secret=").expect("URL with the secret");
        Console { child: Some(child), addr: addr.to_string(), secret: q.to_string(), lines }
    }

    fn url(&self) -> String {
        format!("http://{}/?secret={}", self.addr, self.secret)
    }

    fn cookie(&self) -> String {
        let port = self.addr.rsplit(':').next().unwrap();
        format!("aerodb_console_{port}={}", self.secret)
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, &[("Host", &self.addr), ("Cookie", &self.cookie())], None).await
    }

    async fn post(&self, path: &str, body: &Value) -> Resp {
        let b = body.to_string();
        http(
            &self.addr,
            "POST",
            path,
            &[("Host", &self.addr), ("Cookie", &self.cookie()), ("Origin", &self.origin())],
            Some(&b),
        )
        .await
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    async fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(c.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
        wait_for("aerodbctl console exits after SIGTERM", WAIT, || {
            let s = c.try_wait().ok().flatten();
            async move { s }
        })
        .await
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Every decided record in every node's kernel ledger, as (idempotency key, executed?).
fn ledger_decisions(c: &Cluster) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for i in 0..c.nodes.len() {
        for d in decided(&c.ledger(i)) {
            let executed = matches!(d.decision, aerodb::kernel::records::Decision::Executed { .. });
            out.push((d.idempotency_key.clone(), executed));
        }
    }
    out.sort();
    out
}

/// The stages the control plane's audit holds for `correlation_id`, in sequence order.
fn stages_of(c: &Cluster, correlation_id: &str) -> Vec<String> {
    c.audit_records(0)
        .into_iter()
        .filter(|b| b.draft.correlation_id == correlation_id)
        .map(|b| b.draft.stage.as_str().to_string())
        .collect()
}

fn role_of(cluster: &Value, node: &str) -> String {
    let n = cluster["data"]["nodes"].as_array().unwrap().iter().find(|n| n["node_id"] == node).unwrap();
    n["snapshot"]["authority"]["role"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_overview_lists_n1_to_n3_with_roles_and_a_killed_node_as_an_unreachable_row_with_its_error() {
    let mut c = Cluster::start(Spec::default()).await;
    let profile = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let console = Console::start(&profile, &[]);
    let r = console.get("/api/cluster").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let ids: Vec<&str> =
        v["data"]["nodes"].as_array().unwrap().iter().map(|n| n["node_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["n1", "n2", "n3"]);
    assert_eq!(role_of(&v, "n1"), "ROLE_PRIMARY");
    assert_eq!(role_of(&v, "n2"), "ROLE_REPLICA");
    assert_eq!(role_of(&v, "n3"), "ROLE_REPLICA");
    assert_eq!(v["data"]["observed"].as_array().unwrap().len(), 3, "every answering node's observation point");
    assert!(v["observed_at_unix_ms"].as_u64().unwrap() > 0, "the view says when it was observed");
    // Facts only (P7-A3): the control plane's answer verbatim plus the time; nothing added.
    let keys = |v: &Value| {
        let mut k = v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        k.sort();
        k
    };
    assert_eq!(keys(&v), ["data", "observed_at_unix_ms", "view"]);
    assert_eq!(keys(&v["data"]), ["approval_policies_differ", "cluster_id", "nodes", "observed", "primary_claims"]);
    assert_eq!(keys(&v["data"]["nodes"][1]), ["address", "node_id", "snapshot"]);

    c.nodes[2].proc.kill();
    let v = wait_for("the console shows n3 as unreachable", WAIT, || async {
        let v = console.get("/api/cluster").await.json();
        v["data"]["nodes"][2]["unreachable"].is_object().then_some(v)
    })
    .await;
    let n3 = &v["data"]["nodes"][2];
    assert_eq!(n3["node_id"], "n3");
    assert!(n3["snapshot"].is_null(), "never filled from an older snapshot: {n3}");
    assert!(!n3["unreachable"]["error"].as_str().unwrap().is_empty(), "the transport error is shown: {n3}");
    assert!(!n3["unreachable"]["status"].as_str().unwrap().is_empty());
    assert_eq!(role_of(&v, "n1"), "ROLE_PRIMARY", "the others are still shown");
    assert_eq!(v["data"]["observed"].as_array().unwrap().len(), 2);
    // The other views show it the same way; a view of that node alone fails UNAVAILABLE.
    for view in ["replication", "promotion", "wal", "snapshots"] {
        let r = console.get(&format!("/api/{view}")).await.json();
        assert!(r["data"]["nodes"][2]["unreachable"].is_object(), "{view}: {r}");
    }
    let r = console.get("/api/node?node=n3").await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.json()["error"]["outcome"], "NOT_EXECUTED");
    let r = console.get("/api/node?node=n1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["node_id"], "n1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_read_only_offers_no_action_and_refuses_a_forged_post_with_403() {
    let c = Cluster::start(Spec::default()).await;
    // Even an actor profile: without --allow-actions the console has no actions.
    let profile = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let console = Console::start(&profile, &[]);
    assert!(console.lines.lock().unwrap().iter().any(|l| l == "mode: read-only"));
    let s = console.get("/api/session").await.json();
    assert_eq!(s["actions"], false, "{s}");
    assert_eq!(s["role"], "actor");
    let before = ledger_decisions(&c);
    for step in ["prepare", "request", "confirm", "decline"] {
        let body = json!({"token": "x", "command": "demote", "target": "n1", "id": "x", "typed_target": "n1"});
        let r = console.post(&format!("/api/actions/{step}"), &body).await;
        assert_eq!(r.status, 403, "{step}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "CONSOLE_READ_ONLY");
    }
    assert_eq!(ledger_decisions(&c), before, "nothing reached a kernel");
    let requested = c.audit_records(0).into_iter().filter(|b| b.draft.stage.as_str() == "requested").count();
    assert_eq!(requested, 0, "the control plane never saw an action request");
    assert_eq!(role_of(&console.get("/api/cluster").await.json(), "n1"), "ROLE_PRIMARY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_wrong_host_cross_origin_and_missing_secret_and_sends_strict_headers_without_cors() {
    let c = Cluster::start(Spec::default()).await;
    let profile = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let console = Console::start(&profile, &[]);
    let port = console.addr.rsplit(':').next().unwrap().to_string();
    let (addr, cookie, origin) = (console.addr.clone(), console.cookie(), console.origin());
    let evil_host = format!("evil.example:{port}");
    let localhost = format!("localhost:{port}");
    let wrong_cookie = format!("aerodb_console_{port}=00");
    let api_with_url_secret = format!("/api/cluster?secret={}", console.secret);

    // The URL secret is traded for an HttpOnly SameSite=Strict cookie and dropped from the URL.
    let r = http(&addr, "GET", &format!("/?secret={}", console.secret), &[("Host", &addr)], None).await;
    assert_eq!(r.status, 303, "{r:?}");
    assert_eq!(r.header("location"), Some("/"));
    let set = r.header("set-cookie").unwrap();
    assert_eq!(set, format!("{cookie}; HttpOnly; SameSite=Strict; Path=/"));

    let ok = http(&addr, "GET", "/api/cluster", &[("Host", &addr), ("Cookie", &cookie)], None).await;
    assert_eq!(ok.status, 200);
    let ok = http(&addr, "GET", "/api/cluster", &[("Host", &localhost), ("Cookie", &cookie)], None).await;
    assert_eq!(ok.status, 200, "localhost:PORT is this console too");

    let cases: Vec<Case<'_>> = vec![
        ("DNS rebinding: another Host", "/api/cluster", vec![("Host", &evil_host), ("Cookie", &cookie)], 403),
        ("another port in Host", "/api/cluster", vec![("Host", "127.0.0.1:1"), ("Cookie", &cookie)], 403),
        ("no Host", "/api/cluster", vec![("Cookie", &cookie)], 403),
        ("rebinding with the URL secret", "/?secret=x", vec![("Host", &evil_host)], 403),
        (
            "cross-origin fetch",
            "/api/cluster",
            vec![("Host", &addr), ("Cookie", &cookie), ("Origin", "http://evil.example")],
            403,
        ),
        (
            "cross-site navigation",
            "/api/cluster",
            vec![("Host", &addr), ("Cookie", &cookie), ("Sec-Fetch-Site", "cross-site")],
            403,
        ),
        ("no secret", "/api/cluster", vec![("Host", &addr)], 401),
        ("no secret for the page", "/", vec![("Host", &addr)], 401),
        ("no secret for the script", "/console.js", vec![("Host", &addr)], 401),
        ("wrong secret", "/api/cluster", vec![("Host", &addr), ("Cookie", &wrong_cookie)], 401),
        ("wrong URL secret", "/?secret=0123", vec![("Host", &addr)], 401),
        ("URL secret on an API path", &api_with_url_secret, vec![("Host", &addr)], 401),
    ];
    for (what, path, headers, want) in &cases {
        let r = http(&addr, "GET", path, headers, None).await;
        assert_eq!(r.status, *want, "{what}: {r:?}");
        assert!(r.header("set-cookie").is_none(), "{what}: no cookie handed out");
        assert!(!r.body.contains(&console.secret), "{what}: the secret is never echoed");
        assert!(!r.body.contains("cluster_id"), "{what}: no data");
    }
    // A POST must carry this origin.
    let body = "{}";
    let r = http(&addr, "POST", "/api/actions/prepare", &[("Host", &addr), ("Cookie", &cookie)], Some(body)).await;
    assert_eq!(r.status, 403, "a POST without Origin: {r:?}");
    let r = http(
        &addr,
        "POST",
        "/api/actions/prepare",
        &[("Host", &addr), ("Cookie", &cookie), ("Origin", "http://evil.example")],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 403, "a cross-origin POST: {r:?}");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("Origin"), "{r:?}");

    // Every answer (pages, views, refusals) carries the strict headers and never a CORS grant.
    for (path, headers) in [
        ("/", vec![("Host", addr.as_str()), ("Cookie", cookie.as_str())]),
        ("/console.js", vec![("Host", &addr), ("Cookie", &cookie)]),
        ("/api/cluster", vec![("Host", &addr), ("Cookie", &cookie), ("Origin", &origin)]),
        ("/api/cluster", vec![("Host", &addr), ("Origin", "http://evil.example"), ("Cookie", &cookie)]),
        ("/api/cluster", vec![("Host", &addr)]),
    ] {
        let r = http(&addr, "GET", path, &headers, None).await;
        assert_eq!(r.header("content-security-policy"), Some(CSP), "{path} {headers:?}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert!(
            r.headers.iter().all(|(k, _)| !k.to_ascii_lowercase().starts_with("access-control-")),
            "no CORS header: {:?}",
            r.headers
        );
    }
    let page = http(&addr, "GET", "/", &[("Host", &addr), ("Cookie", &cookie)], None).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<script src=\"/console.js\""), "assets are served by the console itself");
    assert!(!page.body.contains("http://") && !page.body.contains("https://"), "nothing from the network");
    let s = console.get("/api/session").await;
    let text = s.body.to_lowercase();
    assert!(!text.contains("key\"") && !text.contains("private") && !text.contains("cert_sha256"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_refuses_a_non_loopback_listen_address_and_actions_without_an_actor_profile() {
    let c = Cluster::start(Spec::default()).await;
    let observer = c.pki.profile(Role::Observer, &c.controls[0].addr);
    let run = |args: &[&str]| {
        Command::new(aerodbctl_bin())
            .arg("console")
            .arg("--profile")
            .arg(&observer)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run aerodbctl console")
    };
    let out = run(&["--listen", "0.0.0.0:0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("open:"), "no URL printed");
    let out = run(&["--listen", "127.0.0.1:0", "--allow-actions"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs an actor profile"), "{out:?}");
}

/// prepare → request with `command`/`target`; returns (request answer, idempotency key).
async fn request(console: &Console, command: &str, target: &str) -> (Value, String) {
    let p = console.post("/api/actions/prepare", &json!({})).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let p = p.json();
    let key = p["idempotency_key"].as_str().unwrap().to_string();
    let r =
        console.post("/api/actions/request", &json!({"token": p["token"], "command": command, "target": target})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["idempotency_key"], key.as_str());
    (v, key)
}

fn confirm_body(req: &Value, typed: &str) -> Value {
    json!({"id": req["id"], "token": req["token"], "typed_target": typed})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_actions_demote_then_promote_by_typed_target_while_a_mistype_a_decline_and_a_stop_execute_nothing() {
    let c = Cluster::start(Spec::default()).await;
    let profile = c.pki.profile(Role::Actor, &c.controls[0].addr);
    let mut console = Console::start(&profile, &["--allow-actions"]);
    assert_eq!(console.get("/api/session").await.json()["actions"], true);
    let before = ledger_decisions(&c);

    // 1. A mistyped target: the control plane rejects the confirmation, nothing executes.
    let (req, key) = request(&console, "demote", "n1").await;
    let pending = &req["pending"];
    assert!(pending.get("confirmation_id").is_none(), "the confirmation id stays in the console: {pending}");
    assert_eq!(pending["explanation"]["action"]["target_node"], "n1");
    assert_eq!(pending["requirements"]["typed_target"], "n1");
    assert!(pending["explanation"]["plan_epoch"].as_u64().unwrap() >= 1);
    let lines = console.lines.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.starts_with(&format!("idempotency key: {key}"))), "key printed first: {lines:?}");
    let mistyped = console.post("/api/actions/confirm", &confirm_body(&req, "n2")).await;
    assert_eq!(mistyped.status, 409, "{}", mistyped.body);
    assert_eq!(mistyped.json()["error"]["outcome"], "NOT_EXECUTED");
    assert_eq!(mistyped.json()["error"]["source"], "control plane", "the control plane judged it, not the console");
    assert_eq!(ledger_decisions(&c), before, "a mistyped target executes nothing");
    assert_eq!(c.role(0).await, Some(kpb::Role::Primary));
    let mistype_correlation = pending["correlation_id"].as_str().unwrap().to_string();
    assert!(stages_of(&c, &mistype_correlation).contains(&"rejected".to_string()));
    assert!(!stages_of(&c, &mistype_correlation).contains(&"confirmed".to_string()));
    // The token and the pending action are spent: resending the same POST (a reload, a
    // replay) sends nothing.
    let again = console.post("/api/actions/confirm", &confirm_body(&req, "n1")).await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert_eq!(again.json()["error"]["code"], "CONSOLE_TOKEN_SPENT");
    assert_eq!(ledger_decisions(&c), before);
    assert!(!key.is_empty());

    // 2. A decline: nothing executes.
    let (req, _) = request(&console, "demote", "n1").await;
    let d = console.post("/api/actions/decline", &json!({"id": req["id"]})).await;
    assert_eq!(d.status, 200, "{}", d.body);
    assert_eq!(d.json()["outcome"], "NOT_EXECUTED");
    let declined_correlation = req["pending"]["correlation_id"].as_str().unwrap().to_string();
    assert_eq!(stages_of(&c, &declined_correlation), ["requested", "confirmation_requested", "declined"]);
    let late = console.post("/api/actions/confirm", &confirm_body(&req, "n1")).await;
    assert_eq!(late.status, 409, "a declined action cannot be confirmed: {}", late.body);
    assert_eq!(ledger_decisions(&c), before, "a decline executes nothing");

    // 3. Demote n1, then promote n2, each confirmed by typing the target.
    let (req, demote_key) = request(&console, "demote", "n1").await;
    let r = console.post("/api/actions/confirm", &confirm_body(&req, "n1")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["response"]["outcome"], "ACTION_OUTCOME_EXECUTED");
    c.wait_role(0, kpb::Role::Demoted).await;
    // The Fence reached a majority, not necessarily n2: wait until n2 holds n1's last entry, as
    // an operator reads off the view before promoting.
    let fenced = c.observe(0).await.and_then(|s| s.replication).map(|r| r.last_index).unwrap();
    common::wait_for("n2 holds n1's Fence", common::WAIT, || async {
        (c.observe(1).await?.replication?.last_index >= fenced).then_some(())
    })
    .await;
    let (req, promote_key) = request(&console, "promote", "n2").await;
    assert_eq!(req["pending"]["explanation"]["action"]["target_node"], "n2");
    let r = console.post("/api/actions/confirm", &confirm_body(&req, "n2")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["response"]["outcome"], "ACTION_OUTCOME_EXECUTED");
    c.wait_role(1, kpb::Role::Primary).await;
    let mut want = before.clone();
    want.push((demote_key.clone(), true));
    want.push((promote_key.clone(), true));
    want.sort();
    let mut got: Vec<(String, bool)> = ledger_decisions(&c);
    got.dedup(); // a decision is replicated to every node's ledger
    assert_eq!(got, want, "exactly the two confirmed actions were decided");

    // The audit shows both actions with every stage, requested by the actor's certificate.
    let audit = c.audit_records(0);
    for k in [&demote_key, &promote_key] {
        let stages: Vec<&str> =
            audit.iter().filter(|b| &b.draft.idempotency_key == k).map(|b| b.draft.stage.as_str()).collect();
        assert_eq!(stages, ["requested", "confirmation_requested", "confirmed", "executed"], "{k}");
        let who = audit.iter().find(|b| &b.draft.idempotency_key == k).unwrap().draft.identity.clone().unwrap();
        assert_eq!(who.role, "actor");
    }
    // The outcome lookup through the console shows the kernel's decision.
    let o = console.get(&format!("/api/outcome?key={demote_key}")).await.json();
    assert_eq!(o["data"]["status"], "KEY_STATUS_DECIDED", "{o}");

    // 4. Stopping the console declines the pending action it still holds.
    let (req, _) = request(&console, "demote", "n2").await;
    let held = req["pending"]["correlation_id"].as_str().unwrap().to_string();
    let status = console.stop().await;
    assert!(status.success(), "{status}");
    assert_eq!(stages_of(&c, &held), ["requested", "confirmation_requested", "declined"]);
    assert_eq!(c.role(1).await, Some(kpb::Role::Primary), "n2 still primary: nothing executed");
}

/// Where the browser test finds chromium, node and playwright-core, or why it cannot run.
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    let which = |name: &str| -> Option<PathBuf> {
        let out = Command::new("which").arg(name).output().ok()?;
        out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    let chromium = std::env::var("AERODB_CHROMIUM")
        .ok()
        .map(PathBuf::from)
        .or_else(|| which("chromium"))
        .ok_or("no `chromium` on PATH (.ci/run installs Debian's chromium)")?;
    let node = which("node").ok_or("no `node` on PATH")?;
    let pw = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if !pw.exists() {
        return Err(format!("{} is missing (run `npm ci` in tests/browser; .ci/run does)", pw.display()));
    }
    Ok((chromium, node))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium_shows_the_cluster_and_steers_it_only_through_typed_confirmation() {
    let (chromium, node) = match browser_tools() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIPPED console_in_headless_chromium…: {why}");
            return;
        }
    };
    let c = Cluster::start(Spec::default()).await;
    let observer = Console::start(&c.pki.profile(Role::Observer, &c.controls[0].addr), &[]);
    let auditor = Console::start(&c.pki.profile(Role::Auditor, &c.controls[0].addr), &[]);
    let actor = Console::start(&c.pki.profile(Role::Actor, &c.controls[0].addr), &["--allow-actions"]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile_dir = tempfile::tempdir().expect("tempdir");
    let shots = tempfile::tempdir().expect("tempdir");
    let before = ledger_decisions(&c);
    let n3_pid = c.nodes[2].proc.child.as_ref().unwrap().id();
    let script = root.join("tests/browser/console.mjs");
    let out = tokio::task::spawn_blocking({
        let (o, a, x) = (observer.url(), auditor.url(), actor.url());
        let profile_dir = profile_dir.path().to_path_buf();
        let shots_dir = shots.path().to_path_buf();
        move || {
            Command::new(node)
                .arg(script)
                .env("CHROMIUM", chromium)
                .env("OBSERVER_URL", o)
                .env("AUDITOR_URL", a)
                .env("ACTOR_URL", x)
                .env("USER_DATA_DIR", profile_dir)
                .env("KILL_N3_PID", n3_pid.to_string())
                // Screenshots go to docs/console only when asked for (so a test run leaves the
                // tree unchanged): AERODB_CONSOLE_SCREENSHOTS=1.
                .env(
                    "SCREENSHOT_DIR",
                    if std::env::var("AERODB_CONSOLE_SCREENSHOTS").is_ok() {
                        root.join("docs/console")
                    } else {
                        shots_dir.clone()
                    },
                )
                .current_dir(root.join("tests/browser"))
                .stdin(Stdio::null())
                .output()
                .expect("run node")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "the browser script failed: {stdout}\n{stderr}");
    // What the page did, checked on the kernels and the audit: exactly one demotion of n1 and
    // one promotion of n2 executed; the mistyped and the abandoned actions executed nothing.
    let result: Value = serde_json::from_str(
        stdout.lines().rev().find(|l| l.starts_with("RESULT ")).expect("RESULT line").trim_start_matches("RESULT "),
    )
    .unwrap();
    let mut got = ledger_decisions(&c);
    got.dedup();
    let mut want = before;
    want.push((result["demote_key"].as_str().unwrap().to_string(), true));
    want.push((result["promote_key"].as_str().unwrap().to_string(), true));
    want.sort();
    assert_eq!(got, want);
    for k in ["mistyped_key", "abandoned_key"] {
        let key = result[k].as_str().unwrap();
        let stages: Vec<String> = c
            .audit_records(0)
            .into_iter()
            .filter(|b| b.draft.idempotency_key == key)
            .map(|b| b.draft.stage.as_str().to_string())
            .collect();
        assert!(!stages.contains(&"confirmed".to_string()), "{k}: {stages:?}");
        let last = if k == "mistyped_key" { "rejected" } else { "declined" };
        assert_eq!(stages.last().map(String::as_str), Some(last), "{k}: {stages:?}");
    }
    assert_eq!(c.role(1).await, Some(kpb::Role::Primary));
}
