//! The identifiers of people and sessions: UUIDs as text, typed so that a
//! user's id is never passed where a session's belongs. They read as `&str`
//! (`Deref`) and serialise as plain strings.

use std::fmt;

use super::sql::{Column, FromRow, Row, StoreError, Value};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random one.
            pub fn random() -> Self {
                Self(uuid::Uuid::new_v4().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl From<$name> for Value {
            fn from(id: $name) -> Self {
                Value::Text(Some(id.0))
            }
        }

        impl From<&$name> for Value {
            fn from(id: &$name) -> Self {
                Value::Text(Some(id.0.clone()))
            }
        }

        impl Column for $name {
            fn read(row: &dyn Row, column: usize) -> Result<Self, StoreError> {
                String::read(row, column).map(Self)
            }
        }

        impl Column for Option<$name> {
            fn read(row: &dyn Row, column: usize) -> Result<Self, StoreError> {
                Ok(Option::<String>::read(row, column)?.map($name))
            }
        }

        impl From<Option<&$name>> for Value {
            fn from(id: Option<&$name>) -> Self {
                Value::Text(id.map(|id| id.0.clone()))
            }
        }

        impl From<Option<$name>> for Value {
            fn from(id: Option<$name>) -> Self {
                Value::Text(id.map(|id| id.0))
            }
        }

        impl FromRow for $name {
            fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
                Self::read(row, 0)
            }
        }
    };
}

id!(
    /// An account's id (`users.id`, the access token's `sub`).
    UserId
);
id!(
    /// A session's id (`sessions.id`, the access token's `sid`; Supabase's
    /// `session_id` in Supabase mode).
    SessionId
);
