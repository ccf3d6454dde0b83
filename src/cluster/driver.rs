//! The Socket.IO adapter every node runs. One adapter type for both modes keeps the gateway and
//! every handler free of a type parameter: alone, its driver publishes nowhere (and our emits
//! are marked local, so nothing is even encoded for it); in a cluster, it is socketioxide-redis's
//! Redis driver, which carries room emits, joins and disconnects to the other nodes.

use socketioxide::adapter::Emitter;
use socketioxide::SocketIo;
use socketioxide_redis::drivers::redis::{RedisDriver, RedisError};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::CustomRedisAdapter;

/// The adapter type of this server's Socket.IO instance.
pub type Adapter = CustomRedisAdapter<Emitter, Pubsub>;
/// This server's Socket.IO instance.
pub type Io = SocketIo<Adapter>;

#[derive(Clone)]
pub enum Pubsub {
    /// One process: there is no one to tell.
    Alone,
    Redis(RedisDriver),
}

impl Driver for Pubsub {
    type Error = RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        match self {
            Pubsub::Alone => Ok(()),
            Pubsub::Redis(d) => d.publish(chan, val).await,
        }
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        match self {
            Pubsub::Alone => Ok(MessageStream::new_empty()),
            Pubsub::Redis(d) => d.subscribe(chan, size).await,
        }
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        match self {
            Pubsub::Alone => Ok(()),
            Pubsub::Redis(d) => d.unsubscribe(chan).await,
        }
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        match self {
            Pubsub::Alone => Ok(1),
            Pubsub::Redis(d) => d.num_serv(chan).await,
        }
    }
}
