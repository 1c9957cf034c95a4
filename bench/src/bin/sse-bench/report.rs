//! What one run measured ([`Report`]), and the rows of the table the
//! benchmark prints.

/// What one run measured.
#[derive(Debug, Default, Clone)]
pub(crate) struct Report {
    pub(crate) ready: usize,
    pub(crate) connect_secs: f64,
    pub(crate) rss_per_connection_kib: f64,
    pub(crate) published: u64,
    pub(crate) expected: u64,
    pub(crate) delivered: u64,
    pub(crate) duplicates: u64,
    pub(crate) deliveries_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) server_cpu_secs: f64,
    pub(crate) server_cpu_us_per_delivery: f64,
    pub(crate) server_cpu_us_per_publish: f64,
    pub(crate) server_rss_mib: f64,
    pub(crate) client_cpu_secs: f64,
}

pub(crate) fn print_header() {
    println!(
        "| scenario | server | ready | connect s | RSS/conn KiB | published | delivery | dup | deliveries/s | p50 ms | p99 ms | max ms | server CPU s | CPU µs/delivery | CPU µs/publish | server RSS MiB | loadgen CPU s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

pub(crate) fn print_row(scenario: &str, server: &str, r: &Report) {
    let ratio = if r.expected > 0 {
        r.delivered as f64 / r.expected as f64
    } else {
        1.0
    };
    println!(
        "| {scenario} | {server} | {} | {:.2} | {:.1} | {} | {:.4} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} |",
        r.ready,
        r.connect_secs,
        r.rss_per_connection_kib,
        r.published,
        ratio,
        r.duplicates,
        r.deliveries_per_sec,
        r.p50_ms,
        r.p99_ms,
        r.max_ms,
        r.server_cpu_secs,
        r.server_cpu_us_per_delivery,
        r.server_cpu_us_per_publish,
        r.server_rss_mib,
        r.client_cpu_secs,
    );
}
