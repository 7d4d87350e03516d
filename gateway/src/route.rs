//! Routing: which configured route a request is for, and whether its shape is
//! acceptable at all.
//!
//! [`RouteLayer`] checks the size of the request head (431), the `Host`
//! ([`host`], 400), the path (dot segments and encoded NULs, 400) and the
//! declared body size against the route's `max_body` (413), matches the
//! longest path prefix (404 when none), and puts the [`MatchedRoute`] into
//! the request's [`Proxied`] for every layer below. It never reads the body.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, header};
use tower::{Layer, Service};

use crate::body::Body;
use crate::caller::{Caller, Owner};
use crate::config::{ByteSize, Config, RouteKind};
use crate::error::Error;
use crate::metrics::{Metrics, RouteMetrics};
use crate::tier::{TierId, Tiers};
use crate::upstream::Upstream;

pub mod host;

/// A route's position in the config's `routes` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub u16);

/// One route, ready to serve.
#[derive(Debug)]
pub struct Route {
    /// Its index in the table.
    pub id: RouteId,
    /// The configured name.
    pub name: Arc<str>,
    /// The path prefix without a trailing slash (`""` for a route at `/`).
    pub prefix: String,
    /// Bulk downloads or queries.
    pub kind: RouteKind,
    /// The lowest tier allowed.
    pub min_tier: TierId,
    /// Members-only window after publication, and the tier it is for.
    pub early_access: Option<(std::time::Duration, TierId)>,
    /// Largest request body accepted.
    pub max_body: ByteSize,
    /// `allow_encoded_slashes`: `%2F` and `%5C` reach this route's origin.
    pub allow_encoded_slashes: bool,
    /// Where requests go.
    pub upstream: Upstream,
    /// This route's metric handles.
    pub metrics: RouteMetrics,
}

impl Route {
    /// The part of `path` after this route's prefix, always starting with `/`.
    pub fn strip<'a>(&self, path: &'a str) -> &'a str {
        let rest = &path[self.prefix.len()..];
        if rest.is_empty() { "/" } else { rest }
    }
}

/// Every route, matched by longest prefix.
#[derive(Debug)]
pub struct RouteTable {
    /// In config order; `RouteId` indexes this.
    routes: Vec<Arc<Route>>,
}

impl RouteTable {
    /// Builds the table; fails if an upstream's TLS settings cannot be used,
    /// or if a route's `min_tier` names no tier (validation catches that
    /// first; a table built without it must still never open a route to
    /// everyone by mistake).
    pub fn from_config(config: &Config, tiers: &Tiers, metrics: &Metrics) -> Result<Self, Error> {
        let mut routes = Vec::with_capacity(config.routes.len());
        for (i, rc) in config.routes.iter().enumerate() {
            let id = RouteId(i as u16);
            let name: Arc<str> = Arc::from(rc.name.as_str());
            let tier = |key: &str, tier: &str| {
                tiers.id(tier).ok_or_else(|| {
                    Error::ConfigInvalid(vec![crate::config::Problem {
                        path: format!("routes[{i}].{key}"),
                        line: None,
                        message: format!("no tier is named `{tier}`"),
                    }])
                })
            };
            routes.push(Arc::new(Route {
                id,
                prefix: rc.path.trim_end_matches('/').to_owned(),
                kind: rc.kind,
                min_tier: tier("min_tier", &rc.min_tier)?,
                early_access: match &rc.early_access {
                    Some(e) => Some((e.window, tier("early_access.min_tier", &e.min_tier)?)),
                    None => None,
                },
                max_body: rc.max_body,
                allow_encoded_slashes: rc.allow_encoded_slashes,
                upstream: Upstream::from_config(name.clone(), rc, &config.proxy)?,
                metrics: metrics.route(name.clone(), tiers.len()),
                name,
            }));
        }
        Ok(RouteTable { routes })
    }

    /// The route with the longest prefix that matches `path` on a segment boundary.
    pub fn find(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes
            .iter()
            .filter(|r| {
                path.starts_with(r.prefix.as_str()) && matches!(path.as_bytes().get(r.prefix.len()), None | Some(b'/'))
            })
            .max_by_key(|r| r.prefix.len())
    }

    /// Every route, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.routes.iter()
    }

    /// How many routes there are.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The route a request matched, in its [`Proxied`].
#[derive(Debug, Clone)]
pub struct MatchedRoute(pub Arc<Route>);

