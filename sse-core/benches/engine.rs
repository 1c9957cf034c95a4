//! Micro-benchmarks of the engine's hot paths: encoding an event, fanning
//! it out in process to N connections, and a targeted send with N
//! connections registered (which must not grow with N).
//!
//! `cargo bench -p sse-core --bench engine`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use futures::StreamExt as _;
use futures::future::FutureExt as _;
use sse_core::{ConnectOptions, Connection, Event, SseManager};

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, data) in [
        ("100B", "x".repeat(100)),
        ("1KiB-multiline", "line of text\n".repeat(80)),
        ("16KiB", "y".repeat(16 * 1024)),
    ] {
        let event = Event::builder()
            .event("bench")
            .id("1700000000000000")
            .data(data.clone())
            .build()
            .expect("valid event");
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| b.iter(|| black_box(&event).encode()));
    }
    group.finish();
}

/// A manager with `n` connections, each of its own user; the connections
/// are returned so the caller can drain them.
fn connected(runtime: &tokio::runtime::Runtime, n: usize) -> (SseManager, Vec<Connection>) {
    runtime.block_on(async {
        let manager = SseManager::builder()
            .configure(|c| c.max_connections(n + 1).client_queue(1 << 16).heartbeat_interval(None))
            .build()
            .expect("manager");
        let mut connections = Vec::with_capacity(n);
        for i in 0..n {
            let options = ConnectOptions::new().user(format!("u{i}"));
            connections.push(manager.connect(options).await.expect("connect"));
        }
        (manager, connections)
    })
}

fn drain(connections: &mut [Connection]) {
    for connection in connections {
        while let Some(Some(frames)) = connection.next().now_or_never() {
            black_box(frames);
        }
    }
}

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("broadcast");
    for n in [100, 1_000, 10_000] {
        let (manager, mut connections) = connected(&runtime, n);
        let event = Event::named("bench", "x".repeat(100)).expect("valid event");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let sent = manager.broadcast(event.clone()).now_or_never();
                drain(&mut connections);
                black_box(sent)
            });
        });
    }
    group.finish();
}

fn targeted(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("send_to_user");
    for n in [100, 1_000, 10_000] {
        let (manager, mut connections) = connected(&runtime, n);
        let event = Event::named("bench", "x".repeat(100)).expect("valid event");
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let sent = manager.send_to_user("u0", event.clone()).now_or_never();
                drain(&mut connections[..1]);
                black_box(sent)
            });
        });
    }
    group.finish();
}

mod group {
    #![allow(missing_docs)]
    use super::{encoding, fan_out, targeted};
    criterion::criterion_group!(benches, encoding, fan_out, targeted);
}
criterion_main!(group::benches);
