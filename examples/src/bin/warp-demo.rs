//! The warp demo server: serves the demo HTTP contract.
//!
//! `cargo run -p sse-examples --bin warp-demo`, then open <http://127.0.0.1:3000/sse-demo>.

fn main() -> std::process::ExitCode {
    sse_examples::run(sse_examples::warp_demo::serve)
}
