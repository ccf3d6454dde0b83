//! The `vchat-signal` command line: run the server (default), back up the store, or mint a
//! development token. It lives in the library, not in `main.rs`, so the whole server's async
//! code is compiled once: a binary that polls the library's futures itself (through
//! `block_on`) gets its own copy of every one of them, which doubled the release build's
//! longest step.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::auth::{self, Claims};
use crate::config::ServeArgs;

#[derive(Parser)]
#[command(
    name = "vchat-signal",
    version,
    about = "Call signaling and text chat for V Chat SDK clients (Socket.IO v4 + REST /api/v2), with an embedded TURN server",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Write a consistent copy of the database to FILE, while the server keeps serving.
    ///
    /// Restore: stop the server, put FILE in the data dir as `vchat.db` (removing any
    /// `vchat.db-wal` and `vchat.db-shm` next to it), start the server.
    Backup {
        /// Where to write the copy (must not exist yet).
        file: std::path::PathBuf,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Print an access token signed with the configured HS256 secret (or the development secret).
    Token {
        /// User id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Full name (`name` claim).
        #[arg(long)]
        name: Option<String>,
        /// App identifier (`identifier` claim) [default: the user id]
        #[arg(long)]
        identifier: Option<String>,
        /// Image URL (`img` claim).
        #[arg(long)]
        img: Option<String>,
        /// Device id (`did` claim); calls ring and answer per device.
        #[arg(long)]
        did: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
        #[command(flatten)]
        serve: ServeArgs,
    },
}

pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Token {
            sub,
            name,
            identifier,
            img,
            did,
            ttl,
            serve,
        }) => token(serve, sub, name, identifier, img, did, ttl),
        Some(Cmd::Serve(args)) => serve(args),
        Some(Cmd::Backup { file, serve }) => backup(serve, file),
        None => serve(cli.serve),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vchat-signal: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let config = args.resolve()?;
    // Logs go to stderr: stdout carries the one "listening on" line scripts read.
    let filter = EnvFilter::try_new(&config.log).map_err(|e| format!("invalid log filter: {e}"))?;
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if config.log_format == "json" {
        // The event's fields at the top level, the enclosing spans' (a call's meet_id and
        // user) under "span" and "spans".
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        logs.init();
    }
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let server = crate::start(config).await?;
        // One plain line for scripts and tests that start us on port 0 (a closed stdout is no
        // reason to stop serving).
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout(),
            "vchat-signal listening on http://{}{}{}",
            server.addr,
            server
                .turn_addr
                .map(|a| format!(" turn={a}"))
                .unwrap_or_default(),
            server
                .metrics_addr
                .map(|a| format!(" metrics={a}"))
                .unwrap_or_default()
        );
        server.run_until_signal().await;
        Ok(())
    })
}

fn backup(args: ServeArgs, file: std::path::PathBuf) -> Result<(), String> {
    let config = args.resolve()?;
    if config.database_url.is_some() {
        return Err("backup copies the SQLite store; back PostgreSQL up with pg_dump".into());
    }
    let db = config.database_path();
    let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let size = rt.block_on(crate::store::Store::backup(&db, &file))?;
    println!(
        "backed up {} to {} ({size} bytes)",
        db.display(),
        file.display()
    );
    Ok(())
}

fn token(
    args: ServeArgs,
    sub: String,
    name: Option<String>,
    identifier: Option<String>,
    img: Option<String>,
    did: Option<String>,
    ttl: u64,
) -> Result<(), String> {
    let config = args.resolve()?;
    if config.jwt_public_key.is_some() || config.jwt_jwks_url.is_some() {
        return Err("tokens for a public-key or JWKS setup are minted by your auth server".into());
    }
    let secret = match &config.jwt_secret {
        Some(s) => s.clone(),
        None => auth::dev_secret(&config.data_dir).map_err(|e| e.to_string())?,
    };
    let claims = Claims {
        sub,
        exp: auth::now_unix() + ttl,
        name,
        identifier,
        img,
        did,
    };
    println!("{}", auth::mint(secret.as_bytes(), &claims));
    Ok(())
}
