//! Property tests: encode → parse → encode is byte-identical for every method (payloads built
//! from the codec's field table, which spec_coverage.rs checks against the XML), for tables of
//! every field type nested in each other, and for content headers with any set of properties.
#![allow(clippy::unwrap_used)] // A test (or example) that fails says where, which is what unwrap does.

use amqp_codec::method::{Fields, SPEC};
use amqp_codec::primitives::Domain;
use amqp_codec::table::{Decimal, FieldTable, FieldValue, MAX_NESTING, RawTable};
use amqp_codec::{BasicProperties, ChannelId, ContentHeader, FramePayload, Method, Parsed, Table, parse_frame};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

/// One field's wire form: a bit (packed later) or its bytes.
#[derive(Debug, Clone)]
enum Wire {
    Bit(bool),
    Bytes(Vec<u8>),
}

fn short_string() -> impl Strategy<Value = String> {
    // Up to 63 chars of up to 4 bytes: always within the 255-byte limit.
    "\\PC{0,63}"
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        any::<u32>().prop_map(|b| FieldValue::F32(f32::from_bits(b))),
        any::<u64>().prop_map(|b| FieldValue::F64(f64::from_bits(b))),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal(Decimal { scale, value })),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| FieldValue::LongString(Bytes::from(v))),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|v| FieldValue::ByteArray(Bytes::from(v))),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
            proptest::collection::vec((short_string(), inner), 0..6)
                .prop_map(|entries| FieldValue::Table(entries.into_iter().collect())),
        ]
    })
}

fn field_table() -> impl Strategy<Value = FieldTable> {
    proptest::collection::vec((short_string(), field_value()), 0..8).prop_map(|e| e.into_iter().collect())
}

fn encoded_table() -> impl Strategy<Value = Vec<u8>> {
    field_table().prop_map(|t| t.to_bytes().expect("generated tables are encodable").to_vec())
}

fn wire_field(domain: Domain) -> BoxedStrategy<Wire> {
    let bytes = |s: BoxedStrategy<Vec<u8>>| s.prop_map(Wire::Bytes).boxed();
    match domain {
        Domain::Bit => any::<bool>().prop_map(Wire::Bit).boxed(),
        Domain::Octet => bytes(any::<u8>().prop_map(|v| vec![v]).boxed()),
        Domain::Short => bytes(any::<u16>().prop_map(|v| v.to_be_bytes().to_vec()).boxed()),
        Domain::Long => bytes(any::<u32>().prop_map(|v| v.to_be_bytes().to_vec()).boxed()),
        Domain::LongLong | Domain::Timestamp => bytes(any::<u64>().prop_map(|v| v.to_be_bytes().to_vec()).boxed()),
        Domain::ShortStr => bytes(
            short_string()
                .prop_map(|s| {
                    let mut v = vec![s.len() as u8];
                    v.extend_from_slice(s.as_bytes());
                    v
                })
                .boxed(),
        ),
        Domain::LongStr => bytes(
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|s| {
                    let mut v = (s.len() as u32).to_be_bytes().to_vec();
                    v.extend_from_slice(&s);
                    v
                })
                .boxed(),
        ),
        Domain::Table => bytes(encoded_table().boxed()),
        other => panic!("no generator for {other:?}"),
    }
}

/// A method payload as the spec lays it out: ids, then fields, runs of bits packed low bit first.
fn method_payload() -> impl Strategy<Value = Vec<u8>> {
    (0..SPEC.len()).prop_flat_map(|i| {
        let spec = SPEC[i];
        let fields: Vec<BoxedStrategy<Wire>> = spec.fields.iter().map(|(_, d)| wire_field(*d)).collect();
        fields.prop_map(move |wires| {
            let mut out = Vec::new();
            out.extend_from_slice(&spec.class_id.0.to_be_bytes());
            out.extend_from_slice(&spec.method_id.0.to_be_bytes());
            let mut bit = 8;
            for wire in wires {
                match wire {
                    Wire::Bit(b) => {
                        if bit == 8 {
                            out.push(0);
                            bit = 0;
                        }
                        *out.last_mut().unwrap() |= u8::from(b) << bit;
                        bit += 1;
                    }
                    Wire::Bytes(bytes) => {
                        bit = 8;
                        out.extend_from_slice(&bytes);
                    }
                }
            }
            out
        })
    })
}

fn encode_method(m: &Method<'_>) -> Vec<u8> {
    let mut out = BytesMut::new();
    amqp_codec::encode_method(ChannelId(3), m, u32::MAX, &mut out).unwrap();
    out[7..out.len() - 1].to_vec()
}

/// Owned strings behind the borrowed properties a test builds.
#[derive(Debug, Clone)]
struct PropertyValues {
    strings: [Option<String>; 10],
    headers: Option<FieldTable>,
    delivery_mode: Option<u8>,
    priority: Option<u8>,
    timestamp: Option<u64>,
}

