//! Any `Last-Event-ID` on connect (see `sse_fuzz::last_event_id`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|resume: sse_fuzz::Resume| sse_fuzz::last_event_id(resume));
