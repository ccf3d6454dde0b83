//! The Socket.IO adapter every node runs. One adapter type for both modes keeps the gateway and
//! every handler free of a type parameter: alone, its driver publishes nowhere (and our emits
//! are marked local, so nothing is even encoded for it); in a cluster, it carries room emits,
//! joins and disconnects to the other nodes over Redis pub/sub, on a connection that comes back
//! after a Redis restart or a network cut and subscribes its channels again (socketioxide-redis's
//! own driver keeps one connection for life).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, PushInfo, PushKind};
use socketioxide::adapter::Emitter;
use socketioxide::SocketIo;
use socketioxide_redis::drivers::redis::RedisError;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::CustomRedisAdapter;
use tokio::sync::mpsc;

/// The adapter type of this server's Socket.IO instance.
pub type Adapter = CustomRedisAdapter<Emitter, Pubsub>;
/// This server's Socket.IO instance.
pub type Io = SocketIo<Adapter>;

#[derive(Clone)]
pub enum Pubsub {
    /// One process: there is no one to tell.
    Alone,
    Redis(Resilient),
}

impl Pubsub {
    /// The Redis connection the adapter publishes on (to ask whether Redis answers it).
    pub fn connection(&self) -> Option<ConnectionManager> {
        match self {
            Pubsub::Alone => None,
            Pubsub::Redis(r) => Some(r.conn.clone()),
        }
    }
}

type Handlers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// The Redis side of the adapter: pub/sub on a connection manager with automatic
/// resubscription; messages go to the adapter's stream for their channel.
#[derive(Clone)]
pub struct Resilient {
    handlers: Handlers,
    conn: ConnectionManager,
}

impl Resilient {
    /// `dropped` counts the messages a full adapter channel refused, `received` all of them.
    pub async fn connect(
        client: &redis::Client,
        dropped: Counter,
        received: Counter,
    ) -> redis::RedisResult<Resilient> {
        let handlers: Handlers = Arc::default();
        let (tx, mut rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(tx)
            .set_automatic_resubscription();
        let conn = client.get_connection_manager_with_config(config).await?;
        let h = handlers.clone();
        tokio::spawn(async move {
            while let Some(push) = rx.recv().await {
                deliver(&h, push, &dropped, &received);
            }
        });
        // A connection that sends nothing never learns it broke: a ping a second notices a
        // Redis restart, and the manager reconnects and subscribes again.
        let mut probe = conn.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = redis::cmd("PING").query_async::<String>(&mut probe).await;
            }
        });
        Ok(Resilient { handlers, conn })
    }
}

fn deliver(handlers: &Handlers, push: PushInfo, dropped: &Counter, received: &Counter) {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) || push.data.len() < 2 {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(chan), Some(msg)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(chan), Ok(msg)) = (
        redis::from_redis_value::<String>(chan),
        redis::from_redis_value::<Vec<u8>>(msg),
    ) else {
        return;
    };
    if let Some(tx) = handlers.read().expect("not poisoned").get(&chan) {
        received.inc();
        // A full channel: the adapter is that far behind, and waiting here would hold up every
        // other channel's messages (and the connection's replies) behind it.
        if tx.try_send((chan, msg)).is_err() {
            dropped.inc();
            tracing::warn!("a Socket.IO adapter channel is full; a message was dropped");
        }
    }
}

impl Resilient {
    async fn publish(&self, chan: String, val: Vec<u8>) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        c.publish::<_, _, ()>(chan, val).await
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> redis::RedisResult<MessageStream<ChanItem>> {
        let (tx, rx) = mpsc::channel(size);
        self.handlers
            .write()
            .expect("not poisoned")
            .insert(chan.clone(), tx);
        let mut c = self.conn.clone();
        c.subscribe(chan).await?;
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> redis::RedisResult<()> {
        self.handlers.write().expect("not poisoned").remove(&chan);
        let mut c = self.conn.clone();
        c.unsubscribe(chan).await
    }

    async fn num_serv(&self, chan: &str) -> redis::RedisResult<u16> {
        let mut c = self.conn.clone();
        let (_, n): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut c)
            .await?;
        Ok(n)
    }
}

impl Driver for Pubsub {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        match self {
            Pubsub::Alone => Ok(()),
            Pubsub::Redis(d) => Ok(d.publish(chan, val).await?),
        }
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        match self {
            Pubsub::Alone => Ok(MessageStream::new_empty()),
            Pubsub::Redis(d) => Ok(d.subscribe(chan, size).await?),
        }
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        match self {
            Pubsub::Alone => Ok(()),
            Pubsub::Redis(d) => Ok(d.unsubscribe(chan).await?),
        }
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        match self {
            Pubsub::Alone => Ok(1),
            Pubsub::Redis(d) => Ok(d.num_serv(chan).await?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(chan: &str, body: &[u8]) -> PushInfo {
        PushInfo {
            kind: PushKind::Message,
            data: vec![
                redis::Value::BulkString(chan.as_bytes().to_vec()),
                redis::Value::BulkString(body.to_vec()),
            ],
        }
    }

    #[test]
    fn messages_go_to_their_channel_and_a_full_channel_counts_what_it_drops() {
        let handlers: Handlers = Arc::default();
        let (tx, mut rx) = mpsc::channel(1);
        handlers.write().unwrap().insert("c".into(), tx);
        let (dropped, got) = (Counter::default(), Counter::default());
        deliver(&handlers, message("c", b"one"), &dropped, &got);
        deliver(
            &handlers,
            message("other", b"no one listens"),
            &dropped,
            &got,
        );
        assert_eq!(dropped.get(), 0);
        deliver(&handlers, message("c", b"two"), &dropped, &got);
        assert_eq!(dropped.get(), 1, "the channel holds one message");
        assert_eq!(rx.try_recv().unwrap(), ("c".to_string(), b"one".to_vec()));
        assert!(rx.try_recv().is_err());
        deliver(&handlers, message("c", b"three"), &dropped, &got);
        assert_eq!(rx.try_recv().unwrap().1, b"three".to_vec());
        assert_eq!(dropped.get(), 1);
        // Every message for the adapter is counted, the dropped one too.
        assert_eq!(got.get(), 3);
    }
}
