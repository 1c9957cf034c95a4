//! A publish flood against each demo process, as a hostile publisher would
//! send it: JSON bodies of line breaks, which cost 2 bytes each in the body
//! and 6 on the wire (`data:` and the break), published with no subscriber.
//! The history keeps them within `SSE_HISTORY_BYTES`, so the demo's
//! resident size stays under a ceiling however many are sent.
//!
//! Scaled so that a debug build runs it in seconds: 60 bodies of 256 KiB
//! (46 MiB of frames) against an 8 MiB history. SECURITY.md has the
//! figures of the full attack (1,100 bodies of 1 MiB) against release
//! builds. Linux only (the resident size is read from `/proc`).
#![cfg(target_os = "linux")]

mod apps;

use apps::{App, PATIENCE};

const MIB: u64 = 1 << 20;

/// The resident size of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

async fn flood(binary: &str) {
    let app = App::start(binary, &[("SSE_HISTORY_BYTES", "8388608")]);
    let pid = app.pid();
    let http = reqwest::Client::new();
    // One line break, JSON-escaped, is 2 bytes: a body of 256 KiB.
    let body = format!(r#"{{"event":"flood","data":"{}"}}"#, "\\n".repeat(128 * 1024));
    let publish = || async {
        let answer = tokio::time::timeout(
            PATIENCE,
            http.post(format!("{}/api/sse/publish", app.base))
                .header("content-type", "application/json")
                .body(body.clone())
                .send(),
        )
        .await
        .expect("an answer in time")
        .expect("an answer");
        assert_eq!(answer.status(), 200);
    };
    // Warm-up: the allocator and the HTTP stack at their working size.
    for _ in 0..4 {
        publish().await;
    }
    let before = rss(pid);
    for _ in 0..60 {
        publish().await;
    }
    let after = rss(pid);
    let stats = http
        .get(format!("{}/api/sse/stats", app.base))
        .send()
        .await
        .expect("stats")
        .bytes()
        .await
        .expect("the body");
    let stats: serde_json::Value = serde_json::from_slice(&stats).expect("JSON");
    let held = stats["frameBytes"].as_u64().expect("frameBytes");
    println!(
        "{binary}: {} MiB resident before, {} MiB after 60 frames of 768 KiB; {} MiB of frames held",
        before / MIB,
        after / MIB,
        held / MIB
    );
    assert!(held <= 8 * MIB, "{stats}");
    // The history's 8 MiB, and as much again for the allocator and the
    // request bodies in flight.
    assert!(after < before + 24 * MIB, "grew from {before} to {after} bytes");
}

#[tokio::test]
async fn axum_demo_holds_a_newline_flood_within_its_history_budget() {
    flood(env!("CARGO_BIN_EXE_axum-demo")).await;
}

#[tokio::test]
async fn warp_demo_holds_a_newline_flood_within_its_history_budget() {
    flood(env!("CARGO_BIN_EXE_warp-demo")).await;
}

#[tokio::test]
async fn poem_demo_holds_a_newline_flood_within_its_history_budget() {
    flood(env!("CARGO_BIN_EXE_poem-demo")).await;
}
