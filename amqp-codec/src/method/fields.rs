//! The macro that turns a method's field list into a struct with its reader, sizer and writer,
//! and the trait those implement. A table, not logic: every field's behaviour lives in its
//! type's `Field` impl in `primitives.rs` and `table.rs`.

use crate::error::{DecodeError, EncodeError};
use crate::primitives::{Domain, Reader, Sizer, Writer};

/// A method's fields in wire order: how to read, size and write them, and what the spec calls them.
pub trait Fields<'a>: Sized {
    /// `(name, domain)` of each field, in wire order. The name is the spec's with `_` for `-`.
    const FIELDS: &'static [(&'static str, Domain)];
    /// Reads the fields from a payload positioned after the class and method ids.
    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError>;
    /// Adds the fields' encoded size, failing on a value the wire cannot carry.
    fn size(&self, s: &mut Sizer) -> Result<(), EncodeError>;
    /// Writes the fields; only after `size` succeeded.
    fn write(&self, w: &mut Writer<'_>);
}

/// Declares method structs: `Name<'a> = "spec-name" { field: Type, other = "spec-name": Type }`.
macro_rules! method_structs {
    ($(
        $(#[$doc:meta])*
        $name:ident $(<$lt:lifetime>)? {
            $( $field:ident $(= $spec:literal)? : $ty:ty ),* $(,)?
        }
    )*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct $name $(<$lt>)? {
            $(
                #[doc = concat!("The `", $crate::method::fields::spec_name!($field $(, $spec)?), "` field (`", stringify!($ty), "`).")]
                pub $field: $ty,
            )*
        }

        impl<'a> $crate::method::fields::Fields<'a> for $name $(<$lt>)? {
            const FIELDS: &'static [(&'static str, $crate::primitives::Domain)] = &[
                $( ($crate::method::fields::spec_name!($field $(, $spec)?), <$ty as $crate::primitives::Field<'a>>::DOMAIN), )*
            ];

            #[inline(always)]
            #[allow(unused_variables)]
            fn read(r: &mut $crate::primitives::Reader<'a>) -> Result<Self, $crate::error::DecodeError> {
                Ok(Self { $( $field: $crate::primitives::Field::read(r)?, )* })
            }

            #[inline]
            #[allow(unused_variables)]
            fn size(&self, s: &mut $crate::primitives::Sizer) -> Result<(), $crate::error::EncodeError> {
                $( $crate::primitives::Field::size(&self.$field, s)?; )*
                Ok(())
            }

            #[inline]
            #[allow(unused_variables)]
            fn write(&self, w: &mut $crate::primitives::Writer<'_>) {
                $( $crate::primitives::Field::write(&self.$field, w); )*
            }
        }
    )*};
}

/// The name a field has in the spec: given, or the Rust name.
macro_rules! spec_name {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $spec:literal) => {
        $spec
    };
}

pub(crate) use {method_structs, spec_name};
