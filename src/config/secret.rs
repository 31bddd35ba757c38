//! A wrapper for API keys that cannot leak by accident.
//!
//! `Debug`, `Display` and `Serialize` all print `*****`; the only way to the value is
//! [`Secret::expose`], which is called only where the value itself is the point: building a
//! provider request's authentication header, building the redactor that takes every
//! configured key out of upstream texts, and hashing the admin token to compare it.

use std::fmt;

/// An API key or other credential. Never printed, logged or serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself: for an authentication header, the redactor and the admin
    /// token's comparison, nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(*****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("*****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s}"), "*****");
        assert!(!format!("{s:?}").contains("very"));
        assert_eq!(serde_json::to_string(&s).unwrap_or_default(), "\"*****\"");
        assert_eq!(s.expose(), "sk-very-secret");
    }
}
