//! The hasher of the maps every proxied request touches: the limiter's
//! states, the key and token caches, the usage tallies. std's SipHash costs
//! about 150 instructions a lookup on these small keys (bench/HISTORY.md);
//! foldhash, seeded at random per process, a fraction of that. Its seed keeps
//! callers from choosing keys that collide, as SipHash's does; it is not a
//! keyed MAC and nothing here needs one. A leaf, so any module may use it.

/// The `BuildHasher` of the hot path's maps.
pub type Fast = foldhash::fast::RandomState;

/// A `DashMap` with the [`Fast`] hasher.
pub type DashMap<K, V> = dashmap::DashMap<K, V, Fast>;

/// A `HashMap` with the [`Fast`] hasher.
pub type HashMap<K, V> = std::collections::HashMap<K, V, Fast>;
