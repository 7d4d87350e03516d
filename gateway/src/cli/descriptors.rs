//! The process's descriptor budget: the soft limit raised to the hard one at
//! start (the soft limit is often 1,024 while the hard one allows far more),
//! and `server.max_connections` fitted to what the limit allows after
//! `server.descriptor_reserve`. Only the command line touches process-wide
//! limits; the library takes the fitted number from the config.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::ServerConfig;

/// Raises the soft descriptor limit to the hard one; returns the soft limit
/// now in force (`None`: unlimited).
pub fn raise_to_hard() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current == maximum {
        return current;
    }
    match setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum }) {
        Ok(()) => maximum,
        Err(e) => {
            tracing::warn!(error = %e, soft = ?current, hard = ?maximum, "cannot raise the descriptor limit");
            current
        }
    }
}

/// `server.max_connections`, lowered if need be so that connections cannot
/// use the descriptors kept for everything else. Each connection is counted
/// twice: a request being proxied holds a second descriptor, to the origin.
pub fn fit_connections(server: &ServerConfig, limit: Option<u64>) -> usize {
    let Some(limit) = limit else { return server.max_connections };
    let budget = (limit.saturating_sub(server.descriptor_reserve as u64) / 2) as usize;
    if budget >= server.max_connections {
        return server.max_connections;
    }
    let fitted = budget.max(1);
    tracing::warn!(
        max_connections = server.max_connections,
        descriptors = limit,
        reserve = server.descriptor_reserve,
        fitted,
        "server.max_connections is more than the descriptor limit allows: at most {fitted} connections \
         (two descriptors each, after server.descriptor_reserve); raise the limit (LimitNOFILE, ulimit -n) \
         to allow more"
    );
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_fit_in_what_the_reserve_leaves_two_descriptors_each() {
        let server = ServerConfig { max_connections: 10_000, descriptor_reserve: 256, ..ServerConfig::default() };
        assert_eq!(fit_connections(&server, Some(2048)), 896);
        assert_eq!(fit_connections(&server, Some(1 << 20)), 10_000, "a roomy limit keeps the setting");
        assert_eq!(fit_connections(&server, None), 10_000, "no limit keeps the setting");
        assert_eq!(fit_connections(&server, Some(100)), 1, "never zero");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let before = getrlimit(Resource::Nofile);
        let limit = raise_to_hard();
        assert_eq!(limit, getrlimit(Resource::Nofile).current);
        assert!(limit.unwrap_or(u64::MAX) >= before.current.unwrap_or(u64::MAX), "never lowered");
    }
}
