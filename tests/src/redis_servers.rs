//! The Redis servers a test talks to: the shared one named by
//! `COOPGATE_TEST_REDIS_URL`, or servers of its own (plain, TLS, a Sentinel
//! set, a Cluster) that it can stop, start and fail over.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `COOPGATE_TEST_REDIS_URL`, or `None` after saying so once (a failure when
/// `COOPGATE_TEST_REQUIRE_SERVICES=1`).
pub fn redis_url() -> Option<String> {
    match std::env::var("COOPGATE_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("COOPGATE_TEST_REDIS_URL is not set but COOPGATE_TEST_REQUIRE_SERVICES=1")
        }
        Err(_) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "Redis tests did not run: COOPGATE_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// Says that `program` is not on PATH: the test does not run (one line), or
/// fails when `COOPGATE_TEST_REQUIRE_SERVICES=1`.
fn missing<T>(program: &str) -> Option<T> {
    if std::env::var("COOPGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{program} is not on PATH but COOPGATE_TEST_REQUIRE_SERVICES=1");
    }
    eprintln!("Redis test did not run: {program} is not on PATH");
    None
}

/// A Redis server of this test's own, so that it can be stopped and started.
pub struct OwnRedis {
    pub port: u16,
    /// Its working directory: certificate files, and whatever it writes (a
    /// replica writes the RDB it syncs), never the test's own directory.
    pub dir: tempfile::TempDir,
    /// Over TLS: the CA's PEM (its files are in `dir`).
    tls: Option<String>,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts `redis-server` on a free port, or says why it cannot.
    pub fn start() -> Option<OwnRedis> {
        Self::start_with(None)
    }

    /// Starts `redis-server` speaking only TLS, with a certificate for
    /// 127.0.0.1 from a CA of its own, at `dir/ca.pem`.
    pub fn start_tls() -> Option<OwnRedis> {
        Self::start_with(Some(crate::pki(&["127.0.0.1"])))
    }

    fn start_with(pki: Option<crate::Pki>) -> Option<OwnRedis> {
        let dir = tempfile::tempdir().unwrap();
        let tls = pki.map(|pki| {
            for (name, pem) in [("ca.pem", &pki.ca_pem), ("cert.pem", &pki.cert_pem), ("key.pem", &pki.key_pem)] {
                std::fs::write(dir.path().join(name), pem).unwrap();
            }
            pki.ca_pem
        });
        let mut redis = OwnRedis { port: free_port(), dir, tls, child: None };
        if !redis.restart() {
            return missing("redis-server");
        }
        Some(redis)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts the server on its port and waits until it answers.
    pub fn restart(&mut self) -> bool {
        let port = self.port.to_string();
        let mut command = self.command();
        let client = match &self.tls {
            None => {
                command.args(["--port", &port]);
                redis::Client::open(self.url()).unwrap()
            }
            Some(ca_pem) => {
                let file = |name: &str| self.dir.path().join(name).display().to_string();
                command.args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"]);
                command.args(["--tls-cert-file", &file("cert.pem"), "--tls-key-file", &file("key.pem")]);
                command.args(["--tls-ca-cert-file", &file("ca.pem")]);
                let roots = redis::TlsCertificates { client_tls: None, root_cert: Some(ca_pem.clone().into_bytes()) };
                redis::Client::build_with_tls(self.url(), roots).unwrap()
            }
        };
        let Ok(child) = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn() else {
            return false;
        };
        self.child = Some(child);
        wait_until_it_answers(&client);
        true
    }

    /// `redis-server` keeping nothing on disk, working in its own directory.
    fn command(&self) -> Command {
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        command.arg("--dir").arg(self.dir.path());
        command
    }

    /// Kills the server outright, as a crash or a network cut would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until the Redis (or sentinel) of `client` answers PING.
fn wait_until_it_answers(client: &redis::Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(mut conn) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut conn).is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{:?} did not answer", client.get_connection_info().addr());
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A Redis master, a replica of it, and a sentinel watching them: processes
/// of this test's own, so that the master can die and be replaced.
pub struct SentinelSet {
    pub master: OwnRedis,
    pub replica: OwnRedis,
    pub sentinel: OwnRedis,
}

impl SentinelSet {
    /// The sentinel monitors the master as `cg`, and calls it down after 300 ms.
    pub fn start() -> Option<SentinelSet> {
        let master = OwnRedis::start()?;
        let mut replica = OwnRedis { port: free_port(), dir: tempfile::tempdir().unwrap(), tls: None, child: None };
        replica.child = Some(
            replica
                .command()
                .args(["--port", &replica.port.to_string(), "--replicaof", "127.0.0.1", &master.port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let sentinel_port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\n\
                 sentinel monitor cg 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds cg 300\n\
                 sentinel failover-timeout cg 2000\n",
                master.port
            ),
        )
        .unwrap();
        let sentinel = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sentinel = OwnRedis { port: sentinel_port, dir, tls: None, child: Some(sentinel) };
        wait_until_it_answers(&redis::Client::open(sentinel.url()).unwrap());
        // A failover needs the replica in sync and known to the sentinel.
        let mut conn = redis::Client::open(sentinel.url()).unwrap().get_connection().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let replicas: Vec<Vec<String>> =
                redis::cmd("SENTINEL").arg("REPLICAS").arg("cg").query(&mut conn).unwrap_or_default();
            let in_sync = replicas.iter().any(|r| {
                r.windows(2).any(|kv| kv[0] == "master-link-status" && kv[1] == "ok")
                    && r.windows(2).any(|kv| kv[0] == "flags" && kv[1] == "slave")
            });
            if in_sync {
                break;
            }
            assert!(Instant::now() < deadline, "the sentinel never saw the replica in sync: {replicas:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(SentinelSet { master, replica, sentinel })
    }
}

/// A Redis Cluster of three masters, processes of this test's own.
pub struct OwnCluster {
    pub nodes: Vec<OwnRedis>,
}

impl OwnCluster {
    pub fn start() -> Option<OwnCluster> {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // A cluster node also listens on its port + 10000, so the port must leave room.
            let port = std::iter::repeat_with(free_port).find(|p| *p <= 55535).expect("a free port");
            let mut node = OwnRedis { port, dir: tempfile::tempdir().unwrap(), tls: None, child: None };
            let spawned = node
                .command()
                .args(["--port", &node.port.to_string(), "--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let Ok(child) = spawned else { return missing("redis-server") };
            node.child = Some(child);
            wait_until_it_answers(&redis::Client::open(node.url()).unwrap());
            nodes.push(node);
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let Ok(created) = created else { return missing("redis-cli") };
        assert!(created.success(), "redis-cli --cluster create failed");
        // Every node must agree the cluster is up before it takes commands.
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            let mut conn = redis::Client::open(node.url()).unwrap().get_connection().unwrap();
            loop {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut conn).unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster never came up: {info}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Some(OwnCluster { nodes })
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
