//! Refusal reasons are data: each family (handshake, connection, request,
//! WS-Security) is a fieldless enum declared with [`reasons!`], which gives it
//! its stable snake_case `as_str()` (the metric label, the log field, the
//! fault detail), `ALL`, `COUNT` and a dense `index()` for arrays of metric
//! handles resolved once per snapshot. A new reason is one line, and every
//! `match` on the family must then say what it means.

/// Declares a reasons enum: `Variant = "label"` per line.
macro_rules! reasons {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every reason of the family, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
            pub const COUNT: usize = Self::ALL.len();

            /// The stable snake_case label.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label,)+
                }
            }

            /// Position in `ALL`, for arrays indexed by reason.
            pub const fn index(self) -> usize {
                self as usize
            }

            /// The reason with this label.
            pub fn from_label(label: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|r| r.as_str() == label)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }
    };
}

pub(crate) use reasons;

#[cfg(test)]
mod tests {
    reasons! {
        /// A family for the test.
        pub enum Sample {
            One = "one",
            Two = "two",
        }
    }

    #[test]
    fn labels_index_and_lookup() {
        assert_eq!(Sample::COUNT, 2);
        assert_eq!(Sample::Two.as_str(), "two");
        assert_eq!(Sample::Two.index(), 1);
        assert_eq!(Sample::from_label("one"), Some(Sample::One));
        assert_eq!(Sample::from_label("three"), None);
    }
}
