//! Checks of `[server]`'s connection bounds: each must bound something, since
//! a connection or a body without a bound is a way to exhaust the process.

use crate::config::{Config, Problem};

/// Checks the connection caps, their reserve and the timeouts of `[server]`.
pub(super) fn validate(config: &Config) -> Vec<Problem> {
    let server = &config.server;
    let mut problems = Vec::new();
    let mut problem = |path: &str, message: &str| {
        problems.push(Problem { path: format!("server.{path}"), line: None, message: message.into() })
    };
    if server.header_timeout.is_zero() {
        problem("header_timeout", "must be longer than zero, for example \"10s\"");
    }
    if server.body_timeout.is_zero() {
        problem("body_timeout", "must be longer than zero, for example \"10s\"");
    }
    if server.max_connections == 0 {
        problem("max_connections", "must be at least 1");
    }
    if server.max_connections_per_address == 0 {
        problem("max_connections_per_address", "must be at least 1");
    } else if server.max_connections_per_address > server.max_connections {
        problem(
            "max_connections_per_address",
            "is more than server.max_connections: one address could take every connection; lower it",
        );
    }
    if server.descriptor_reserve < 32 {
        problem(
            "descriptor_reserve",
            "must be at least 32: the store, Redis, upstreams and the listener need descriptors of their own",
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::config::load_str;

    fn problems(server: &str) -> Vec<String> {
        let text = format!(
            "[server]\n{server}\n[tiers.anonymous]\nrank = 0\n\n[[routes]]\nname = \"api\"\npath = \"/api/\"\n\
             upstream = \"http://127.0.0.1:9/\"\nkind = \"api\"\nmin_tier = \"anonymous\"\n"
        );
        match load_str(&text, &HashMap::new()) {
            Ok(_) => Vec::new(),
            Err(crate::Error::ConfigInvalid(found)) => found.iter().map(|p| p.path.clone()).collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn the_defaults_bound_every_connection() {
        assert!(problems("").is_empty());
        let d = crate::config::ServerConfig::default();
        assert!(d.max_connections_per_address < d.max_connections);
        assert!(!d.header_timeout.is_zero() && !d.body_timeout.is_zero());
    }

    #[test]
    fn unbounded_connection_settings_are_refused_by_key_path() {
        let found = problems(
            "header_timeout = \"0s\"\nbody_timeout = \"0s\"\nmax_connections = 0\n\
             max_connections_per_address = 0\ndescriptor_reserve = 0",
        );
        for key in
            ["header_timeout", "body_timeout", "max_connections", "max_connections_per_address", "descriptor_reserve"]
        {
            assert!(found.contains(&format!("server.{key}")), "{key} in {found:?}");
        }
        let found = problems("max_connections = 10\nmax_connections_per_address = 11");
        assert_eq!(found, ["server.max_connections_per_address"]);
    }
}
