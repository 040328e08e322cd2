//! Test fixtures shared by kiln's crates: Debian's docker-registry on a
//! loopback port (anonymous, htpasswd, TLS, token challenges), a
//! fault-injecting proxy, and a builder for `kiln build` runs.

mod kiln_build;
mod registry;
mod static_http;

pub use kiln_build::KilnBuild;
pub use registry::*;
pub use static_http::StaticHttp;
