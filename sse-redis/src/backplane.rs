//! The [`Backplane`] trait for [`RedisBackplane`]: publishing, preloading
//! and running the reader, presence and statistics, each handed to the
//! module that does it on the backplane's runtime.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sse_core::{
    Appended, Backplane, BackplaneError, BackplaneSink, ClusterReport, PresenceMember, PresenceUpdate, StatsReport,
    async_trait,
};

use crate::{RedisBackplane, presence, reader, shards, stats};

#[async_trait]
impl Backplane for RedisBackplane {
    async fn publish(&self, payload: Bytes) -> Result<String, BackplaneError> {
        self.append(None, payload).await
    }

    async fn publish_once(&self, payload: Bytes, key: &str, window: Duration) -> Result<Appended, BackplaneError> {
        self.append_once(None, payload, key, window).await
    }

    fn channel_shard(&self, channel: &str) -> Option<u32> {
        shards::shard_of(channel, self.inner.shards)
    }

    fn interest_changed(&self) {
        shards::interrupt_reader(&self.inner);
    }

    async fn publish_to_shard(&self, shard: u32, payload: Bytes) -> Result<String, BackplaneError> {
        self.append(Some(shard), payload).await
    }

    async fn publish_once_to_shard(
        &self,
        shard: u32,
        payload: Bytes,
        key: &str,
        window: Duration,
    ) -> Result<Appended, BackplaneError> {
        self.append_once(Some(shard), payload, key, window).await
    }

    fn preload(&self, sink: &BackplaneSink) {
        // Loaded now, before the manager is returned, so that it can resume
        // clients from its first connection on.
        let snapshot = self.inner.snapshot.lock().ok().and_then(|mut slot| slot.take());
        let position = snapshot.map(|entries| {
            if self.inner.shards > 0 {
                shards::preload(sink, &entries)
            } else {
                reader::preload(sink, &entries)
            }
        });
        if let Ok(mut slot) = self.preloaded.lock() {
            *slot = position;
        }
    }

    async fn run(self: Arc<Self>, sink: BackplaneSink) {
        let position = self.preloaded.lock().ok().and_then(|mut slot| slot.take());
        let task = self
            .inner
            .handle
            .spawn(reader::read_log(self.inner.clone(), sink, position));
        if let Err(error) = task.await {
            tracing::error!(%error, "sse-redis: the log reader failed");
        }
    }

    async fn check(&self) -> Result<(), BackplaneError> {
        self.ping().await.map_err(BackplaneError::new)
    }

    fn shares_presence(&self) -> bool {
        true
    }

    async fn update_presence(&self, instance: u64, update: PresenceUpdate) -> Result<bool, BackplaneError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { presence::update(&inner, instance, update).await })
            .await
            .map_err(BackplaneError::new)
    }

    async fn renew_presence(&self, instance: u64, timeout: Duration) -> Result<bool, BackplaneError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { presence::renew(&inner, instance, timeout).await })
            .await
            .map_err(BackplaneError::new)
    }

    async fn withdraw_presence(&self, instance: u64) -> Result<(), BackplaneError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { presence::withdraw(&inner, instance).await })
            .await
            .map_err(BackplaneError::new)
    }

    async fn presence(&self, channel: &str) -> Result<Vec<PresenceMember>, BackplaneError> {
        let inner = self.inner.clone();
        let channel = channel.to_owned();
        self.on_runtime(async move { presence::members(&inner, &channel).await })
            .await
            .map_err(BackplaneError::new)
    }

    fn shares_stats(&self) -> bool {
        true
    }

    async fn report_stats(&self, instance: u64, report: StatsReport) -> Result<(), BackplaneError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { stats::report(&inner, instance, report).await })
            .await
            .map_err(BackplaneError::new)
    }

    async fn withdraw_stats(&self, instance: u64) -> Result<(), BackplaneError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { stats::withdraw(&inner, instance).await })
            .await
            .map_err(BackplaneError::new)
    }

    async fn cluster_stats(&self) -> Result<ClusterReport, BackplaneError> {
        let inner = self.inner.clone();
        self.on_runtime(async move { stats::query(&inner).await })
            .await
            .map_err(BackplaneError::new)
    }
}
