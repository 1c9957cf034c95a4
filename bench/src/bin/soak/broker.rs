//! The soak's own Redis: a `redis-server` on a free loopback port, keeping
//! nothing on disk, so that killing it and starting it again loses the
//! stream, as a broker restart without persistence does.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of the soak's own, killed when dropped.
pub(crate) struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    /// Starts one on a free port and waits until it answers.
    pub(crate) async fn start() -> Result<Broker, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        Self::on(port).await
    }

    async fn on(port: u16) -> Result<Broker, String> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        let broker = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !broker.answers().await {
            if Instant::now() > deadline {
                return Err("the soak's redis-server did not answer".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(broker)
    }

    /// Its URL.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn answers(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(Ok(mut connection)) =
            tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection()).await
        else {
            return false;
        };
        redis::cmd("PING").query_async::<String>(&mut connection).await.is_ok()
    }

    /// Kills it with SIGKILL, waits two seconds (an outage), and starts a new
    /// one, empty, on the same port.
    pub(crate) async fn restart(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let fresh = Self::on(self.port).await?;
        // The old child is reaped; keep the new one.
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
        Ok(())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
