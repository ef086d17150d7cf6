//! [`Header`]: one request header a configuration gives a target, a webhook or a sink.
//! Its value may be a secret: it is marked sensitive on the wire, and never shown by
//! `Debug` or in an error.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// A validated request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    name: HeaderName,
    value: HeaderValue,
}

/// Why a header was refused (the value is never repeated: it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Not a valid HTTP header name.
    #[error("invalid header name {0:?}")]
    Name(String),
    /// Not a valid value for the named header (control characters, say).
    #[error("header {0}: invalid value")]
    Value(String),
}

impl Header {
    /// Checks `name` and `value` as HTTP allows them.
    pub fn new(name: &str, value: &str) -> Result<Self, HeaderError> {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| HeaderError::Name(name.to_owned()))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| HeaderError::Value(name.to_string()))?;
        value.set_sensitive(true);
        Ok(Self { name, value })
    }

    /// The header's name, lowercase.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: ***", self.name)
    }
}

/// The headers as reqwest sends them, values sensitive.
pub(crate) fn header_map(headers: &[Header]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for h in headers {
        map.append(h.name.clone(), h.value.clone());
    }
    map
}

/// The headers as lines of a request head (`name: value\r\n` each), for the plain-HTTP
/// client. Valid names and values hold no CR or LF, so nothing can be smuggled.
pub(crate) fn header_lines(headers: &[Header]) -> Vec<u8> {
    let mut lines = Vec::new();
    for h in headers {
        lines.extend_from_slice(h.name.as_str().as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(h.value.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_and_never_shown() {
        let h = Header::new("Authorization", "Bearer s3cret").unwrap();
        assert_eq!(h.name(), "authorization");
        assert_eq!(format!("{h:?}"), "authorization: ***");
        assert_eq!(Header::new("bad name", "x").unwrap_err().to_string(), "invalid header name \"bad name\"");
        let e = Header::new("x-token", "s3cret\n").unwrap_err().to_string();
        assert_eq!(e, "header x-token: invalid value");
        assert!(header_map(&[h]).get("authorization").unwrap().is_sensitive());
    }
}
