//! The conformance suite shared by every adapter.
#![forbid(unsafe_code)]
