//! Signing in as the V Chat SDK does (`auth/connect`, register-or-login with the shared-key
//! hash), and signing out (`auth/logout`). Each sign-in is its own device session: the SDK's
//! `deviceId` is not unique across phones (Android sends Build.ID), so the token names a session
//! id the server made, and `deviceId`, platform, language and push key are kept on it.

use std::net::IpAddr;

use serde::Serialize;

use crate::app::App;
use crate::auth::{now_unix, signin, Claims, Identity, TokenKind};
use crate::http::extract::Form;
use crate::ids::{iso, new_id};
use crate::store::NewSession;
use crate::wire::shapes::UserImages;
use crate::wire::ApiError;

/// `platform` values the SDK sends.
pub const PLATFORMS: [&str; 8] = [
    "android", "ios", "web", "linux", "windows", "macOs", "fuchsia", "other",
];
const MAX_IDENTIFIER: usize = 256;
const MAX_DEVICE_ID: usize = 512;
const MAX_LANGUAGE: usize = 35;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedUser {
    #[serde(rename = "_id")]
    pub id: String,
    pub identifier: String,
    pub full_name: String,
    pub user_images: UserImages,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    pub user: SignedUser,
    pub access_token: String,
}

fn required<'a>(form: &'a Form, name: &str, max: usize) -> Result<&'a str, ApiError> {
    let v = form
        .text(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad(format!("{name} is required")))?;
    if v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::bad(format!(
            "{name} must be at most {max} characters without control characters"
        )));
    }
    Ok(v)
}

fn optional<'a>(form: &'a Form, name: &str, max: usize) -> Result<Option<&'a str>, ApiError> {
    match form.text(name).map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => Err(
            ApiError::bad(format!("{name} must be at most {max} characters")),
        ),
        Some(v) => Ok(Some(v)),
    }
}

fn too_many(what: &str, left: std::time::Duration) -> ApiError {
    ApiError::TooManyRequests(format!(
        "too many failed sign-ins for this {what}; try again in {} s",
        left.as_secs().max(1)
    ))
}

/// `POST auth/connect`. Everything is checked before anything is written, so a refused
/// sign-in changes nothing.
pub async fn connect(
    app: &App,
    form: &Form,
    client: IpAddr,
    base: &str,
) -> Result<SignedIn, ApiError> {
    let Some(key) = &app.config.encrypt_hash_key else {
        return Err(ApiError::forbidden(
            "auth/connect is disabled: set VCHAT_ENCRYPT_HASH_KEY",
        ));
    };
    let identifier = required(form, "identifier", MAX_IDENTIFIER)?;
    let address = client.to_string();
    if let Some(left) = app.signin_by_address.locked_for(&address) {
        return Err(too_many("address", left));
    }
    if let Some(left) = app.signin_by_identifier.locked_for(identifier) {
        return Err(too_many("identifier", left));
    }
    let password = form
        .text("password")
        .ok_or_else(|| ApiError::bad("password is required"))?;
    if !signin::password_matches(key, identifier, password) {
        app.signin_by_identifier.record_failure(identifier);
        app.signin_by_address.record_failure(&address);
        app.metrics.inc(|m| &m.signins_failed);
        return Err(ApiError::bad(
            "sign-in refused: the password does not match this identifier \
             (is the app's encryptHashKey the server's VCHAT_ENCRYPT_HASH_KEY?)",
        ));
    }
    let device_id = required(form, "deviceId", MAX_DEVICE_ID)?;
    let platform = required(form, "platform", 16)?;
    if !PLATFORMS.contains(&platform) {
        return Err(ApiError::bad(format!(
            "platform must be one of {}",
            PLATFORMS.join(", ")
        )));
    }
    let language = optional(form, "language", MAX_LANGUAGE)?;
    let push_key = optional(form, "pushKey", crate::profile::MAX_PUSH_KEY)?;
    let full_name = match form.text("fullName").filter(|n| !n.trim().is_empty()) {
        Some(n) => Some(crate::profile::check_name(n)?),
        None => None,
    };
    let image = match form.file("file") {
        Some(f) if f.bytes.is_empty() => return Err(ApiError::bad("the image file is empty")),
        Some(f) => {
            crate::media::sniff_image(&f.bytes).ok_or_else(|| {
                ApiError::bad("file is not an image (PNG, JPEG, GIF or WebP, checked by content)")
            })?;
            Some(&f.bytes)
        }
        None => None,
    };

    app.signin_by_identifier.clear(identifier);
    let (user, created) = app
        .store
        .signin_user(identifier, full_name.unwrap_or(identifier))
        .await?;
    if let (Some(name), false) = (full_name, created) {
        if name != user.full_name {
            app.store.set_user_name(&user.id, name).await?;
        }
    }
    let img = match image {
        Some(bytes) => crate::profile::set_image(app, &user.id, bytes, base).await?,
        None => user.img.clone(),
    };
    let full_name = full_name.map_or(user.full_name.clone(), str::to_string);
    let device = DeviceInfo {
        client_device_id: device_id,
        platform,
        language,
        push_key,
    };
    let signed = issue_session(app, &user.id, &user.identifier, &full_name, &img, &device).await?;
    app.profiles.forget(&user.id);
    app.profile_changed(&user.id).await;
    app.metrics.inc(|m| &m.signins);
    tracing::info!(user = %user.id, session = %signed.session, platform, created, "signed in");
    Ok(signed.answer)
}