fn property_values() -> impl Strategy<Value = PropertyValues> {
    (
        proptest::array::uniform10(proptest::option::of(short_string())),
        proptest::option::of(field_table()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(strings, headers, delivery_mode, priority, timestamp)| PropertyValues {
            strings,
            headers,
            delivery_mode,
            priority,
            timestamp,
        })
}

impl PropertyValues {
    fn properties(&self) -> BasicProperties<'_> {
        let s = |i: usize| self.strings[i].as_deref();
        BasicProperties {
            content_type: s(0),
            content_encoding: s(1),
            headers: self.headers.as_ref().map(Table::from),
            delivery_mode: self.delivery_mode,
            priority: self.priority,
            correlation_id: s(2),
            reply_to: s(3),
            expiration: s(4),
            message_id: s(5),
            timestamp: self.timestamp,
            kind: s(6),
            user_id: s(7),
            app_id: s(8),
            cluster_id: s(9),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn every_method_parses_and_re_encodes_byte_for_byte(payload in method_payload()) {
        let method = Method::parse(&payload, 0).unwrap();
        let encoded = encode_method(&method);
        prop_assert_eq!(&encoded, &payload);
        let again = Method::parse(&encoded, 0).unwrap();
        prop_assert_eq!(&again, &method);
        prop_assert_eq!(encode_method(&again), encoded);
    }

    #[test]
    fn tables_of_every_type_round_trip(table in field_table()) {
        let wire = table.to_bytes().unwrap();
        let raw = RawTable::parse(&wire[4..]).unwrap();
        let owned = raw.to_owned();
        prop_assert_eq!(owned.to_bytes().unwrap(), wire.clone());
        // Every entry reads back lazily, in order, with its key.
        prop_assert_eq!(raw.iter().map(|(k, _)| k.to_owned()).collect::<Vec<_>>(),
                        table.keys().map(str::to_owned).collect::<Vec<_>>());
    }

    #[test]
    fn content_headers_with_any_properties_round_trip(values in property_values(), body_size in any::<u64>()) {
        let props = values.properties();
        let header = ContentHeader::new(body_size, &props);
        let mut out = BytesMut::new();
        amqp_codec::encode_header(ChannelId(1), &header, u32::MAX, &mut out).unwrap();
        let Ok(Parsed::Complete { value, consumed }) = parse_frame(&out, u32::MAX) else { panic!("header frame parses") };
        prop_assert_eq!(consumed, out.len());
        let FramePayload::Header(parsed) = value.payload else { panic!("a header frame") };
        prop_assert_eq!(parsed.property_flags(), props.flags());
        let decoded = parsed.properties().unwrap();
        prop_assert_eq!(&decoded, &props);
        prop_assert_eq!(&parsed, &header);
        // Both ways back to the wire: the parsed header as it came, and rebuilt from the
        // decoded properties.
        let mut again = BytesMut::new();
        amqp_codec::encode_header(ChannelId(1), &parsed, u32::MAX, &mut again).unwrap();
        prop_assert_eq!(&again, &out);
        let mut rebuilt = BytesMut::new();
        amqp_codec::encode_header(ChannelId(1), &ContentHeader::new(body_size, &decoded), u32::MAX, &mut rebuilt).unwrap();
        prop_assert_eq!(rebuilt, out);
    }

    #[test]
    fn bodies_split_by_frame_max_reassemble(len in 0usize..20_000, frame_max in 4096u32..9000) {
        let body: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let publish = amqp_codec::method::BasicPublish { routing_key: "k", ..Default::default() };
        let mut out = BytesMut::new();
        amqp_codec::encode_content(ChannelId(2), &publish, &BasicProperties::default(), &body, frame_max, &mut out).unwrap();
        let mut input = &out[..];
        let mut got = Vec::new();
        let mut frames = 0;
        while let Ok(Parsed::Complete { value, consumed }) = parse_frame(input, frame_max) {
            frames += 1;
            if let FramePayload::Body(b) = value.payload {
                prop_assert!(!b.is_empty());
                got.extend_from_slice(b);
            }
            input = &input[consumed..];
        }
        prop_assert!(input.is_empty());
        prop_assert_eq!(got, body);
        prop_assert_eq!(frames, 2 + len.div_ceil(frame_max as usize - 8));
    }
}

#[test]
fn nesting_limit_is_the_documented_one() {
    // A table nested exactly to the limit encodes and parses.
    let mut table = FieldTable::new();
    for _ in 1..MAX_NESTING {
        let mut outer = FieldTable::new();
        outer.insert("n", table);
        table = outer;
    }
    let wire = table.to_bytes().unwrap();
    assert_eq!(RawTable::parse(&wire[4..]).unwrap().to_owned(), table);
}

#[test]
fn method_fields_are_exposed_for_every_method() {
    // The generators above lean on this: a method with no fields still has its ids.
    assert_eq!(<amqp_codec::method::TxSelect as Fields<'static>>::FIELDS.len(), 0);
    assert_eq!(<amqp_codec::method::BasicDeliver<'static> as Fields<'static>>::FIELDS.len(), 5);
}
