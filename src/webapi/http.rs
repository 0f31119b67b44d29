//! A request's parameters (query string, urlencoded or multipart body), the API's
//! errors and its replies, as qBittorrent's WebUI gives them: text/plain bodies but
//! for the JSON ones, errors mapped to 400, 401, 403, 404, 405, 409 and 415.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Largest request body: qBittorrent's limit (a batch of .torrent files).
pub const MAX_BODY: usize = 100 << 20;

/// An API call that fails, as qBittorrent's `APIError` and HTTP errors: the status
/// and a text/plain body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadParams(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("Not Found")]
    NotFound,
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("Payload Too Large")]
    TooLarge,
    #[error("{0}")]
    BadData(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParams(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadData(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A parameter the call needs is missing.
    pub fn missing(name: &str) -> ApiError {
        ApiError::BadParams(format!("Missing required parameter: {name}"))
    }
}

/// Something the engine or the store failed at, for a 500.
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!("web API: {e}");
    ApiError::Internal(e.to_string())
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut r = Reply::Text(self.to_string()).into_response();
        *r.status_mut() = status;
        r
    }
}

/// A successful answer.
#[derive(Debug)]
pub enum Reply {
    Text(String),
    Json(serde_json::Value),
    /// Prometheus' text exposition format.
    Metrics(String),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Text(String::new())
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (kind, body) = match self {
            Reply::Text(t) => ("text/plain; charset=UTF-8", t),
            Reply::Json(v) => ("application/json", v.to_string()),
            Reply::Metrics(t) => ("text/plain; version=0.0.4; charset=utf-8", t),
        };
        let mut r = Response::new(Body::from(body));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        r
    }
}

/// A file part of a multipart body.
#[derive(Debug)]
pub struct Upload {
    pub file_name: String,
    pub bytes: Bytes,
}

/// Every parameter of a request: the query string's, then the body's.
#[derive(Debug, Default)]
pub struct Params {
    fields: HashMap<String, String>,
    pub uploads: Vec<Upload>,
}

impl Params {
    /// A parameter, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// A parameter the call needs: 400 without it.
    pub fn need(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| ApiError::missing(name))
    }

    /// A boolean parameter, as qBittorrent reads one: `true` (any case) is true.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// A number; 400 if given and not a number.
    pub fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.get(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::BadParams(format!("{name}: not a number: {v:?}"))),
        }
    }

    fn add_pairs(&mut self, bytes: &[u8]) {
        for (k, v) in form_urlencoded::parse(bytes) {
            self.fields.insert(k.into_owned(), v.into_owned());
        }
    }

    /// The parameters of a request: its query string and its body (urlencoded, or
    /// multipart, whose file parts become [`Upload`]s). A malformed multipart body
    /// is a 400.
    pub async fn read(
        query: Option<&str>,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Params, ApiError> {
        let mut p = Params::default();
        if let Some(q) = query {
            p.add_pairs(q.as_bytes());
        }
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ApiError::TooLarge)?;
        let kind = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if kind.starts_with("multipart/form-data") {
            let boundary = multer::parse_boundary(kind)
                .map_err(|e| ApiError::BadParams(format!("multipart body: {e}")))?;
            p.add_multipart(bytes, boundary).await?;
        } else if !bytes.is_empty() {
            p.add_pairs(&bytes);
        }
        Ok(p)
    }

    async fn add_multipart(&mut self, bytes: Bytes, boundary: String) -> Result<(), ApiError> {
        let stream = futures::stream::once(async move { Ok::<Bytes, std::io::Error>(bytes) });
        let mut m = multer::Multipart::new(stream, boundary);
        let bad = |e: multer::Error| ApiError::BadParams(format!("multipart body: {e}"));
        while let Some(field) = m.next_field().await.map_err(bad)? {
            let name = field.name().unwrap_or("").to_string();
            // Every file part is a .torrent, whatever its field's name (as in qBittorrent).
            let file_name = field.file_name().map(str::to_string);
            let data = field.bytes().await.map_err(bad)?;
            match file_name {
                Some(file_name) => self.uploads.push(Upload {
                    file_name,
                    bytes: data,
                }),
                None => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    self.fields.insert(name, text);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(kind: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(kind).unwrap());
        h
    }

    #[tokio::test]
    async fn query_and_urlencoded_body_are_both_read() {
        let p = Params::read(
            Some("filter=all&hashes=a%7Cb"),
            &headers("application/x-www-form-urlencoded"),
            Body::from("deleteFiles=True&category=tv"),
        )
        .await
        .unwrap();
        assert_eq!(p.get("hashes"), Some("a|b"));
        assert!(p.flag("deleteFiles"));
        assert_eq!(p.get("category"), Some("tv"));
        assert!(p.need("urls").is_err());
    }

    #[tokio::test]
    async fn multipart_files_and_fields_are_told_apart_and_bad_ones_refused() {
        let body = "--XX\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"a.torrent\"\r\n\r\nd4:infoe\r\n--XX\r\nContent-Disposition: form-data; name=\"savepath\"\r\n\r\n/data\r\n--XX--\r\n";
        let p = Params::read(
            None,
            &headers("multipart/form-data; boundary=XX"),
            Body::from(body),
        )
        .await
        .unwrap();
        assert_eq!(p.get("savepath"), Some("/data"));
        assert_eq!(p.uploads.len(), 1);
        assert_eq!(&p.uploads[0].bytes[..], b"d4:infoe");
        let cut = &body[..60];
        let e = Params::read(
            None,
            &headers("multipart/form-data; boundary=XX"),
            Body::from(cut),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = Params::read(None, &headers("multipart/form-data"), Body::from(body))
            .await
            .unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }
}
