//! `/openapi.json`, the OpenAPI 3.1 document of the endpoints the gateway
//! answers itself: it names exactly the endpoints the sources serve, and a
//! live gateway's answers to what schemathesis generates from it stay within
//! it (no 5xx; every status, content type, header and body as documented).
//!
//! The schemathesis test needs `COOPGATE_TEST_SCHEMATHESIS` (the program;
//! `.ci/run` installs it from PyPI and sets it). Without it the test says so
//! in one line and does not run, or fails under
//! `COOPGATE_TEST_REQUIRE_SERVICES=1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use coopgate_tests::billed::Billed;
use coopgate_tests::metered::{with_metered_plan, with_metered_price};
use syn::visit::Visit;

/// The admin token of the schemathesis run.
const TOKEN: &str = "cgadm_openapi-token";

/// (method, path) of every operation the document names.
fn documented(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "put", "post", "delete", "patch"] {
            if item.get(method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// The routes the site's axum routers serve, read from the sources.
#[derive(Default)]
struct Served {
    ops: BTreeSet<(String, String)>,
}

impl<'ast> Visit<'ast> for Served {
    /// A unit test's routers are not the site's.
    fn visit_item_mod(&mut self, module: &'ast syn::ItemMod) {
        if module.ident != "tests" {
            syn::visit::visit_item_mod(self, module);
        }
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        if call.method == "route" && call.args.len() == 2 {
            let path = match &call.args[0] {
                syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => s.value(),
                syn::Expr::Path(p) => {
                    let name = p.path.segments.last().expect("a name").ident.to_string();
                    match name.as_str() {
                        "SPEND_CAP_PATH" => coopgate::config::SPEND_CAP_PATH.to_owned(),
                        "PAGE" => coopgate::open_books::PAGE.to_owned(),
                        "JSON" => coopgate::open_books::JSON.to_owned(),
                        "JWKS" => coopgate::ops::JWKS.to_owned(),
                        "ROADMAP_PAGE" => coopgate::priorities::ROADMAP_PAGE.to_owned(),
                        "ROADMAP_JSON" => coopgate::priorities::ROADMAP_JSON.to_owned(),
                        other => panic!("a route path constant this test does not know: {other}"),
                    }
                }
                other => panic!("a route path this test cannot read: {}", quote_of(other)),
            };
            let mut methods = Vec::new();
            methods_of(&call.args[1], &mut methods);
            assert!(!methods.is_empty(), "route {path} serves no method this test can read");
            for m in methods {
                self.ops.insert((m, path.clone()));
            }
        }
        syn::visit::visit_expr_method_call(self, call);
    }
}

/// `get(h).post(h)`, `axum::routing::put(h)`: the methods, upper case.
fn methods_of(expr: &syn::Expr, out: &mut Vec<String>) {
    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];
    match expr {
        syn::Expr::Call(call) => {
            if let syn::Expr::Path(p) = &*call.func {
                let name = p.path.segments.last().expect("a name").ident.to_string();
                if METHODS.contains(&name.as_str()) {
                    out.push(name.to_uppercase());
                }
            }
        }
        syn::Expr::MethodCall(call) => {
            let name = call.method.to_string();
            if METHODS.contains(&name.as_str()) {
                out.push(name.to_uppercase());
            }
            methods_of(&call.receiver, out);
        }
        _ => {}
    }
}

fn quote_of(expr: &syn::Expr) -> String {
    format!("{:?}", std::mem::discriminant(expr))
}

fn source(file: &str) -> syn::File {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/src").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What the site's sources serve, but the portal (HTML forms behind a CSRF
/// token, not an API), which `site.rs` mounts with `route_service`.
fn served() -> BTreeSet<(String, String)> {
    let mut served = Served::default();
    for file in ["ops.rs", "admin.rs", "billing.rs", "open_books.rs", "priorities.rs", "site.rs"] {
        served.visit_file(&source(file));
    }
    served.ops
}

#[test]
fn the_openapi_document_names_exactly_the_endpoints_the_gateway_answers_itself() {
    let doc: serde_json::Value = serde_json::from_slice(coopgate::ops::OPENAPI).expect("the document is JSON");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."), "an OpenAPI 3.1 document");
    let documented = documented(&doc);
    let served = served();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "served but not in gateway/openapi.json: {undocumented:?}");
    assert!(unserved.is_empty(), "in gateway/openapi.json but not served: {unserved:?}");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap().iter().filter(|(k, _)| *k != "parameters") {
            assert!(op.get("operationId").is_some(), "{method} {path} has no operationId");
        }
    }
}

