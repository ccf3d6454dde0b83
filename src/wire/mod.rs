//! Everything that crosses the wire: event names, payload shapes, the lenient decoder and the
//! REST error envelope. Handlers build no JSON by hand.

pub mod decode;
pub mod envelope;
pub mod events;
pub mod nul;
pub mod shapes;

pub use decode::decode;
pub use envelope::ApiError;
