//! The shared state every service reaches through `Arc<App>`: configuration, the store, the
//! live-call registry, presence, the doors out (notify, timers, push), and who is who.
//! Building and running the server is [`crate::server`]'s job.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::session::{is_session_token, SessionKeys};
use crate::auth::signin::Lockout;
use crate::auth::{strip_bearer, AuthError, Identity, TokenKind, Verifier};
use crate::calls::registry::Registry;
use crate::calls::timers::Timers;
use crate::config::Config;
use crate::ice::IceIssuer;
use crate::media::Media;
use crate::profile::cache::Profiles;
use crate::push::Pusher;
use crate::realtime::notify::Notifier;
use crate::realtime::presence::Presence;
use crate::store::{ClaimedProfile, Store};

/// Socket events above this size get `v1OnException`; the connection stays usable.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Transport frames above this close the offending connection (abuse, not a mistake).
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// REST bodies above this answer 413 in the envelope (uploads have their own limits).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

pub struct App {
    pub config: Config,
    pub store: Store,
    /// The server's own tokens (`auth/connect`).
    pub sessions: SessionKeys,
    /// Tokens of the operator's auth server.
    pub verifier: Verifier,
    pub signin_by_identifier: Lockout,
    pub signin_by_address: Lockout,
    pub notify: Notifier,
    pub presence: Arc<Presence>,
    pub calls: Registry,
    pub timers: Timers,
    pub profiles: Profiles,
    pub media: Media,
    pub push: Pusher,
    pub limits: crate::limits::Limits,
    pub ice: IceIssuer,
    /// The embedded TURN server, when it runs here.
    pub turn: Option<Arc<vchat_turn::TurnServer>>,
    pub metrics: crate::metrics::Metrics,
    /// The address the server listens on (the bound one, when the config asked for port 0).
    pub addr: SocketAddr,
    /// Cluster mode: this node's link to the others.
    pub cluster: Option<std::sync::Arc<crate::cluster::link::Cluster>>,
    /// This node's id (generated when not configured).
    pub node_id: String,
}

impl App {
    /// The owner recorded on calls this node places: its id in a cluster, nothing when alone.
    pub fn node(&self) -> &str {
        match &self.cluster {
            Some(c) => &c.node,
            None => "",
        }
    }

    /// A user's name or picture changed: every node's cached profile goes (this node's was
    /// already refreshed by the caller).
    pub async fn profile_changed(&self, user_id: &str) {
        if let Some(c) = &self.cluster {
            c.profile_changed(user_id).await;
        }
    }

    /// This node's id, for logs and `/metrics`.
    pub fn node_name(&self) -> &str {
        &self.node_id
    }

    /// Who a token belongs to. Session tokens must name a live session; external tokens make
    /// their user known (claims describe them) and name the device by `did`.
    pub async fn identify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = strip_bearer(token);
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if is_session_token(token) {
            let c = self.sessions.verify(token)?.claims;
            let session = c.did.unwrap_or_default();
            let (user, platform) = self
                .store
                .session_user(&c.sub, &session)
                .await
                .map_err(|e| AuthError::Unavailable(e.to_string()))?
                .ok_or(AuthError::LoggedOut)?;
            self.profiles.put(user.clone());
            return Ok(Identity {
                user_id: user.id,
                device: session,
                name: user.full_name,
                identifier: user.identifier,
                img: user.img,
                kind: TokenKind::Session,
                platform,
                exp: c.exp,
            });
        }
        let c = self.verifier.verify(token).await?;
        let texts = [
            Some(&c.sub),
            c.name.as_ref(),
            c.identifier.as_ref(),
            c.img.as_ref(),
            c.picture.as_ref(),
            c.did.as_ref(),
        ];
        if texts.into_iter().flatten().any(|t| t.contains('\0')) {
            return Err(AuthError::Invalid(format!(
                "claims: {}",
                crate::wire::nul::REFUSED
            )));
        }
        let name = c.name.clone().unwrap_or_else(|| c.sub.clone());
        let identifier = c.identifier.clone().unwrap_or_else(|| c.sub.clone());
        let img = c.img.clone().or(c.picture.clone()).unwrap_or_default();
        let user = self
            .profiles
            .remember(
                &self.store,
                &ClaimedProfile {
                    id: &c.sub,
                    full_name: &name,
                    identifier: &identifier,
                    img: &img,
                },
            )
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(Identity {
            user_id: user.id,
            device: c.did.filter(|d| !d.is_empty()).unwrap_or_default(),
            name: user.full_name,
            identifier: user.identifier,
            img: user.img,
            kind: TokenKind::External,
            platform: "other".into(),
            exp: c.exp,
        })
    }

    /// The base URL file links are built under: `VCHAT_PUBLIC_URL`, else this server's address
    /// (the request's `Host` when we listen on every interface, since that is what the client
    /// reached).
    pub fn public_base(&self, host: Option<&str>) -> String {
        if let Some(url) = &self.config.public_url {
            return url.clone();
        }
        match host {
            Some(h) if self.addr.ip().is_unspecified() && !h.is_empty() => format!("http://{h}"),
            _ => format!("http://{}", self.addr),
        }
    }
}
