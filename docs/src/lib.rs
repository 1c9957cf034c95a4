//! The Rust snippets of the repository's guides, compiled as doc tests so
//! that they cannot drift from the code: `README.md`, `ARCHITECTURE.md`,
//! `docs/deployment.md` and `docs/http-api.md`.
//!
//! Server snippets are marked `no_run`: they are compiled, never run, so no
//! test binds a port. The others run. `cargo test -p sse-docs --doc` checks
//! them all; `cargo test --workspace` includes them.
#![forbid(unsafe_code)]

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme {}

#[cfg(doctest)]
#[doc = include_str!("../../ARCHITECTURE.md")]
mod architecture {}

#[cfg(doctest)]
#[doc = include_str!("../deployment.md")]
mod deployment {}

#[cfg(doctest)]
#[doc = include_str!("../http-api.md")]
mod http_api {}
