//! Test fixtures shared by kiln's crates: Debian's docker-registry on a
//! loopback port (anonymous, htpasswd, TLS, token challenges), a
//! fault-injecting proxy, and a builder for `kiln build` runs.

mod kiln_build;
mod registry;
mod static_http;

pub use kiln_build::KilnBuild;
pub use registry::*;
pub use static_http::StaticHttp;

/// `len` bytes that do not repeat and do not compress (xorshift), the
/// same on every call.
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 4);
    let mut x: u32 = 0x1234_5678;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
