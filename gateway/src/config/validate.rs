//! The checks that span several keys of the config (a tier a route names, a
//! price two tiers sell, a secret in the environment), every problem at once.

mod billing;
mod portal;
mod server;

use std::collections::HashMap;

use url::Url;

use super::{ANONYMOUS_TIER, Config, LimitsBackend, Period, Problem, QuotaReset, RouteKind, ca_certificates};

/// Names of tiers, limits and routes appear in headers, metrics labels and
/// Redis keys, so they are kept to characters that are safe in all three.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

const NAME_RULE: &str = "use 1 to 64 letters, digits, `-`, `_` or `.`, for example \"bytes-daily\"";

impl Config {
    /// Checks what spans several keys and resolves `env:` secrets; returns every problem found.
    pub(crate) fn validate(&mut self, env: &HashMap<String, String>) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut problem = |path: String, message: String| problems.push(Problem { path, line: None, message });

        if !self.tiers.contains_key(ANONYMOUS_TIER) {
            problem(
                "tiers.anonymous".into(),
                "missing: anonymous callers need a tier (it may have no limits and no routes)".into(),
            );
        }
        let mut ranks: HashMap<u32, &str> = HashMap::new();
        for (name, tier) in &self.tiers {
            if !plain_name(name) {
                problem(format!("tiers.{name}"), NAME_RULE.into());
            }
            if let Some(other) = ranks.insert(tier.rank, name) {
                problem(
                    format!("tiers.{name}.rank"),
                    format!("rank {} is also the rank of tier `{other}`; ranks must differ", tier.rank),
                );
            }
            if tier.seats == Some(0) {
                problem(format!("tiers.{name}.seats"), "an account has at least one person: write 1 or more".into());
            }
            for (i, limit) in tier.limits.iter().enumerate() {
                let at = format!("tiers.{name}.limits[{i}]");
                if !plain_name(&limit.name) {
                    problem(format!("{at}.name"), NAME_RULE.into());
                }
                let kinds = [limit.rate.is_some(), limit.quota.is_some(), limit.bytes.is_some()];
                if kinds.iter().filter(|k| **k).count() != 1 {
                    problem(
                        at.clone(),
                        "a limit has exactly one of `rate` (with `burst`), `quota` or `bytes`; \
                         write two limits to have two"
                            .into(),
                    );
                }
                if limit.burst == Some(0) {
                    problem(format!("{at}.burst"), "burst must be at least 1".into());
                }
                if limit.burst.is_some() && limit.rate.is_none() {
                    problem(format!("{at}.burst"), "only a `rate` limit has a burst".into());
                }
                if limit.reset == QuotaReset::BillingAnchor && !limit.quota.is_some_and(|q| q.per == Period::Month) {
                    problem(format!("{at}.reset"), "only a monthly `quota` can reset on the billing anchor".into());
                }
                if limit.bytes.is_some() {
                    for (j, route) in limit.routes.iter().flatten().enumerate() {
                        if self.routes.iter().any(|r| &r.name == route && r.kind != RouteKind::Bulk) {
                            problem(
                                format!("{at}.routes[{j}]"),
                                format!("`{route}` is not a bulk route; byte quotas count bulk downloads"),
                            );
                        }
                    }
                }
                if tier.limits[..i].iter().any(|l| l.name == limit.name) {
                    problem(format!("{at}.name"), format!("another limit of this tier is also named `{}`", limit.name));
                }
                for (j, route) in limit.routes.iter().flatten().enumerate() {
                    if !self.routes.iter().any(|r| &r.name == route) {
                        problem(format!("{at}.routes[{j}]"), format!("no route is named `{route}`"));
                    }
                }
            }
        }
        if self.routes.is_empty() {
            problem("routes".into(), "no routes: every request would be a 404; add at least one [[routes]]".into());
        }
        for (i, route) in self.routes.iter_mut().enumerate() {
            let at = format!("routes[{i}]");
            if !plain_name(&route.name) {
                problem(format!("{at}.name"), NAME_RULE.into());
            }
            if !route.path.starts_with('/') {
                problem(format!("{at}.path"), format!("`{}` must start with `/`", route.path));
            }
            if !matches!(route.upstream.scheme(), "http" | "https") || route.upstream.host_str().is_none() {
                problem(
                    format!("{at}.upstream"),
                    format!("`{}` must be an http:// or https:// URL with a host", route.upstream),
                );
            }
            if route.upstream.query().is_some() {
                problem(format!("{at}.upstream"), "an upstream base URL cannot have a query string".into());
            }
            if !self.tiers.contains_key(&route.min_tier) {
                problem(format!("{at}.min_tier"), format!("no tier is named `{}`", route.min_tier));
            }
            if let Some(early) = &route.early_access {
                if !self.tiers.contains_key(&early.min_tier) {
                    problem(format!("{at}.early_access.min_tier"), format!("no tier is named `{}`", early.min_tier));
                }
                if early.window.is_zero() {
                    problem(format!("{at}.early_access.window"), "must be longer than zero".into());
                }
            }
            if let Some(catalog) = &route.catalog {
                if route.kind != RouteKind::Bulk {
                    problem(format!("{at}.catalog"), "only a bulk route lists files".into());
                } else if catalog.contains("://") || catalog.starts_with('/') || route.upstream.join(catalog).is_err() {
                    problem(
                        format!("{at}.catalog"),
                        format!(
                            "`{catalog}` must be a path relative to the upstream, such as \"./\" or \"index.json\""
                        ),
                    );
                }
            }
            if let Some(path) = &route.upstream_ca {
                if route.upstream.scheme() != "https" {
                    problem(format!("{at}.upstream_ca"), "only an https upstream uses a CA file".into());
                } else if let Err(e) = ca_certificates(path) {
                    problem(format!("{at}.upstream_ca"), e);
                }
            }
            for (header, value) in route.upstream_headers.iter_mut() {
                let key = format!("{at}.upstream_headers.{header}");
                if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    problem(key.clone(), "not a valid header name".into());
                }
                if let Err(e) = value.resolve(env) {
                    problem(key.clone(), e);
                } else if http::HeaderValue::from_str(value.expose()).is_err() {
                    problem(key, "the value is not a valid header value".into());
                }
            }
        }
        let routes = &self.routes;
        for (i, route) in routes.iter().enumerate() {
            if routes[..i].iter().any(|r| r.name == route.name) {
                problems.push(Problem {
                    path: format!("routes[{i}].name"),
                    line: None,
                    message: format!("another route is also named `{}`", route.name),
                });
            }
            if routes[..i].iter().any(|r| r.path.trim_end_matches('/') == route.path.trim_end_matches('/')) {
                problems.push(Problem {
                    path: format!("routes[{i}].path"),
                    line: None,
                    message: format!("another route also serves `{}`", route.path),
                });
            }
        }
        if let Err(e) = self.store.url.resolve(env) {
            problems.push(Problem { path: "store.url".into(), line: None, message: e });
        } else {
            let url = self.store.url.expose();
            if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                problems.push(Problem {
                    path: "store.url".into(),
                    line: None,
                    message: "use sqlite://PATH or postgres://USER@HOST/DB".into(),
                });
            }
        }
        if let Some(secret) = &mut self.tokens.hmac_secret {
            if let Err(e) = secret.resolve(env) {
                problems.push(Problem { path: "tokens.hmac_secret".into(), line: None, message: e });
            } else if secret.expose().len() < 32 {
                problems.push(Problem {
                    path: "tokens.hmac_secret".into(),
                    line: None,
                    message: "must be at least 32 bytes; a short HMAC secret can be guessed".into(),
                });
            }
        }
        let targets = [
            self.limits.redis_url.is_some(),
            self.limits.redis_sentinel.is_some(),
            self.limits.redis_cluster.is_some(),
        ];
        if self.limits.backend == LimitsBackend::Redis && !targets.contains(&true) {
            problems.push(Problem {
                path: "limits.redis_url".into(),
                line: None,
                message: "missing: `backend = \"redis\"` needs the Redis URL, for example \"redis://127.0.0.1:6379\" \
                          (or limits.redis_sentinel, or limits.redis_cluster)"
                    .into(),
            });
        }
        if targets.iter().filter(|t| **t).count() > 1 {
            problems.push(Problem {
                path: "limits".into(),
                line: None,
                message: "give one of limits.redis_url (one server), limits.redis_sentinel (a monitored master) \
                          and limits.redis_cluster (a cluster's seed nodes)"
                    .into(),
            });
        }
        if let Some(nodes) = &mut self.limits.redis_cluster {
            if nodes.is_empty() {
                problems.push(Problem {
                    path: "limits.redis_cluster".into(),
                    line: None,
                    message: "list at least one seed node, for example [\"redis://10.0.0.5:6379\"]".into(),
                });
            }
            let mut credentials = None;
            for (i, node) in nodes.iter_mut().enumerate() {
                let path = format!("limits.redis_cluster[{i}]");
                if let Err(e) = node.resolve(env) {
                    problems.push(Problem { path, line: None, message: e });
                    continue;
                }
                let parsed = Url::parse(node.expose()).ok().filter(|u| {
                    u.scheme() == "redis" && u.host_str().is_some() && redis::Client::open(node.expose()).is_ok()
                });
                let Some(url) = parsed else {
                    problems.push(Problem {
                        path,
                        line: None,
                        message: "write redis://[:PASSWORD@]HOST:PORT (TLS is not supported for a cluster)".into(),
                    });
                    continue;
                };
                if !matches!(url.path(), "" | "/") {
                    problems.push(Problem {
                        path,
                        line: None,
                        message: "a cluster has only database 0; write redis://[:PASSWORD@]HOST:PORT with no /DB"
                            .into(),
                    });
                    continue;
                }
                let these = (url.username().to_owned(), url.password().map(str::to_owned));
                if credentials.get_or_insert_with(|| these.clone()) != &these {
                    problems.push(Problem {
                        path,
                        line: None,
                        message: "every seed node of one cluster takes the same user and password".into(),
                    });
                }
            }
            if self.limits.redis_ca_file.is_some() {
                problems.push(Problem {
                    path: "limits.redis_ca_file".into(),
                    line: None,
                    message: "TLS is not supported for a cluster; reach it on a private network, and remove this"
                        .into(),
                });
            }
        }
        if let Some(sentinel) = &mut self.limits.redis_sentinel {
            if self.limits.redis_ca_file.is_some() {
                problems.push(Problem {
                    path: "limits.redis_ca_file".into(),
                    line: None,
                    message: "TLS is not supported behind Sentinel; reach the sentinels and the master on a private \
                              network, and remove this"
                        .into(),
                });
            }
            if sentinel.master.is_empty() {
                problems.push(Problem {
                    path: "limits.redis_sentinel.master".into(),
                    line: None,
                    message: "the name the sentinels monitor the master under, for example \"mymaster\"".into(),
                });
            }
            if sentinel.nodes.is_empty() {
                problems.push(Problem {
                    path: "limits.redis_sentinel.nodes".into(),
                    line: None,
                    message: "list at least one sentinel, for example [\"10.0.0.5:26379\"]".into(),
                });
            }
            for (i, node) in sentinel.nodes.iter().enumerate() {
                let parsed = node
                    .rsplit_once(':')
                    .filter(|(host, _)| !host.is_empty() && !host.contains('/'))
                    .and_then(|(_, port)| port.parse::<u16>().ok());
                if parsed.is_none() {
                    problems.push(Problem {
                        path: format!("limits.redis_sentinel.nodes[{i}]"),
                        line: None,
                        message: format!("`{node}` is not HOST:PORT, for example \"10.0.0.5:26379\""),
                    });
                }
            }
            if let Some(password) = &mut sentinel.password
                && let Err(e) = password.resolve(env)
            {
                problems.push(Problem { path: "limits.redis_sentinel.password".into(), line: None, message: e });
            }
        }
        if self.limits.lease_max == 0 {
            problems.push(Problem {
                path: "limits.lease_max".into(),
                line: None,
                message: "must be at least 1 (1 asks Redis on every request)".into(),
            });
        }
        if self.limits.redis_prefix.is_empty()
            || !self.limits.redis_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        {
            problems.push(Problem {
                path: "limits.redis_prefix".into(),
                line: None,
                message: "use letters, digits and - _ . : only, for example \"coopgate-staging\"".into(),
            });
        }
        if self.limits.max_callers < 1000 {
            problems.push(Problem {
                path: "limits.max_callers".into(),
                line: None,
                message: "must be at least 1000".into(),
            });
        }
        if self.limits.max_ranges == 0 {
            problems.push(Problem {
                path: "limits.max_ranges".into(),
                line: None,
                message: "must be at least 1 (a resumed download is one range)".into(),
            });
        }
        if self.limits.redis_timeout.is_zero() {
            problems.push(Problem {
                path: "limits.redis_timeout".into(),
                line: None,
                message: "must be longer than zero".into(),
            });
        }
        if let Some(url) = &mut self.limits.redis_url {
            if let Err(e) = url.resolve(env) {
                problems.push(Problem { path: "limits.redis_url".into(), line: None, message: e });
            } else if redis::Client::open(url.expose()).is_err() {
                problems.push(Problem {
                    path: "limits.redis_url".into(),
                    line: None,
                    message: "not a Redis URL; write redis://[:PASSWORD@]HOST:PORT[/DB], or rediss://… for TLS".into(),
                });
            } else if url.expose().contains("#insecure") {
                problems.push(Problem {
                    path: "limits.redis_url".into(),
                    line: None,
                    message: "#insecure would accept any certificate, so anyone on the path could pose as Redis; \
                              give the Redis server's CA as limits.redis_ca_file instead"
                        .into(),
                });
            } else if let Some(path) = &self.limits.redis_ca_file {
                if !url.expose().starts_with("rediss://") {
                    problems.push(Problem {
                        path: "limits.redis_ca_file".into(),
                        line: None,
                        message: "only used over TLS; make limits.redis_url a rediss:// URL, or remove this".into(),
                    });
                } else if let Err(e) = ca_certificates(path) {
                    problems.push(Problem { path: "limits.redis_ca_file".into(), line: None, message: e });
                } else if let Err(e) = std::fs::read(path).map_err(redis::RedisError::from).and_then(|pem| {
                    // What `redis_target` does with it at start, tried here so that
                    // `coopgate check` finds a CA the client cannot use.
                    redis::Client::build_with_tls(
                        url.expose(),
                        redis::TlsCertificates { client_tls: None, root_cert: Some(pem) },
                    )
                }) {
                    problems.push(Problem { path: "limits.redis_ca_file".into(), line: None, message: e.to_string() });
                }
            }
        }
        problems.extend(billing::validate(self, env));
        problems.extend(portal::validate(self, env));
        problems.extend(server::validate(self));
        if !(1..=1_000_000).contains(&self.priorities.points) {
            problems.push(Problem {
                path: "priorities.points".into(),
                line: None,
                message: "each member spreads 1 to 1,000,000 points; 100 is usual".into(),
            });
        }
        problems.extend(super::metering::validate(&self.metering));
        if let Some(url) = &self.tokens.jwks_url
            && (!matches!(url.scheme(), "http" | "https") || url.host_str().is_none())
        {
            problems.push(Problem {
                path: "tokens.jwks_url".into(),
                line: None,
                message: format!("`{url}` must be an http:// or https:// URL with a host"),
            });
        }
        if self.admin.token_sha256.is_some() && self.admin.digest().is_none() {
            problems.push(Problem {
                path: "admin.token_sha256".into(),
                line: None,
                message: "must be 64 hex digits: the SHA-256 of the token (`coopgate admin-token` prints one)".into(),
            });
        }
        for (i, hex) in self.admin.previous_token_sha256.iter().enumerate() {
            if super::digest_from_hex(hex).is_none() {
                problems.push(Problem {
                    path: format!("admin.previous_token_sha256[{i}]"),
                    line: None,
                    message: "must be 64 hex digits: the SHA-256 of a token still accepted during a rotation".into(),
                });
            }
        }
        if !self.admin.previous_token_sha256.is_empty() && self.admin.token_sha256.is_none() {
            problems.push(Problem {
                path: "admin.previous_token_sha256".into(),
                line: None,
                message: "needs admin.token_sha256 (the new token) beside it; to turn the admin API off, remove both"
                    .into(),
            });
        }
        if self.server.workers == Some(0) {
            problems.push(Problem { path: "server.workers".into(), line: None, message: "must be at least 1".into() });
        }
        if self.server.max_header_bytes.0 < 1024 {
            problems.push(Problem {
                path: "server.max_header_bytes".into(),
                line: None,
                message: "must be at least 1KiB".into(),
            });
        }
        if let Err(e) = self.log.level.parse::<tracing_subscriber::filter::Targets>() {
            problems.push(Problem {
                path: "log.level".into(),
                line: None,
                message: format!("`{}`: {e}", self.log.level),
            });
        }
        problems
    }
}
