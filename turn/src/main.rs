//! `vchat-turn`: run the vchat TURN server on its own.

use std::net::{IpAddr, SocketAddr};

use clap::Parser;
use vchat_turn::TurnConfig;

/// A whole CIDR list parsed from one flag value (an alias, so clap does not
/// treat the field as a repeated flag).
type PeerList = Vec<vchat_turn::ipnet::IpNet>;

/// Standalone vchat TURN server (UDP). Accepts coturn-style time-limited
/// credentials: username `<unix-expiry>:<userId>`,
/// password `base64(HMAC-SHA1(secret, username))`.
#[derive(Parser, Debug)]
#[command(name = "vchat-turn", version)]
struct Args {
    /// UDP address to listen on.
    #[arg(long, env = "VCHAT_TURN_LISTEN", default_value = "127.0.0.1:3478")]
    listen: SocketAddr,

    /// IP address advertised in relayed candidates (your public IP in production).
    #[arg(long, env = "VCHAT_TURN_RELAY_IP", default_value = "127.0.0.1")]
    relay_ip: IpAddr,

    /// TURN realm (must match the signaling server / coturn `realm`).
    #[arg(long, env = "VCHAT_TURN_REALM", default_value = "vchat")]
    realm: String,

    /// Shared secret used to verify credentials (coturn `static-auth-secret`).
    #[arg(long, env = "VCHAT_TURN_SECRET", hide_env_values = true)]
    secret: String,

    /// Relay port range, inclusive, as MIN-MAX.
    #[arg(long, env = "VCHAT_TURN_PORT_RANGE", default_value = "49152-65535", value_parser = vchat_turn::parse_port_range)]
    port_range: (u16, u16),

    /// Peer networks the relay may always reach, as CIDRs separated by commas or
    /// spaces (e.g. "10.0.0.0/8,fd00::/8"). Without them, loopback (unless
    /// allowed below), private, link-local, multicast, broadcast, reserved and
    /// unspecified addresses, this server's own addresses and its listen port
    /// are refused. The unspecified address and the listen port stay refused.
    #[arg(long, env = "VCHAT_TURN_ALLOWED_PEERS", default_value = "", value_parser = vchat_turn::parse_allowed_peers)]
    allowed_peers: PeerList,

    /// Allow relaying to loopback peers (true/false). Default: allowed exactly
    /// when --listen is a loopback address (laptop setup).
    #[arg(long, env = "VCHAT_TURN_ALLOW_LOOPBACK_PEERS")]
    allow_loopback_peers: Option<bool>,

    /// Live allocations per user (the userId of the TURN username); 0 = unlimited.
    #[arg(long, env = "VCHAT_TURN_MAX_ALLOCATIONS_PER_USER", default_value_t = vchat_turn::DEFAULT_MAX_ALLOCATIONS_PER_USER)]
    max_allocations_per_user: usize,

    /// Live allocations on the whole server; 0 = unlimited.
    #[arg(long, env = "VCHAT_TURN_MAX_ALLOCATIONS", default_value_t = vchat_turn::DEFAULT_MAX_ALLOCATIONS)]
    max_allocations: usize,

    /// Log filter (tracing EnvFilter syntax, e.g. "info" or "vchat_turn=debug,turn=info").
    #[arg(long = "log", env = "VCHAT_LOG", default_value = "info")]
    log: String,
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log)?)
        .init();

    let server = vchat_turn::start(TurnConfig {
        listen: args.listen,
        relay_ip: args.relay_ip,
        realm: args.realm,
        secret: args.secret,
        relay_port_min: args.port_range.0,
        relay_port_max: args.port_range.1,
        allowed_peers: args.allowed_peers,
        allow_loopback_peers: args.allow_loopback_peers,
        max_allocations_per_user: args.max_allocations_per_user,
        max_allocations: args.max_allocations,
    })
    .await?;

    shutdown_signal().await;
    tracing::info!("shutdown signal received");
    server.close().await?;
    Ok(())
}