/// What the layers of the proxy path learn about a request, carried in its
/// extensions as one entry: `route` puts the route here, `identify` the
/// caller and whose request it is, and the layers below read them. One entry
/// rather than one per type, because each entry costs an allocation and each
/// read a hash lookup, on every request (bench/HISTORY.md, 2026-12-07).
#[derive(Debug, Clone, Default)]
pub struct Proxied {
    /// The route matched, set by `route`.
    pub route: Option<MatchedRoute>,
    /// The identified caller, set by `identify`.
    pub caller: Option<Caller>,
    /// The account and credential of a key or token, set by `identify`.
    pub owner: Option<Owner>,
}

impl Proxied {
    /// The request's route and caller, once both are known.
    pub fn routed(ext: &http::Extensions) -> Option<(&MatchedRoute, &Caller)> {
        let proxied = ext.get::<Proxied>()?;
        Some((proxied.route.as_ref()?, proxied.caller.as_ref()?))
    }

    /// The entry of `ext`, made empty when there is none yet.
    pub fn of(ext: &mut http::Extensions) -> &mut Proxied {
        ext.get_or_insert_default::<Proxied>()
    }
}

/// Adds [`RouteService`].
#[derive(Clone)]
pub struct RouteLayer {
    /// The routes.
    table: Arc<RouteTable>,
    /// `server.max_header_bytes`.
    max_header_bytes: ByteSize,
    /// Counts unrouted requests.
    metrics: Arc<Metrics>,
}

impl RouteLayer {
    /// A layer matching against `table`.
    pub fn new(table: Arc<RouteTable>, max_header_bytes: ByteSize, metrics: Arc<Metrics>) -> Self {
        RouteLayer { table, max_header_bytes, metrics }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RouteService { inner, layer: self.clone() }
    }
}

/// Matches a route or answers 404, 413 or 431.
#[derive(Clone)]
pub struct RouteService<S> {
    inner: S,
    layer: RouteLayer,
}

impl<S, B> Service<Request<B>> for RouteService<S>
where
    S: Service<Request<B>, Response = Response<Body>, Error = Error>,
{
    type Response = Response<Body>;
    type Error = Error;
    type Future = futures_util::future::Either<std::future::Ready<Result<Response<Body>, Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        use futures_util::future::Either;
        let reject = |e| Either::Left(std::future::ready(Err(e)));

        let limit = self.layer.max_header_bytes;
        let size = head_size(&req);
        if size as u64 > limit.0 {
            return reject(Error::HeadersTooLarge { size, limit });
        }
        // A `..` could step from a public route's prefix into another part of the
        // origin (or another route's), past that route's tier and limits. Origins
        // resolve dot segments differently, so refuse them rather than guess.
        if has_dot_segments(req.uri().path()) {
            return reject(Error::DotSegments { path: req.uri().path().to_owned() });
        }
        // No name on disk or in a database has a NUL; an origin in C may
        // take it for the end of the path and serve something else.
        if req.uri().path().contains("%00") {
            return reject(Error::NulInPath { path: req.uri().path().to_owned() });
        }
        // The Host goes on to the origin in the forwarding headers.
        if let Err(why) = host::check(req.version(), req.uri().authority().map(|a| a.as_str()), req.headers()) {
            return reject(Error::BadHost(why));
        }
        let Some(route) = self.layer.table.find(req.uri().path()) else {
            self.layer.metrics.unrouted.inc();
            return reject(Error::NoRoute { path: req.uri().path().to_owned() });
        };
        // An origin that decodes `%2F` before resolving the path reads
        // `%2e%2e%2f` as `../`: refused unless the route says its origin
        // takes them as data.
        if !route.allow_encoded_slashes && has_encoded_separator(req.uri().path()) {
            return reject(Error::EncodedSeparator { path: req.uri().path().to_owned() });
        }
        let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > route.max_body.0) {
            return reject(Error::PayloadTooLarge { limit: route.max_body });
        }
        Proxied::of(req.extensions_mut()).route = Some(MatchedRoute(route.clone()));
        Either::Right(self.inner.call(req))
    }
}

