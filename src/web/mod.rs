//! What every layer that answers a browser shares: the HTML shell of the
//! few pages we render, and query strings read leniently.

/// The HTML shell of the pages we render, escaping, CSP nonces.
pub mod html;
/// Query strings, read leniently.
pub mod query;