#[tokio::test]
async fn the_document_is_served_at_openapi_json() {
    let up = coopgate_tests::echo_upstream().await;
    let gw = coopgate_tests::gateway(coopgate_tests::config(up.addr)).await;
    let got = coopgate_tests::get(&gw.url("/openapi.json"), &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(&got.body[..], coopgate::ops::OPENAPI);
    let post = coopgate_tests::send(
        http::Request::post(gw.url("/openapi.json")).body(http_body_util::Full::new(bytes::Bytes::new())).unwrap(),
    )
    .await;
    coopgate_tests::assert_problem(&post, 405, "method-not-allowed");
    assert_eq!(post.header("allow"), "GET,HEAD");
}

/// The schemathesis program, or `None` after saying so once.
fn schemathesis() -> Option<PathBuf> {
    match std::env::var("COOPGATE_TEST_SCHEMATHESIS") {
        Ok(path) => Some(PathBuf::from(path)),
        Err(_) if std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("COOPGATE_TEST_SCHEMATHESIS is not set but COOPGATE_TEST_REQUIRE_SERVICES=1")
        }
        Err(_) => {
            eprintln!("the schemathesis test did not run: COOPGATE_TEST_SCHEMATHESIS is not set");
            None
        }
    }
}

fn digest(token: &str) -> String {
    let d = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_to_generated_requests_is_within_the_openapi_document() {
    let Some(program) = schemathesis() else { return };
    let (store, _cleanup) = coopgate_billing::store::testing::sqlite().await;
    let b = Billed::start(store, with_metered_price, |cfg| {
        with_metered_plan(cfg);
        cfg.admin.token_sha256 = Some(digest(TOKEN));
        cfg.admin.allow = vec!["127.0.0.0/8".parse().unwrap()];
        cfg.server.metrics_allow = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (_, key) = b.account("ada@example.org").await;
    let schema = b.gw.url("/openapi.json");
    let base = b.gw.url("");
    let out = tempfile::tempdir().unwrap();
    // Each part of the site with the credential it takes.
    let runs = [
        ("ops", None),
        ("open-books", None),
        ("admin", Some(format!("Authorization: Bearer {TOKEN}"))),
        ("billing", Some(format!("X-API-Key: {key}"))),
        ("priorities", Some(format!("X-API-Key: {key}"))),
    ];
    let mut failed = Vec::new();
    for (tag, header) in runs {
        let mut cmd = std::process::Command::new(&program);
        cmd.args(["run", &schema, "--url", base.trim_end_matches('/'), "--include-tag", tag])
            .args(["--checks", CHECKS, "--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "100", "--seed", "20261207", "--workers", "1", "--no-color"])
            .args(["--generation-database", "none", "--request-timeout", "10", "--suppress-health-check", "all"])
            .args(["--generation-with-security-parameters", "false"])
            .current_dir(out.path());
        if let Some(h) = &header {
            cmd.args(["--header", h]);
        }
        // The gateway runs on this test's runtime: wait for schemathesis off it.
        let ran = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        if !ran.status.success() {
            let text = String::from_utf8_lossy(&ran.stdout);
            let tail: Vec<&str> = text.lines().rev().take(120).collect();
            eprintln!("schemathesis, tag {tag}:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            failed.push(tag);
        }
    }
    assert!(failed.is_empty(), "answers outside gateway/openapi.json for the tags {failed:?} (output above)");
}

/// What schemathesis checks of every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";
