//! Fieldless enums stored and served as fixed strings (database columns, API JSON, CLI
//! output), each string written once in its declaration.

/// A string that names none of a type's values (what `FromStr` of a `string_enum!` type and of
/// [`crate::breaker::TripScope`] answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{got:?} is not one of {}", expected.join(", "))]
pub struct UnknownValue {
    pub expected: &'static [&'static str],
    pub got: String,
}

/// Declares an enum of unit variants, each `Variant = "text"`: serde and the OpenAPI schema
/// read the text through `#[serde(rename)]`, and so do `as_str`, `Display` and `FromStr`.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        $vis enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value's text, in declaration order.
            pub const ALL: &'static [&'static str] = &[$($text),+];

            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        // By hand, not derived: the derive does not see `rename` through the macro and
        // would document the Rust names (`Done`) instead of the texts on the wire (`done`).
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::ALL.iter().copied()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::named::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok(Self::$variant), )+
                    _ => Err($crate::named::UnknownValue {
                        expected: Self::ALL,
                        got: s.to_string(),
                    }),
                }
            }
        }
    };
}

pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    use crate::model::{InstanceState, RecoveryStatus};

    #[test]
    fn serde_display_and_from_str_share_one_text() {
        for status in [
            RecoveryStatus::Running,
            RecoveryStatus::Done,
            RecoveryStatus::Failed,
        ] {
            let json = serde_json::to_string(&status).expect("json");
            assert_eq!(json, format!("\"{status}\""));
            assert_eq!(status.as_str().parse::<RecoveryStatus>(), Ok(status));
            assert_eq!(
                serde_json::from_str::<RecoveryStatus>(&json).expect("parse"),
                status
            );
        }
        assert_eq!(InstanceState::Starting.as_str(), "starting");
        assert_eq!(format!("{:<9}|", InstanceState::Stopped), "stopped  |");
        let err = "halted".parse::<InstanceState>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            r#""halted" is not one of starting, running, stopped"#
        );
    }
}
