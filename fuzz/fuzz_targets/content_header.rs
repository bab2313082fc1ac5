//! `ContentHeader::parse` on an arbitrary content header payload, then `properties()`, which
//! decodes the property values that parsing only stepped over.
//!
//! Asserts: a refused payload fails with an error inside the input whose offset moves with
//! `base`, and so does a header whose properties refuse to decode. An accepted header's flag
//! word is the input's, less the continuation bit, and it encodes (`encode_header`, channel 1)
//! to exactly the input without its continuation flag words, at the size `encoded_len`
//! announced, whether or not its properties decode. When they decode, they name the same
//! properties, and a header rebuilt from them encodes to those same bytes and parses back to
//! an equal header with equal properties.

#![no_main]

use amqp_codec::{ChannelId, ContentHeader, FRAME_END, FRAME_HEADER_SIZE, encode_header};
use amqp_codec_fuzz::{canonical, check_decode_error};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let header = match ContentHeader::parse(data, 0) {
        Ok(header) => header,
        Err(e) => {
            check_decode_error(&e, data.len());
            let moved = ContentHeader::parse(data, 1000).expect_err("the same payload at another base");
            assert_eq!((moved.kind, moved.offset), (e.kind, e.offset + 1000));
            return;
        }
    };
    assert_eq!(header.class_id.0, 60);
    assert_eq!(header.property_flags(), u16::from_be_bytes([data[12], data[13]]) & !1);
    let canonical = canonical::header_payload(data);
    assert_eq!(encode(&header), canonical, "re-encoding the parsed {header:?}");

    let props = match header.properties() {
        Ok(props) => props,
        Err(e) => {
            check_decode_error(&e, data.len());
            assert!(e.offset >= 14, "{e:?} is in the frame-level fields that parse checked");
            let moved = ContentHeader::parse(data, 1000).expect("parsed at base 0").properties();
            let moved = moved.expect_err("the same properties at another base");
            assert_eq!((moved.kind, moved.offset), (e.kind, e.offset + 1000));
            return;
        }
    };
    assert_eq!(props.flags(), header.property_flags());
    let mut rebuilt = ContentHeader::new(header.body_size, &props);
    rebuilt.weight = header.weight;
    assert_eq!(rebuilt, header);
    let payload = encode(&rebuilt);
    assert_eq!(payload, canonical, "re-encoding {props:?}");
    let again =
        ContentHeader::parse(&payload, 0).unwrap_or_else(|e| panic!("re-encoded {props:?} does not parse: {e}"));
    assert_eq!(again, header);
    assert_eq!(again.properties().as_ref(), Ok(&props));
});

/// The header's payload as `encode_header` frames it, after checking the frame around it.
fn encode(header: &ContentHeader<'_>) -> Vec<u8> {
    let len = header.encoded_len().unwrap_or_else(|e| panic!("{header:?} has no encoded length: {e}"));
    let mut out = BytesMut::new();
    encode_header(ChannelId(1), header, u32::MAX, &mut out)
        .unwrap_or_else(|e| panic!("{header:?} does not encode: {e}"));
    assert_eq!(out.len(), len + FRAME_HEADER_SIZE + 1, "encoded_len of {header:?}");
    assert_eq!(&out[..7], &[&[2, 0, 1][..], &(len as u32).to_be_bytes()].concat()[..]);
    assert_eq!(out[out.len() - 1], FRAME_END);
    out[FRAME_HEADER_SIZE..out.len() - 1].to_vec()
}