/// What a sign-in says about the device it comes from.
pub struct DeviceInfo<'a> {
    pub client_device_id: &'a str,
    pub platform: &'a str,
    pub language: Option<&'a str>,
    pub push_key: Option<&'a str>,
}

struct Issued {
    session: String,
    answer: SignedIn,
}

/// A new device session for the user, and its token.
async fn issue_session(
    app: &App,
    user_id: &str,
    identifier: &str,
    full_name: &str,
    img: &str,
    device: &DeviceInfo<'_>,
) -> Result<Issued, ApiError> {
    let session = new_id();
    let now = now_unix();
    let exp = now + app.config.session_ttl_secs;
    app.store
        .create_session(&NewSession {
            user_id,
            session_id: &session,
            client_device_id: device.client_device_id,
            platform: device.platform,
            language: device.language,
            push_key: device.push_key,
            expires_at: chrono::DateTime::from_timestamp(exp as i64, 0)
                .map(iso)
                .unwrap_or_default(),
        })
        .await?;
    let token = app.sessions.mint(
        Claims {
            sub: user_id.to_string(),
            exp,
            name: Some(full_name.to_string()),
            identifier: Some(identifier.to_string()),
            img: (!img.is_empty()).then(|| img.to_string()),
            did: Some(session.clone()),
        },
        now,
    );
    Ok(Issued {
        session,
        answer: SignedIn {
            user: SignedUser {
                id: user_id.to_string(),
                identifier: identifier.to_string(),
                full_name: full_name.to_string(),
                user_images: crate::profile::images(img),
            },
            access_token: token,
        },
    })
}

/// `POST dev/token {name}`, development mode only (`--dev`): a session for the user whose
/// identifier is `name`, created on first use, with no password. For trying the server out
/// from the built-in web client; never enabled by anything but the flag.
pub async fn dev_token(app: &App, name: &str, platform: &str) -> Result<SignedIn, ApiError> {
    if !app.config.dev {
        return Err(ApiError::not_found("no such route"));
    }
    let name = crate::profile::check_name(name)?;
    let platform = if PLATFORMS.contains(&platform) {
        platform
    } else {
        "web"
    };
    let (user, _) = app.store.signin_user(name, name).await?;
    let device = DeviceInfo {
        client_device_id: "dev",
        platform,
        language: None,
        push_key: None,
    };
    let signed = issue_session(
        app,
        &user.id,
        &user.identifier,
        &user.full_name,
        &user.img,
        &device,
    )
    .await?;
    tracing::info!(user = %user.id, session = %signed.session, "development sign-in");
    Ok(signed.answer)
}

/// `POST auth/logout`: a sign-in session ends (its token stops working, its sockets close, its
/// push key goes). An external token cannot be revoked here; its device's push key is cleared.
pub async fn logout(app: &App, who: &Identity) -> Result<(), ApiError> {
    match who.kind {
        TokenKind::Session => {
            app.store.end_session(&who.user_id, &who.device).await?;
            let closed = app.notify.disconnect_device(&who.user_id, &who.device);
            tracing::info!(user = %who.user_id, session = %who.device, closed, "logged out");
        }
        TokenKind::External => crate::profile::clear_push_key(app, who).await?,
    }
    Ok(())
}
