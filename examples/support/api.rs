//! The REST side of a V Chat client: `/api/v2` requests with a bearer token, answered in the
//! `{code, data}` envelope.

use serde_json::Value;

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    /// `http://host:port/api/v2/`
    pub base: String,
}

impl Api {
    pub async fn call(
        &self,
        post: bool,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let rq = if post {
            self.http.post(url).json(body)
        } else {
            self.http.get(url)
        };
        let resp = rq
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .map_err(|e| format!("{path}: HTTP {status}: {e}"))?;
        if v["code"] == 200 && status.is_success() {
            Ok(v["data"].clone())
        } else {
            Err(format!("{path}: HTTP {status} {v}"))
        }
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Result<Value, String> {
        self.call(true, path, token, &body).await
    }
    pub async fn get(&self, path: &str, token: &str) -> Result<Value, String> {
        self.call(false, path, token, &Value::Null).await
    }

    /// One request, answered as it came: the HTTP status and the body (the `{code, data}`
    /// envelope; `Err` when it is not JSON). `Err` outside: the request failed in transport.
    pub async fn raw(
        &self,
        post: bool,
        path: &str,
        token: &str,
        body: &Value,
    ) -> Result<(u16, Result<Value, String>), String> {
        let url = format!("{}{}", self.base, path);
        let rq = if post {
            self.http.post(url).json(body)
        } else {
            self.http.get(url)
        };
        let resp = rq
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.map_err(|e| e.to_string());
        Ok((status, v))
    }
}
