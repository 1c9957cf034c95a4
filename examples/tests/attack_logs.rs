//! What the demos log under attack and at start: no `ERROR` line, and no
//! line per client at any level, for the clients that vanish (hundreds of
//! streams dropped without a goodbye, after they stopped reading and were
//! closed as too slow), and a warning at start when subscribers are
//! authenticated but publishing is open.

mod apps;

use std::io::{Read as _, Seek as _, SeekFrom};
use std::time::Duration;

use apps::{App, PATIENCE};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// `binary`'s log, after `scenario` ran against it and it was stopped.
async fn log_of<F, Fut>(binary: &str, vars: &[(&str, &str)], scenario: F) -> String
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut file = tempfile::tempfile().expect("a log file");
    let app = App::start_with_log(binary, vars, file.try_clone().expect("the log file"));
    scenario(app.base.clone()).await;
    drop(app);
    let mut log = String::new();
    // The child wrote through a clone of the handle, which shares its offset.
    file.seek(SeekFrom::Start(0)).expect("rewind the log");
    file.read_to_string(&mut log).expect("the log");
    log
}

/// Opens a stream at `base` by hand and reads up to its `connected` event.
async fn open(base: &str) -> TcpStream {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let request = format!("GET /api/sse HTTP/1.1\r\nhost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut seen = Vec::new();
    let mut buffer = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: connected") {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut buffer))
            .await
            .expect("the stream opens in time")
            .expect("read");
        assert!(read > 0, "the stream ended before `connected`");
        seen.extend_from_slice(&buffer[..read]);
    }
    stream
}

async fn vanishing_clients(binary: &str) {
    let log = log_of(binary, &[("SSE_CLIENT_QUEUE", "4")], |base| async move {
        let http = reqwest::Client::new();
        // 300 clients vanish without a goodbye; 100 more stop reading first,
        // while large events pile up, and are closed as too slow.
        let mut streams = Vec::new();
        for _ in 0..400 {
            streams.push(open(&base).await);
        }
        let big = format!(r#"{{"event":"big","data":"{}"}}"#, "x".repeat(64 * 1024));
        for _ in 0..40 {
            let answer = http
                .post(format!("{base}/api/sse/publish"))
                .header("content-type", "application/json")
                .body(big.clone())
                .send()
                .await
                .expect("publish");
            assert_eq!(answer.status(), 200);
        }
        drop(streams);
        // Heartbeats (every 200 ms) meet the sockets gone.
        tokio::time::sleep(Duration::from_millis(600)).await;
    })
    .await;
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    println!("{binary}: {} log lines, {} at ERROR", log.lines().count(), errors.len());
    assert!(errors.is_empty(), "{errors:#?}");
    // Not a line per client at any level: at most one warning a minute.
    assert!(log.lines().count() < 10, "{log}");
}

async fn open_publishing_is_warned(binary: &str) {
    let log = log_of(
        binary,
        &[("SSE_AUTH_SECRET", "a secret for the test only")],
        |_| async {},
    )
    .await;
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("SSE_PUBLISH_TOKEN")),
        "{log}"
    );
    let log = log_of(
        binary,
        &[
            ("SSE_AUTH_SECRET", "a secret for the test only"),
            ("SSE_PUBLISH_TOKEN", "a token for the test only"),
        ],
        |_| async {},
    )
    .await;
    assert!(
        !log.contains("SSE_PUBLISH_TOKEN"),
        "no warning with a publish token: {log}"
    );
}

macro_rules! attack_logs {
    ($($framework:ident => $binary:literal),* $(,)?) => {
        $(
            mod $framework {
                #[tokio::test]
                async fn vanishing_clients_log_no_error() {
                    super::vanishing_clients(env!(concat!("CARGO_BIN_EXE_", $binary))).await;
                }

                #[tokio::test]
                async fn open_publishing_is_warned_at_start() {
                    super::open_publishing_is_warned(env!(concat!("CARGO_BIN_EXE_", $binary))).await;
                }
            }
        )*
    };
}

attack_logs!(axum => "axum-demo", warp => "warp-demo", poem => "poem-demo");
