//! Plugin host.
