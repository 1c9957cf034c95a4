//! Any bytes as the body of `POST /publish` (see `sse_fuzz::publish_request`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| sse_fuzz::publish_request(body));
