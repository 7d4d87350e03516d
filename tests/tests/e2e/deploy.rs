//! What `deploy/` ships agrees with what the binary accepts: every config
//! passes `coopgate check` with exactly the secrets its deployment provides,
//! and the compose file, the Kubernetes manifests, the Dockerfile, the systemd
//! unit and the monitoring files (read as YAML, TOML and JSON, not grepped)
//! name the ports, paths, variables and metrics the gateway really has.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use coopgate_tests::process::coopgate;
use serde::Deserialize as _;
use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
}

/// Every document of a YAML file, with merge keys (`<<: *anchor`) applied.
fn yaml_documents(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = serde_yaml_ng::Value::deserialize(doc).unwrap_or_else(|e| panic!("deploy/{path}: {e}"));
            value.apply_merge().unwrap_or_else(|e| panic!("deploy/{path}: {e}"));
            serde_yaml_ng::from_value(value).unwrap_or_else(|e| panic!("deploy/{path}: {e}"))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn yaml(path: &str) -> Value {
    let mut docs = yaml_documents(path);
    assert_eq!(docs.len(), 1, "deploy/{path} holds one document");
    docs.remove(0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// `KEY=value` lines (comments and blank lines skipped).
fn env_file(path: &str) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("deploy/{path}: `{l}` is not KEY=value"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// The `env:NAME` secrets a config's values name (comments are not values).
fn env_names(config: &str) -> BTreeSet<String> {
    fn walk(v: &toml::Value, names: &mut BTreeSet<String>) {
        match v {
            toml::Value::String(s) => names.extend(s.strip_prefix("env:").map(str::to_owned)),
            toml::Value::Array(items) => items.iter().for_each(|i| walk(i, names)),
            toml::Value::Table(t) => t.values().for_each(|i| walk(i, names)),
            _ => {}
        }
    }
    let mut names = BTreeSet::new();
    walk(&toml::Value::Table(parse_toml("a config", config)), &mut names);
    names
}

/// Runs `coopgate check` on `config` with exactly `env` as its environment,
/// so a secret the deployment does not provide fails the check.
fn passes_check(what: &str, config: &str, env: &BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coopgate.toml");
    std::fs::write(&path, config).unwrap();
    let out = coopgate().env_clear().envs(env).args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{what} fails `coopgate check` with the environment its deployment provides ({:?}):\n{}",
        env.keys().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn parse_toml(what: &str, text: &str) -> toml::Table {
    text.parse().unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn listen_port(config: &toml::Table) -> u16 {
    let listen = config["server"]["listen"].as_str().expect("server.listen");
    listen.parse::<std::net::SocketAddr>().expect("an address").port()
}

fn shutdown_grace_secs(config: &toml::Table) -> u64 {
    let grace = config["server"]["shutdown_grace"].as_str().expect("server.shutdown_grace is set");
    humantime_secs(grace)
}

fn humantime_secs(text: &str) -> u64 {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().unwrap_or_else(|_| panic!("`{text}` is not a duration"));
    match &text[digits.len()..] {
        "" | "s" => n,
        "m" | "min" => n * 60,
        other => panic!("unexpected unit {other:?} in {text}"),
    }
}

/// Whether `addr` lies in one of the CIDRs of `server.trusted_proxies`.
fn trusted(config: &toml::Table, addr: std::net::Ipv4Addr) -> bool {
    config["server"]["trusted_proxies"].as_array().expect("server.trusted_proxies").iter().any(|net| {
        let (base, bits) = net.as_str().unwrap().split_once('/').unwrap();
        let (Ok(base), Ok(bits)) = (base.parse::<std::net::Ipv4Addr>(), bits.parse::<u32>()) else { return false };
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
        u32::from(base) & mask == u32::from(addr) & mask
    })
}

#[test]
fn the_single_machine_config_passes_check_with_the_secrets_of_its_env_file() {
    let config = read("systemd/coopgate.toml");
    let env = env_file("systemd/env.example");
    assert_eq!(env_names(&config), env.keys().cloned().collect(), "env.example lists exactly the config's secrets");
    passes_check("deploy/systemd/coopgate.toml", &config, &env);
}

#[test]
fn the_systemd_unit_runs_the_config_it_ships_with_hardened_and_drains_before_it_is_killed() {
    let unit = read("systemd/coopgate.service");
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |key: &str| settings.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    assert_eq!(value("ExecStart"), Some("/usr/local/bin/coopgate serve --config /etc/coopgate/coopgate.toml"));
    assert_eq!(value("ExecStartPre"), Some("/usr/local/bin/coopgate check --config /etc/coopgate/coopgate.toml"));
    assert_eq!(value("EnvironmentFile"), Some("/etc/coopgate/env"));
    for (key, expected) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "coopgate"),
    ] {
        assert_eq!(value(key), Some(expected), "{key}");
    }
    // The config keeps everything it writes in the state folder, the only
    // writable place under ProtectSystem=strict.
    let config = parse_toml("systemd/coopgate.toml", &read("systemd/coopgate.toml"));
    let store = config["store"]["url"].as_str().unwrap();
    assert!(store.starts_with("sqlite:///var/lib/coopgate/"), "{store}");
    let key = config["tokens"]["signing_key_file"].as_str().unwrap();
    assert!(key.starts_with("/var/lib/coopgate/"), "{key}");
    let stop = humantime_secs(value("TimeoutStopSec").unwrap().trim());
    assert!(stop > shutdown_grace_secs(&config), "TimeoutStopSec must outlast server.shutdown_grace");

    // systemd's own reading of the unit: every setting known and well-formed.
    // It checks that the binary and the env file exist, so a copy points at
    // this build's binary and an empty env file.
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze did not run: it is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    std::fs::write(&env, "").unwrap();
    let copy = dir.path().join("coopgate.service");
    let text = unit
        .replace("/usr/local/bin/coopgate", env!("CARGO_BIN_EXE_coopgate-under-test"))
        .replace("/etc/coopgate/env", env.to_str().unwrap());
    std::fs::write(&copy, text).unwrap();
    let out = std::process::Command::new(analyze).arg("verify").arg(&copy).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

/// The path of a program on `PATH`.
fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()))
        .ok_or(())
}

#[test]
fn the_dockerfile_runs_the_default_config_as_non_root_and_checks_its_health_with_the_binary() {
    let text = read("Dockerfile");
    // Continuation lines joined, comments dropped: one instruction per entry.
    let joined = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    let instructions: Vec<String> =
        joined.replace("\\\n", " ").lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    let runtime: Vec<&String> = instructions.iter().skip_while(|i| !i.starts_with("FROM gcr.io/distroless")).collect();
    assert!(!runtime.is_empty(), "the runtime stage is distroless");
    let find = |word: &str| {
        runtime.iter().filter(|i| i.starts_with(word)).map(|i| i[word.len()..].trim().to_owned()).collect::<Vec<_>>()
    };
    let json = |s: &str| -> Vec<String> { strings(&serde_json::from_str(s).unwrap()) };

    let config = parse_toml("systemd/coopgate.toml", &read("systemd/coopgate.toml"));
    let port = listen_port(&config);
    assert_eq!(find("EXPOSE"), [port.to_string()]);
    assert_eq!(find("USER"), ["65532:65532"], "runs as distroless's non-root user");
    assert!(find("COPY").contains(&"deploy/systemd/coopgate.toml /etc/coopgate/coopgate.toml".to_owned()));
    assert_eq!(json(&find("ENTRYPOINT")[0]), ["/usr/local/bin/coopgate"]);
    assert_eq!(json(&find("CMD")[0]), ["serve", "--config", "/etc/coopgate/coopgate.toml"]);
    assert_eq!(find("VOLUME"), [r#"["/var/lib/coopgate"]"#]);
    let health = find("HEALTHCHECK");
    let health = json(health[0].split_once("CMD ").expect("HEALTHCHECK CMD").1);
    assert_eq!(health[..3], ["/usr/local/bin/coopgate", "health", "--url"]);
    assert_eq!(health[3], format!("http://127.0.0.1:{port}/healthz"));

    match std::env::var("COOPGATE_TEST_HADOLINT") {
        Ok(hadolint) => {
            let out = std::process::Command::new(hadolint).arg(deploy("Dockerfile")).output().unwrap();
            assert!(
                out.status.success(),
                "hadolint:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) if std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("COOPGATE_TEST_HADOLINT is not set but COOPGATE_TEST_REQUIRE_SERVICES=1")
        }
        Err(_) => eprintln!("hadolint did not run: COOPGATE_TEST_HADOLINT is not set"),
    }
}

#[test]
fn the_compose_stack_agrees_with_its_config_its_secrets_and_its_balancer() {
    let compose = yaml("compose.yaml");
    let services = compose["services"].as_object().expect("services");
    let text = read("compose/coopgate.toml");
    let config = parse_toml("compose/coopgate.toml", &text);
    let port = listen_port(&config);

    // The secrets: the env file the replicas read provides exactly the
    // config's, and the config passes with them.
    let env = env_file("compose/coopgate.env.example");
    assert_eq!(
        env_names(&text),
        env.keys().cloned().collect(),
        "coopgate.env.example lists exactly the config's secrets"
    );
    passes_check("deploy/compose/coopgate.toml", &text, &env);
    let gitignore = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.gitignore")).unwrap();
    assert!(gitignore.lines().any(|l| l == "deploy/compose/*.env"), "the filled-in env files are never committed");
    // PostgreSQL's own settings agree with the store URL the replicas use.
    let pg = env_file("compose/postgres.env.example");
    let store = url::Url::parse(&env["COOPGATE_STORE_URL"]).unwrap();
    assert_eq!(store.username(), pg["POSTGRES_USER"]);
    assert_eq!(store.password(), Some(pg["POSTGRES_PASSWORD"].as_str()));
    assert_eq!(store.path(), format!("/{}", pg["POSTGRES_DB"]));
    assert!(services.contains_key(store.host_str().unwrap()), "the store's host is a service");

    let replicas: Vec<&String> = services.keys().filter(|k| k.starts_with("coopgate-")).collect();
    assert_eq!(replicas.len(), 2, "two replicas");
    for name in &replicas {
        let s = &services[name.as_str()];
        let mounted = strings(&s["volumes"]);
        let config_mount = mounted
            .iter()
            .find(|v| v.starts_with("./compose/coopgate.toml:"))
            .unwrap_or_else(|| panic!("{name} mounts compose/coopgate.toml"));
        let target = config_mount.split(':').nth(1).unwrap();
        assert_eq!(strings(&s["command"]), ["serve", "--config", target], "{name} serves the mounted config");
        assert_eq!(strings(&s["env_file"]), ["compose/coopgate.env"]);
        let key_dir = Path::new(config["tokens"]["signing_key_file"].as_str().unwrap()).parent().unwrap();
        assert!(
            mounted.iter().any(|v| v.starts_with("coopgate-shared:") && v.ends_with(key_dir.to_str().unwrap())),
            "{name} shares the signing key's folder with the other replica"
        );
        let check = strings(&s["healthcheck"]["test"]);
        assert_eq!(check[..4], ["CMD", "/usr/local/bin/coopgate", "health", "--url"]);
        assert_eq!(check[4], format!("http://127.0.0.1:{port}/readyz"));
        let grace = humantime_secs(s["stop_grace_period"].as_str().unwrap());
        assert!(grace > shutdown_grace_secs(&config), "{name}: stop_grace_period outlasts server.shutdown_grace");
    }
    assert_eq!(strings(&services["migrate"]["command"])[..2], ["migrate", "--config"]);

    // The balancer sends to both replicas on their port, and its address is
    // the one the replicas believe about X-Forwarded-For.
    let lb = &services["lb"];
    let lb_addr: std::net::Ipv4Addr = lb["networks"]["coopgate"]["ipv4_address"].as_str().unwrap().parse().unwrap();
    assert!(trusted(&config, lb_addr), "the balancer's address is in server.trusted_proxies");
    for (name, s) in services {
        if let Some(addr) = s["networks"]["coopgate"]["ipv4_address"].as_str()
            && name != "lb"
        {
            assert!(!trusted(&config, addr.parse().unwrap()), "{name} is not trusted: only the balancer is");
        }
    }
    let nginx = read("compose/nginx.conf");
    for name in &replicas {
        assert!(nginx.contains(&format!("server {name}:{port} ")), "nginx.conf balances to {name}:{port}");
    }
    assert!(nginx.contains("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"));
    assert!(nginx.contains("proxy_buffering off;"), "downloads stream through the balancer");
    for route in config["routes"].as_array().unwrap() {
        let host = url::Url::parse(route["upstream"].as_str().unwrap()).unwrap().host_str().unwrap().to_owned();
        assert!(services.contains_key(&host), "route {}'s upstream {host} is a service", route["name"]);
    }
}

#[test]
fn the_kubernetes_manifests_agree_with_their_config_their_secrets_and_each_other() {
    let kustomization = yaml("k8s/kustomization.yaml");
    let mut objects: BTreeMap<(String, String), Value> = BTreeMap::new();
    for file in strings(&kustomization["resources"]) {
        for doc in yaml_documents(&format!("k8s/{file}")) {
            let key = (doc["kind"].as_str().unwrap().to_owned(), doc["metadata"]["name"].as_str().unwrap().to_owned());
            objects.insert(key, doc);
        }
    }
    let object = |kind: &str, name: &str| {
        objects.get(&(kind.into(), name.into())).unwrap_or_else(|| panic!("no {kind} {name} in kustomization.yaml"))
    };
    let secrets: BTreeMap<String, Value> = yaml_documents("k8s/secret.example.yaml")
        .into_iter()
        .map(|d| (d["metadata"]["name"].as_str().unwrap().to_owned(), d))
        .collect();

    let deployment = object("Deployment", "coopgate");
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let container = &pod["spec"]["containers"][0];
    let args = strings(&container["args"]);
    assert_eq!(args[..2], ["serve", "--config"]);
    let config_path = &args[2];

    // The config comes from the ConfigMap key mounted at that path.
    let (config_text, config) = mounted_config(pod, container, config_path, &objects);
    let port = listen_port(&config);
    let http = &container["ports"][0];
    assert_eq!((http["name"].as_str(), http["containerPort"].as_u64()), (Some("http"), Some(u64::from(port))));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http");

    // A terminating pod pauses, then drains for shutdown_grace, within its grace period.
    let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().expect("preStop sleeps");
    let period = pod["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        pause + shutdown_grace_secs(&config) < period,
        "preStop + server.shutdown_grace < terminationGracePeriodSeconds"
    );
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);

    // Every secret the config names is set from a Secret that has that key,
    // and the config passes with those values.
    let env = secret_env(&container["env"], &secrets);
    assert_eq!(
        env_names(&config_text),
        env.keys().cloned().collect(),
        "the Deployment sets exactly the config's secrets"
    );
    passes_check("deploy/k8s/configmap.yaml's coopgate.toml", &config_text, &env);

    // The signing key comes from its Secret, mounted where the config looks.
    let key_path = Path::new(config["tokens"]["signing_key_file"].as_str().unwrap());
    let mount = mount_at(container, key_path.parent().unwrap().to_str().unwrap());
    let volume = volume(pod, &mount);
    let secret = &secrets[volume["secret"]["secretName"].as_str().expect("a secret volume")];
    assert!(
        secret["data"].get(key_path.file_name().unwrap().to_str().unwrap()).is_some(),
        "the key's file is in its Secret"
    );

    // The migration Job runs the same image on the same config and secrets.
    let job = object("Job", "coopgate-migrate");
    let job_pod = &job["spec"]["template"];
    let job_container = &job_pod["spec"]["containers"][0];
    assert_eq!(strings(&job_container["args"]), ["migrate", "--config", config_path.as_str()]);
    assert_eq!(job_container["image"], container["image"]);
    let (job_text, _) = mounted_config(job_pod, job_container, config_path, &objects);
    assert_eq!(job_text, config_text);
    assert_eq!(secret_env(&job_container["env"], &secrets), env);

    let service = object("Service", "coopgate");
    assert_eq!(&service["spec"]["selector"], labels);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let hpa = object("HorizontalPodAutoscaler", "coopgate");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "coopgate");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let pdb = object("PodDisruptionBudget", "coopgate");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
}

/// The volume mount of `container` at `path`.
fn mount_at(container: &Value, path: &str) -> Value {
    container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == path)
        .unwrap_or_else(|| panic!("nothing is mounted at {path}"))
        .clone()
}

/// The pod's volume a mount names.
fn volume(pod: &Value, mount: &Value) -> Value {
    pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {}", mount["name"]))
        .clone()
}

/// The config file a container reads at `path`: the ConfigMap key mounted there.
fn mounted_config(
    pod: &Value,
    container: &Value,
    path: &str,
    objects: &BTreeMap<(String, String), Value>,
) -> (String, toml::Table) {
    let mount = mount_at(container, path);
    let map_name = volume(pod, &mount)["configMap"]["name"].as_str().expect("a ConfigMap volume").to_owned();
    let map = &objects[&("ConfigMap".to_owned(), map_name)];
    let key = mount["subPath"].as_str().expect("mounted by subPath");
    let text = map["data"][key].as_str().unwrap_or_else(|| panic!("the ConfigMap has no key {key}")).to_owned();
    let config = parse_toml("deploy/k8s/configmap.yaml", &text);
    (text, config)
}

/// The environment a container's `env` list sets from Secrets, with the
/// example Secrets' values (each reference must name a key that exists).
fn secret_env(env: &Value, secrets: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    env.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["valueFrom"]["secretKeyRef"];
            let (secret, key) = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
            let value = secrets
                .get(secret)
                .unwrap_or_else(|| panic!("no Secret {secret} in secret.example.yaml"))["stringData"][key]
                .as_str()
                .unwrap_or_else(|| panic!("Secret {secret} has no key {key}"));
            (e["name"].as_str().unwrap().to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn alerts_and_the_dashboard_use_only_metrics_the_gateway_exports_and_link_to_the_guide() {
    // What /metrics can show: each family's samples by its type. A family
    // shows only once it has a series, so one of each is made, as traffic would.
    let metrics = coopgate::metrics::Metrics::new();
    let _route = metrics.route("api".into(), 1);
    let (route, tier): (std::sync::Arc<str>, std::sync::Arc<str>) = ("api".into(), "anonymous".into());
    metrics.requests.get_or_create(&coopgate::metrics::RequestLabels { route, status: 200, tier: tier.clone() }).inc();
    let decision = coopgate::metrics::LimitLabels { tier, policy: "burst".into(), decision: "allowed" };
    metrics.limit_decisions.get_or_create(&decision).inc();
    let exposition = metrics.encode();
    let mut exported = BTreeSet::new();
    for line in exposition.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            exported.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
    }
    let used = |text: &str| -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("coopgate_") {
            let name: String =
                rest[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
        names
    };

    let alerts = yaml("monitoring/alerts.yaml");
    let guide = read("README.md");
    let anchors: BTreeSet<String> = guide.lines().filter_map(|l| l.strip_prefix('#')).map(heading_anchor).collect();
    let mut alert_metrics = BTreeSet::new();
    for rule in alerts["groups"][0]["rules"].as_array().unwrap() {
        let name = rule["alert"].as_str().expect("an alert name");
        let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{name} has an expr"));
        alert_metrics.extend(used(expr));
        assert!(rule["for"].is_string(), "{name} waits before firing");
        assert!(["page", "warn"].contains(&rule["labels"]["severity"].as_str().unwrap()), "{name}'s severity");
        let runbook = rule["annotations"]["runbook"].as_str().unwrap();
        let anchor =
            runbook.strip_prefix("deploy/README.md#").unwrap_or_else(|| panic!("{name}'s runbook is the guide"));
        assert!(anchors.contains(anchor), "{name}'s runbook #{anchor} is a heading of deploy/README.md");
    }
    for metric in &alert_metrics {
        assert!(exported.contains(metric), "an alert uses {metric}, which coopgate does not export");
    }
    // The issue's alerts: Redis fallback, store away, webhook backlog, usage waiting, 5xx.
    for needed in [
        "coopgate_limits_fallback",
        "coopgate_store_unavailable",
        "coopgate_billing_oldest_waiting_seconds",
        "coopgate_usage_waiting_requests",
        "coopgate_requests_total",
    ] {
        assert!(alert_metrics.contains(needed), "an alert watches {needed}");
    }

    let dashboard: Value = serde_json::from_str(&read("monitoring/grafana-dashboard.json")).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            for metric in used(target["expr"].as_str().unwrap()) {
                assert!(
                    exported.contains(&metric),
                    "panel {} uses {metric}, which coopgate does not export",
                    panel["title"]
                );
            }
        }
    }
}

/// GitHub's anchor for a Markdown heading line (without its first `#`).
fn heading_anchor(line: &str) -> String {
    line.trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn health_exits_0_while_the_gateway_answers_and_1_with_the_reason_when_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = coopgate_tests::process_config(up.local_addr().unwrap(), "");
    let (_gateway, addr) = coopgate_tests::process::serve(dir.path(), &config);

    let out = coopgate().args(["health", "--url", &format!("http://{addr}/healthz")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = coopgate().args(["health", "--url", &format!("http://{addr}/readyz")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A path that is not 200 and a port nobody listens on both fail, saying why.
    let out = coopgate().args(["health", "--url", &format!("http://{addr}/no-such-route")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"), "{}", String::from_utf8_lossy(&out.stderr));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = coopgate().args(["health", "--url", &format!("http://{closed}/healthz")]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stderr.is_empty());
}
