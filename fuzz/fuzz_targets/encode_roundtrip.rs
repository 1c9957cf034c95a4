//! Any event fields, built, encoded and parsed back (see `sse_fuzz::encode_roundtrip`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|fields: sse_fuzz::Fields| sse_fuzz::encode_roundtrip(fields));
