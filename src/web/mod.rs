//! What every layer that answers a browser shares: the HTML shell of the
//! few pages we render, and query strings read leniently.

/// The HTML shell of the pages we render, escaping, CSP nonces.
pub mod html;
/// JSON bodies, refused with a safe `detail`.
pub mod json;
/// Query strings, read leniently.
pub mod query;