/// Whether any segment of `path` is `.` or `..`, also when written `%2e`,
/// also before a `;` or a `%3B` (`/..;/x`: servers that take `;` for the
/// start of path parameters, as Tomcat does, resolve that segment as `..`,
/// and one that decodes first does the same with `%3B`), and also between
/// backslashes (`/..\x`: Windows servers take `\` for `/`).
/// Read in place: this runs on every request, and decoding each segment into
/// a new string cost about 3,000 instructions a request.
pub(crate) fn has_dot_segments(path: &str) -> bool {
    // Split as bytes: `str::split(char)` spent about 400 instructions a request
    // setting up its searcher for segments a few bytes long.
    path.as_bytes().split(|b| *b == b'/' || *b == b'\\').any(|segment| {
        let name = segment.split(|b| *b == b';').next().unwrap_or(segment);
        let mut rest = name;
        for dots in 0..3 {
            match rest {
                [] | [b'%', b'3', b'b' | b'B', ..] => return dots > 0,
                [b'.', tail @ ..] => rest = tail,
                [b'%', b'2', e, tail @ ..] if e.eq_ignore_ascii_case(&b'e') => rest = tail,
                _ => return false,
            }
        }
        false
    })
}

/// Whether `path` has an encoded `/` or `\\` (`%2F`, `%5C`, in any case).
pub(crate) fn has_encoded_separator(path: &str) -> bool {
    path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && ((w[1] == b'2' && w[2].eq_ignore_ascii_case(&b'f'))
                || (w[1] == b'5' && w[2].eq_ignore_ascii_case(&b'c')))
    })
}

/// Bytes of the request head as a client sent it: request line and header lines.
fn head_size<B>(req: &Request<B>) -> usize {
    let line = req.method().as_str().len() + req.uri().path_and_query().map_or(1, |p| p.as_str().len()) + 12;
    req.headers().iter().fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_in_any_spelling() {
        for bad in ["/bulk/../early/x", "/bulk/./x", "/bulk/..", "/bulk/%2e%2e/x", "/bulk/.%2E/x", "/bulk/%2E/x"] {
            assert!(has_dot_segments(bad), "{bad}");
        }
        for good in [
            "/bulk/x.csv",
            "/bulk/..hidden",
            "/bulk/a..b",
            "/",
            "/bulk/...",
            "/bulk/%2e%2e%2e",
            "/bulk/%2",
            "/bulk/%2f",
        ] {
            assert!(!has_dot_segments(good), "{good}");
        }
    }

    #[test]
    fn a_dot_segment_before_a_path_parameter_is_a_dot_segment() {
        for bad in ["/bulk/..;/x", "/bulk/.;jsessionid=1/x", "/bulk/%2e%2e;x/y", "/bulk/..;", "/bulk/%2E%2E%3bx"] {
            assert!(has_dot_segments(bad), "{bad}");
        }
        for good in ["/bulk/a;b/x", "/bulk/x.csv;v=1", "/bulk/...;x"] {
            assert!(!has_dot_segments(good), "{good}");
        }
    }

    #[test]
    fn a_dot_segment_between_backslashes_is_a_dot_segment() {
        // Found by the `path` fuzz target: a server that takes `\` for `/` resolves these as `..`.
        for bad in ["/bulk/%2E%2E\\\\", "/bulk/..\\x", "/bulk/a\\.\\b"] {
            assert!(has_dot_segments(bad), "{bad}");
        }
        assert!(!has_dot_segments("/bulk/a\\b.csv"));
    }

    #[test]
    fn encoded_slashes_and_backslashes_are_found_in_any_case() {
        for bad in ["/bulk/%2e%2e%2fx", "/bulk/a%2Fb", "/bulk/a%5cb", "/bulk/..%5C..%5Cx"] {
            assert!(has_encoded_separator(bad), "{bad}");
        }
        for good in ["/bulk/a%20b", "/bulk/%2", "/bulk/%25", "/bulk/a/b", "/bulk/%2e"] {
            assert!(!has_encoded_separator(good), "{good}");
        }
    }

    #[test]
    fn a_route_for_a_tier_that_does_not_exist_is_refused_not_opened_to_everyone() {
        let text = "[tiers.anonymous]\nrank = 0\n[tiers.member]\nrank = 20\n[[routes]]\nname = \"members\"\n\
                    path = \"/members/\"\nupstream = \"http://127.0.0.1:9/\"\nkind = \"api\"\nmin_tier = \"member\"\n";
        let mut config = crate::config::load_str(text, &std::collections::HashMap::new()).expect("valid");
        let metrics = Metrics::new();
        let tiers = Tiers::from_config(&config);
        assert!(RouteTable::from_config(&config, &tiers, &metrics).is_ok());
        // The tier goes away after validation (a config edited in code, say).
        config.routes[0].min_tier = "memebr".into();
        let err = RouteTable::from_config(&config, &tiers, &metrics).unwrap_err().to_string();
        assert!(err.contains("routes[0].min_tier") && err.contains("no tier is named `memebr`"), "{err}");
    }
}
