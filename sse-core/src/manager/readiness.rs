//! Whether this instance should take traffic: [`SseManager::ready`] for a
//! readiness probe, false from the moment the instance starts to drain
//! ([`SseManager::drain`], or [`SseManager::shutdown`]) and while its
//! backplane does not answer, so that a load balancer stops sending it
//! clients before its streams are ended.

use std::sync::atomic::Ordering;

use super::SseManager;
use crate::error::NotReady;

impl SseManager {
    /// Starts draining: [`SseManager::ready`] answers
    /// [`NotReady::Draining`] from now on, so that a readiness probe takes
    /// the instance out of its load balancer, while every connection stays
    /// open and every send still works. Call it when a shutdown signal
    /// arrives, wait for the probe's period, then call
    /// [`SseManager::shutdown`]. Calling it again does nothing.
    pub fn drain(&self) {
        if !self.shared.draining.swap(true, Ordering::AcqRel) {
            tracing::info!("sse manager draining: not ready any more");
        }
    }

    /// Whether [`SseManager::drain`] or [`SseManager::shutdown`] was called.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire) || self.is_shut_down()
    }

    /// Whether this instance should take new clients: not shut down, not
    /// draining, and its backplane, if any, reachable
    /// ([`Backplane::check`](crate::Backplane::check)).
    ///
    /// # Errors
    /// The [`NotReady`] reason.
    pub async fn ready(&self) -> Result<(), NotReady> {
        if self.is_shut_down() {
            return Err(NotReady::ShutDown);
        }
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        if let Some(backplane) = &self.shared.backplane {
            backplane.check().await.map_err(NotReady::Backplane)?;
        }
        Ok(())
    }
}
