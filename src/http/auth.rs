//! `/api/v2/auth/*`: the SDK's sign-in and sign-out.

use std::sync::Arc;

use axum::extract::{Request, State};

use super::extract::{ClientAddr, Files, Form, Me, PublicBase};
use crate::app::App;
use crate::wire::envelope::{ok, ApiResult};

pub async fn connect(
    State(app): State<Arc<App>>,
    ClientAddr(client): ClientAddr,
    PublicBase(base): PublicBase,
    req: Request,
) -> ApiResult {
    let form = Form::read(req, &app, Files::InMemory(app.config.max_image_bytes)).await?;
    Ok(ok(
        crate::account::connect(&app, &form, client, &base).await?
    ))
}

pub async fn logout(State(app): State<Arc<App>>, Me(who): Me) -> ApiResult {
    crate::account::logout(&app, &who).await?;
    Ok(ok("Done"))
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevTokenBody {
    name: Option<String>,
    platform: Option<String>,
}

/// `POST dev/token` (development mode only).
pub async fn dev_token(
    State(app): State<Arc<App>>,
    super::extract::Body(b): super::extract::Body<DevTokenBody>,
) -> ApiResult {
    let name = b.name.unwrap_or_default();
    Ok(ok(crate::account::dev_token(
        &app,
        &name,
        b.platform.as_deref().unwrap_or("web"),
    )
    .await?))
}
